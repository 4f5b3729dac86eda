"""The one benchmark runner: every case x size, warm-up, repeats, timing, peak memory, reports.

Each run gets an empty work directory, a :class:`~benchmarks._measure.Clock` the case
wraps its timed work in, and a :class:`~benchmarks._measure.PeakMemory` sampler around the
whole call (set-up included: worker processes count against the memory budget). Results
go to a printed table (:func:`format_table`), ``bench-<UTC timestamp>.json`` with the
machine's metadata, and a PNG plot next to it.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from . import cases as _cases
from ._measure import DEFAULT_INTERVAL_S, Clock, PeakMemory
from ._report import format_table, write_plot
from .cases import SIZE_UNIT, BenchmarkUsageError, Case

__all__ = ["run_benchmarks", "format_table"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_GIB = 2**30
_REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# metadata


def _git_sha() -> str | None:
    """HEAD of the source tree this package was imported from; None outside a checkout."""
    if not (_REPO_ROOT / "pyproject.toml").is_file():  # an installed copy, not a checkout
        return None
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = completed.stdout.strip()
    return sha if completed.returncode == 0 and sha else None


def _metadata(started: datetime, git_sha: str | None, run: dict) -> dict:
    from engine.environment import describe_environment

    environment = describe_environment()
    return {
        "timestamp": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_sha": git_sha,
        "segscale_version": environment["segscale"],
        "python": environment["python"],
        "platform": environment["platform"],
        "cpu_model": environment["cpu"]["model"],
        "usable_cores": environment["cpu"]["usable_cores"],
        "logical_cores": environment["cpu"]["logical_cores"],
        "total_ram_gib": environment["memory_gib"],
        "packages": environment["packages"],
        "gpu": {
            "devices": environment["gpu"]["devices"],
            "packages": environment["gpu"]["packages"],
            "problems": environment["gpu"]["problems"],
        },
        "run": run,
    }


# ---------------------------------------------------------------------------------------
# measuring


class _Device:
    """Device synchronisation and memory reading for the GPU backend; resolved on first use."""

    def __init__(self, backend_name: str):
        self.backend_name = backend_name
        self._xp = None

    def _cupy(self):
        if self._xp is None:
            from engine.backend import resolve_backend

            self._xp = resolve_backend("gpu").xp  # raises BackendUnavailableError: no fallback
        return self._xp

    def sync(self) -> Callable[[], object] | None:
        if self.backend_name != "gpu":
            return None
        xp = self._cupy()
        return lambda: xp.cuda.Device().synchronize()

    def used_bytes(self) -> Callable[[], int] | None:
        """Device-wide memory in use (all processes on the device, contexts included)."""
        if self.backend_name != "gpu":
            return None
        xp = self._cupy()

        def used() -> int:
            free, total = xp.cuda.runtime.memGetInfo()
            return total - free

        return used


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class _Datasets:
    """Shared input data, built on first use per (dataset, size) and deleted by ``close``."""

    def __init__(self, root: Path, backend_name: str, workers: int, keep: bool):
        self.root, self.backend_name, self.workers, self.keep = root, backend_name, workers, keep
        self._built: dict[tuple[str, int], dict] = {}

    def get(self, name: str, size: int) -> dict:
        if (name, size) not in self._built:
            directory = _fresh_dir(self.root / f"_{name.replace('+', '-')}-{size}")
            started = time.perf_counter()
            self._built[name, size] = _cases.DATASETS[name](size, directory, self.backend_name, self.workers)
            logger.info("dataset %s at %d %s built in %.1f s (not timed)", name, size, SIZE_UNIT, time.perf_counter() - started)
        return self._built[name, size]

    def close(self) -> None:
        if not self.keep:
            for name, size in self._built:
                shutil.rmtree(self.root / f"_{name.replace('+', '-')}-{size}", ignore_errors=True)


def _measure_once(case: Case, size: int, workdir: Path, backend_name: str, workers: int, device: _Device, data) -> dict:
    """One run of ``case`` at ``size`` in an emptied ``workdir``: its counts, time and peaks."""
    _fresh_dir(workdir)
    gc.collect()  # garbage left by the previous run is not this run's memory
    extra = {} if data is None else {"data": data}
    with PeakMemory(DEFAULT_INTERVAL_S, gpu_used_bytes=device.used_bytes()) as memory:
        clock = Clock(device.sync(), memory=memory)
        produced = case.run(size, workdir, backend_name, workers, clock=clock, **extra)
    if clock.seconds is None:
        raise RuntimeError(f"case {case.name!r} returned without timing anything (wrap its work in `with clock:`)")
    rows = {name: int(count) for name, count in produced["rows"].items()}
    return {
        "seconds": clock.seconds,
        "setup_seconds": produced.get("setup_seconds"),
        "peak_rss_gib": memory.peak_rss_bytes / _GIB,
        "start_rss_gib": memory.start_rss_bytes / _GIB,
        "peak_gpu_gib": None if memory.peak_gpu_bytes is None else memory.peak_gpu_bytes / _GIB,
        "rows": rows,
        "total_rows": int(produced.get("total_rows", sum(rows.values()))),
        "workers": int(produced.get("workers", workers)),
        "data_path": produced.get("data_path"),
        "quality": produced.get("quality"),
    }


def _result(case: Case, size: int, backend_name: str, workers: int, status: str, reason: str | None = None) -> dict:
    """A result row with every key present, so skipped and failed rows load like the rest."""
    return {
        "case": case.name,
        "stage": case.stage,
        "description": case.description,
        "backend": backend_name,
        "size": size,
        "size_unit": SIZE_UNIT,
        "workers": workers,
        "status": status,
        "reason": reason,
        "rows": None,
        "rows_by_table": None,
        "median_seconds": None,
        "min_seconds": None,
        "rows_per_second": None,
        "peak_rss_gib": None,
        "peak_gpu_gib": None,
        "setup_seconds": None,
        "warmup_seconds": None,
        "runs": [],
        "quality": None,
        "speedup_vs": {},
        "fastest_peer": None,
        "time_vs_fastest_peer": None,
        "data_path": None,
    }


def _summarise(result: dict, runs: list[dict], warmup_run: dict | None) -> dict:
    seconds = [run["seconds"] for run in runs]
    setups = [run["setup_seconds"] for run in runs if run["setup_seconds"] is not None]
    gpu_peaks = [run["peak_gpu_gib"] for run in runs if run["peak_gpu_gib"] is not None]
    last = runs[-1]
    if any(run["rows"] != last["rows"] for run in runs):
        logger.warning("%s at %d: repeats produced different row counts", result["case"], result["size"])
    median = statistics.median(seconds)
    result.update(
        rows=last["total_rows"],
        rows_by_table=last["rows"],
        workers=last["workers"],
        median_seconds=median,
        min_seconds=min(seconds),
        rows_per_second=last["total_rows"] / median if median > 0 else None,
        peak_rss_gib=max(run["peak_rss_gib"] for run in runs),
        peak_gpu_gib=max(gpu_peaks) if gpu_peaks else None,
        setup_seconds=statistics.median(setups) if setups else None,
        warmup_seconds=warmup_run["seconds"] if warmup_run else None,
        quality=last["quality"],
        runs=[
            {key: run[key] for key in ("seconds", "setup_seconds", "peak_rss_gib", "start_rss_gib", "peak_gpu_gib")}
            for run in runs
        ],
    )
    return result


def _compare_with_baselines(results: list[dict], cases: dict[str, Case]) -> None:
    """``speedup_vs[peer]`` = peer's median seconds / this case's, at the same size and backend;
    ``time_vs_fastest_peer`` = this case's median / the fastest peer's (the targets' form)."""
    ok = {(r["case"], r["size"], r["backend"]): r for r in results if r["status"] == "ok"}
    for result in ok.values():
        peers = {}
        for baseline in cases[result["case"]].baselines:
            peer = ok.get((baseline, result["size"], result["backend"]))
            if peer is not None and result["median_seconds"] > 0:
                result["speedup_vs"][baseline] = peer["median_seconds"] / result["median_seconds"]
                peers[baseline] = peer["median_seconds"]
        if peers and min(peers.values()) > 0:
            fastest = min(peers, key=peers.get)
            result["fastest_peer"] = fastest
            result["time_vs_fastest_peer"] = result["median_seconds"] / peers[fastest]


def _log_log_slope(sizes: list[int], values: list) -> float | None:
    """Least-squares slope of log(value) against log(size): 1.0 is linear scaling."""
    points = [(math.log(size), math.log(value)) for size, value in zip(sizes, values) if value and value > 0]
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = zip(*points)
    return statistics.linear_regression(xs, ys).slope


def _scaling(results: list[dict]) -> list[dict]:
    """How each case measured at two sizes or more grows with customers (issue 8's scale
    curve): the log-log slope of its median time and of each ``*_seconds`` quality column
    (a stage or phase inside it), and its peak RSS at each size against the smallest's."""
    by_case: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for result in results:
        if result["status"] == "ok":
            by_case[result["case"], result["backend"]].append(result)
    curves = []
    for (case, backend), measured in by_case.items():
        measured = sorted(measured, key=lambda result: result["size"])
        sizes = [result["size"] for result in measured]
        if len(set(sizes)) < 2:
            continue
        parts = [key for key in measured[0]["quality"] if key.endswith("_seconds")]
        peaks = [result["peak_rss_gib"] for result in measured]
        curves.append(
            {
                "case": case,
                "backend": backend,
                "sizes": sizes,
                "time_slope": _log_log_slope(sizes, [result["median_seconds"] for result in measured]),
                "part_time_slopes": {
                    key.removesuffix("_seconds"): _log_log_slope(sizes, [r["quality"].get(key) for r in measured])
                    for key in parts
                },
                "peak_rss_gib": peaks,
                "peak_rss_vs_smallest": [peak / peaks[0] if peaks[0] else None for peak in peaks],
            }
        )
    return curves


# ---------------------------------------------------------------------------------------
# the runner


def _check_arguments(sizes, workers, repeats, backend) -> tuple[tuple[int, ...], int, str]:
    from engine.backend import BACKEND_CHOICES, resolve_backend, usable_cores

    sizes = tuple(sizes)
    if not sizes or any(not isinstance(size, int) or isinstance(size, bool) or size < 1 for size in sizes):
        raise BenchmarkUsageError(f"sizes must be positive customer counts, got {sizes}")
    if not isinstance(repeats, int) or repeats < 1:
        raise BenchmarkUsageError(f"repeats must be at least 1, got {repeats}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise BenchmarkUsageError(f"workers must be at least 1, got {workers}")
    if backend not in BACKEND_CHOICES:
        raise BenchmarkUsageError(f"unknown backend {backend!r}: use one of {', '.join(BACKEND_CHOICES)}")
    if backend == "auto":
        backend = resolve_backend("auto").name
    return sizes, workers if workers is not None else usable_cores(), backend


def _output_paths(out_dir: Path, started: datetime) -> tuple[Path, Path]:
    stem = f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = stem, 1
    while (out_dir / f"{candidate}.json").exists() or (out_dir / f"{candidate}.png").exists():
        n += 1
        candidate = f"{stem}-{n}"
    return out_dir / f"{candidate}.json", out_dir / f"{candidate}.png"


def run_benchmarks(
    stages=("generate",),
    sizes=(1_000_000,),
    backend="cpu",
    workers=None,
    repeats=1,
    warmup=False,
    out_dir=Path("benchmarks/out"),
    keep_data=False,
    progress=None,
    baselines=None,
) -> dict:
    """Run every case of ``stages`` at every size; print nothing, write JSON and a plot.

    Parameters
    ----------
    stages : sequence of str, default ("generate",)
        Stages to measure; every registered case of each (segscale's and its peers') runs.
    sizes : sequence of int, default (1_000_000,)
        Customer counts.
    backend : {"cpu", "gpu", "auto"}, default "cpu"
        Cases without an implementation for it are reported as ``skipped``. On "gpu" the
        device is synchronised before the clock stops and peak device memory is recorded.
    workers : int, optional
        Worker processes per case; default one per usable core.
    repeats : int, default 1
        Timed runs per case and size; the median and the minimum are reported.
    warmup : bool, default False
        Run each case and size once, untimed, before the repeats.
    out_dir : path, default "benchmarks/out"
        Receives ``bench-<UTC timestamp>.json`` and ``.png``; data are written under
        ``out_dir/data/<case>-<size>/`` and deleted after each case and size.
    keep_data : bool, default False
        Keep the last run's data of each case and size (``data_path`` in its result).
    progress : callable, optional
        Called as ``progress(runs_done, runs_total)`` after each run (warm-ups included).
    baselines : sequence of str, optional
        Peer cases to run (default all of the stages' peers; empty for none).

    Returns
    -------
    dict
        The JSON document: ``schema``, ``metadata`` (timestamp, git_sha, versions,
        hardware, the run's arguments), ``results`` (one per case and size: ``case``,
        ``size``, ``status`` ("ok", "skipped" or "failed") and ``reason``, ``rows``,
        ``rows_by_table``, ``median_seconds``, ``min_seconds``, ``rows_per_second``,
        ``peak_rss_gib``, ``setup_seconds``, ``runs`` ...), ``scaling`` (per case run at two
        sizes or more: ``time_slope``, the log-log slope of time against customers, the same
        per ``*_seconds`` quality column in ``part_time_slopes``, and ``peak_rss_gib`` and
        ``peak_rss_vs_smallest`` per size) and ``paths`` (``json``, ``plot``).

    Raises
    ------
    BenchmarkUsageError
        Unknown stage, bad sizes, repeats or workers (a ``UsageError`` and a ``ValueError``).
    engine.exceptions.BackendUnavailableError
        ``backend="gpu"`` with a GPU case to run but no usable GPU.
    """
    registry = _cases.CASES
    _cases._check_registry(registry)
    selected = _cases.select_cases(stages, registry, baselines)
    sizes, workers, backend_name = _check_arguments(sizes, workers, repeats, backend)
    started = datetime.now(timezone.utc)
    # Read now: a commit made while a long run goes on must not be credited with its numbers.
    git_sha = _git_sha()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_root = out_dir / "data"

    plan = [(case, size) for case in selected for size in sizes]
    runs_per_item = repeats + bool(warmup)
    runs_total = runs_per_item * sum(backend_name in case.backends for case, _ in plan)
    runs_done = 0
    device = _Device(backend_name)
    if runs_total and backend_name == "gpu":
        device.sync()  # fail now, before any work, if the GPU was asked for and is missing

    results = []
    json_path, plot_path = _output_paths(out_dir, started)
    document = {
        "schema": SCHEMA_VERSION,
        "metadata": _metadata(
            started,
            git_sha,
            {
                "stages": list(dict.fromkeys(case.stage for case in selected)),
                "sizes": list(sizes),
                "size_unit": SIZE_UNIT,
                "backend": backend_name,
                "workers": workers,
                "repeats": repeats,
                "warmup": bool(warmup),
                "keep_data": bool(keep_data),
                "memory_sample_interval_s": DEFAULT_INTERVAL_S,
            },
        ),
        "results": results,
        "scaling": [],
        "paths": {"json": str(json_path), "plot": None},
        # True while the run goes on (or if it was stopped): later cases are not in it yet.
        "partial": True,
    }
    datasets = _Datasets(data_root, backend_name, workers, keep_data)
    for case, size in plan:
        reason = None
        if backend_name not in case.backends:
            reason = f"no {backend_name} implementation (backends: {', '.join(case.backends)})"
        elif _cases.missing_requirements(case):
            missing = ", ".join(_cases.missing_requirements(case))
            reason = f"{missing} not installed (pip install -e '.[bench]')"
        if reason is not None:
            logger.info("%s at %d %s: skipped, %s", case.name, size, SIZE_UNIT, reason)
            results.append(_result(case, size, backend_name, workers, "skipped", reason))
            if backend_name in case.backends:
                runs_done += runs_per_item
                if progress is not None:
                    progress(runs_done, runs_total)
            continue
        result = _result(case, size, backend_name, workers, "ok")
        workdir = data_root / f"{case.name}-{size}"
        runs, warmup_run = [], None
        runs_before = runs_done
        try:
            for index in range(runs_per_item):
                is_warmup = bool(warmup) and index == 0
                data = datasets.get(case.dataset, size) if case.dataset else None
                run = _measure_once(case, size, workdir, backend_name, workers, device, data)
                logger.info(
                    "%s at %d %s, %s: %.2f s, %d rows, peak RSS %.2f GiB",
                    case.name, size, SIZE_UNIT, "warm-up" if is_warmup else f"run {len(runs) + 1}/{repeats}",
                    run["seconds"], run["total_rows"], run["peak_rss_gib"],
                )  # fmt: skip
                if is_warmup:
                    warmup_run = run
                else:
                    runs.append(run)
                runs_done += 1
                if progress is not None:
                    progress(runs_done, runs_total)
            _summarise(result, runs, warmup_run)
            if keep_data:
                result["data_path"] = runs[-1]["data_path"]
        except Exception as error:  # one broken case must not lose the others' results
            logger.exception("%s at %d %s failed", case.name, size, SIZE_UNIT)
            result.update(status="failed", reason=f"{type(error).__name__}: {error}")
            runs_done = runs_before + runs_per_item  # its remaining runs will not happen
            if progress is not None:
                progress(runs_done, runs_total)
        finally:
            if not keep_data:
                shutil.rmtree(workdir, ignore_errors=True)
        results.append(result)
        # Written after every case, so that a run stopped hours in keeps what it measured.
        _write_document(json_path, document)
    datasets.close()
    if data_root.is_dir() and not any(data_root.iterdir()):
        data_root.rmdir()
    _compare_with_baselines(results, registry)
    document["scaling"] = _scaling(results)
    written_plot = write_plot(document, plot_path)
    document["paths"]["plot"] = None if written_plot is None else str(written_plot)
    document["partial"] = False
    _write_document(json_path, document)
    return document


def _write_document(path: Path, document: dict) -> None:
    """Write ``document`` to ``path`` through a temporary file: a reader never sees half of it."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n")
    temporary.replace(path)
