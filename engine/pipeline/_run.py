"""``run_pipeline``: every stage in order, resumable, recorded in ``manifest.json``.

A stage runs unless its record (``RunLayout.record``: ``<run>/_stages/<stage>.json``, written after its output was
published) holds the fingerprint it has now and its outputs exist: a crashed or killed run
started again resumes at the first stage that did not finish. A stage's fingerprint holds
the identity of each upstream output (its fingerprint and when it was written), so a stage
that runs again, for whatever reason, makes the stages reading it run again too. Outputs are published
atomically by the stages themselves; records and the manifest are written to a temporary
file and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from .._liveness import StallWatch
from .._memory import PeakMemory
from .._tasks import disk_full
from ..config import RunConfig, config_to_dict
from ..exceptions import SegscaleError, UsageError, exit_code, failure_message
from ..layout import RunLayout
from ._fingerprint import code_version, digest
from ._lock import RunLock
from ._stages import STAGE_NAMES, STAGES, Stage, StageContext

__all__ = ["RunSummary", "forget_stage", "run_pipeline", "write_json"]

logger = logging.getLogger(__name__)

_MANIFEST_FORMAT = 1


@contextlib.contextmanager
def _no_progress(label: str):
    yield None


def write_json(path: Path, document) -> None:
    """Write ``document`` to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n")
    os.replace(temporary, path)


@dataclass
class RunSummary:
    """What ``run_pipeline`` did: the manifest it wrote, and where."""

    run_dir: Path
    manifest: dict

    @property
    def manifest_path(self) -> Path:
        return RunLayout(self.run_dir).manifest

    def to_dict(self) -> dict:
        """The manifest's summary: status, as-of, per stage status and time, metrics, paths."""
        document = self.manifest
        return {
            "status": document["status"],
            "exit_code": document["exit_code"],
            "run_dir": str(self.run_dir),
            "manifest": str(self.manifest_path),
            "as_of": document["as_of"],
            "stages": {
                name: {key: stage.get(key) for key in ("status", "seconds", "peak_rss_bytes")}
                for name, stage in document["stages"].items()
            },
            "rows": document["rows"],
            "metrics": document["metrics"],
            "wall_seconds": document["wall_seconds"],
            "report": (document["stages"].get("report") or {}).get("outputs", [None])[0],
        }


def _select(config: RunConfig, stages) -> list[str]:
    applicable = [name for name in STAGE_NAMES if STAGES[name].applies(config)]
    if stages is None:
        return applicable
    unknown = [name for name in stages if name not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage {', '.join(unknown)}; the stages are {', '.join(STAGE_NAMES)}")
    absent = [name for name in stages if name not in applicable]
    if absent:
        raise UsageError(f"stage {', '.join(absent)} does not apply to this config (compare needs [run] previous_run)")
    return [name for name in applicable if name in stages]


def _read_record(layout: RunLayout, name: str) -> dict | None:
    path = layout.record(name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        logger.warning("%s: unreadable stage record; the stage will run again", path)
        return None


def forget_stage(run_dir, name: str) -> None:
    """Drop a stage's record: its output was (or is being) rewritten outside ``run_pipeline``
    (``segscale features CONFIG`` ...), so the next run must not take it as up to date."""
    RunLayout(run_dir).record(name).unlink(missing_ok=True)


def _identity(record: dict) -> str:
    """What a downstream fingerprint holds of an upstream output: which settings made it, and when."""
    return digest({"fingerprint": record.get("fingerprint"), "finished_at": record.get("finished_at")})


def _up_to_date(record: dict | None, fingerprint: str, stage: Stage, layout: RunLayout) -> bool:
    return (
        record is not None
        and record.get("fingerprint") == fingerprint
        and all(output.exists() for output in stage.outputs(layout))
    )


def _rows(summary: dict) -> dict:
    """Rows read = kept + quarantined + duplicates, per input, from the ingest summary."""
    rows = {}
    for table, counts in summary["tables"].items():
        quarantined = sum(counts["quarantined"].values())
        rows[table] = {
            "read": counts["read"], "kept": counts["kept"], "quarantined": quarantined,
            "duplicates": counts["duplicates"], "quarantine_reasons": counts["quarantined"],
            "reconciled": counts["read"] == counts["kept"] + quarantined + counts["duplicates"],
        }  # fmt: skip
    return rows


class _Run:
    """The state of one ``run_pipeline`` call, and the manifest made from it."""

    def __init__(self, config: RunConfig, selected: list[str], force: bool, client, progress, scheduler: str):
        self.config, self.selected, self.force = config, selected, force
        self.client, self.progress, self.scheduler = client, progress, scheduler
        self.run_dir = Path(config.run.output_dir)
        self.layout = RunLayout(self.run_dir)
        self.as_of: date | None = config.run.as_of
        self.fingerprints: dict[str, str] = {}
        self.stages: dict[str, dict] = {}
        self.started_at = datetime.now(timezone.utc)
        self.clock = time.perf_counter()

    def resolve_as_of(self) -> None:
        """Settle the run's as-of once, when the first stage that reads the store is looked
        at: the config's, else the day after the store's last transaction. Every later stage,
        the fingerprints and the manifest get this one date."""
        if self.as_of is None:
            from ..ingest import default_as_of

            self.as_of = default_as_of(self.layout.store.root)

    def fingerprint(self, stage: Stage) -> str:
        if stage.needs:
            self.resolve_as_of()
        return digest(
            {
                "stage": stage.name,
                "settings": stage.settings(self.config, self.as_of),
                "upstream": {need: self.fingerprints.get(need) for need in stage.needs},
                "code": code_version(),
            }
        )

    def not_selected(self, stage: Stage, needed_by: list[str]) -> None:
        """A stage left out of ``--stages``. Its recorded fingerprint stands for it downstream;
        when a selected stage reads its output, that output must exist and be up to date."""
        record = _read_record(self.layout, stage.name)
        if needed_by:
            if record is None:
                raise UsageError(
                    f"{self.run_dir}: {', '.join(needed_by)} needs {stage.name}, which has not run here; "
                    f"add {stage.name} to --stages"
                )
            if not _up_to_date(record, self.fingerprint(stage), stage, self.layout):
                raise UsageError(
                    f"{self.run_dir}: {stage.name} is out of date (its inputs, settings or code changed since it "
                    f"ran) and {', '.join(needed_by)} reads it; add {stage.name} to --stages"
                )
        if record is not None:
            self.fingerprints[stage.name] = _identity(record)
        self.stages[stage.name] = {"status": "not selected", **_carried(record)}

    def run_or_skip(self, stage: Stage) -> None:
        fingerprint = self.fingerprint(stage)
        record = _read_record(self.layout, stage.name)
        if not self.force and _up_to_date(record, fingerprint, stage, self.layout):
            logger.info("stage %s: up to date (finished %s), skipped", stage.name, record.get("finished_at"))
            self.stages[stage.name] = {"status": "skipped", **_carried(record)}
        else:
            self.stages[stage.name] = {"status": "running"}
            context = StageContext(self.config_with_as_of(), self.as_of, self.client, self.progress)
            started = time.perf_counter()
            try:
                with PeakMemory() as memory, StallWatch(self.client, self.config.run.stall_minutes * 60):
                    summary = stage.run(context)
            except OSError as error:
                if not disk_full(error):
                    raise
                free_gib = shutil.disk_usage(self.run_dir).free / 2**30
                raise SegscaleError(
                    f"{stage.name}: no space left on the disk holding {self.run_dir} ({free_gib:.1f} GiB free now); "
                    "free space or set [run] output_dir on a larger disk, and run again: finished stages are kept"
                ) from error
            record = {
                "stage": stage.name,
                "fingerprint": fingerprint,
                "code_version": code_version(),
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "seconds": round(time.perf_counter() - started, 3),
                "peak_rss_bytes": memory.peak_rss_bytes,
                # Where the peak sits: the client (with a local cluster's scheduler) or one worker.
                "peak_client_rss_bytes": memory.peak_own_rss_bytes,
                "peak_worker_rss_bytes": memory.peak_descendant_rss_bytes,
                "outputs": [str(output) for output in stage.outputs(self.layout)],
                "summary": summary,
            }
            path = self.layout.record(stage.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, record)
            logger.info(
                "stage %s: done in %.1f s, peak memory %.2f GiB", stage.name, record["seconds"],
                memory.peak_rss_bytes / 2**30,
            )  # fmt: skip
            self.stages[stage.name] = {"status": "ran", **_carried(record)}
        self.fingerprints[stage.name] = _identity(record)

    def build_report(self) -> None:
        """The report reads the manifest: write it first, then the report, then the manifest
        again with the report's entry."""
        from ..report import build_report

        write_json(self.layout.manifest, self.manifest(None))
        self.stages["report"] = {"status": "running"}
        started = time.perf_counter()
        with PeakMemory() as memory:
            report = build_report(self.run_dir)
        self.stages["report"] = {
            "status": "ran", "seconds": round(time.perf_counter() - started, 3),
            "peak_rss_bytes": memory.peak_rss_bytes, "peak_client_rss_bytes": memory.peak_own_rss_bytes,
            "peak_worker_rss_bytes": memory.peak_descendant_rss_bytes, "outputs": [str(report.path)],
            "summary": report.to_dict(),
        }  # fmt: skip
        logger.info("report: %s", report.path)

    def resolved_backend(self) -> str | None:
        from ..backend import resolve_backend

        try:
            return resolve_backend(self.config.run.backend).name
        except UsageError:  # the run failed on it, and the manifest says so
            return None

    def memory_scope(self) -> str:
        if self.client is not None and getattr(self.client, "cluster", None) is None:
            return "resident set of this process only: the external scheduler's workers are not measured"
        return "resident set of this process and its children (local Dask workers included)"

    def config_with_as_of(self) -> RunConfig:
        return dataclasses.replace(self.config, run=dataclasses.replace(self.config.run, as_of=self.as_of))

    def manifest(self, error: BaseException | None) -> dict:
        from ..environment import describe_environment

        stages = dict(self.stages)
        if error is not None:
            running = next((name for name, stage in stages.items() if stage["status"] == "running"), None)
            if running is not None:
                stages[running] = {"status": "failed", "error": failure_message(error)}
        for name in STAGE_NAMES:
            if STAGES[name].applies(self.config) and name not in stages:
                stages[name] = {"status": "not reached" if error is not None else "not selected"}
        summaries = {name: stage["summary"] for name, stage in stages.items() if stage.get("summary")}
        metrics = {name: STAGES[name].metrics(summary) for name, summary in summaries.items() if name in STAGES}
        return {
            "format": _MANIFEST_FORMAT,
            "status": "succeeded" if error is None else "interrupted" if isinstance(error, KeyboardInterrupt) else "failed",
            "exit_code": 0 if error is None else exit_code(error),
            "error": None if error is None else failure_message(error),
            "config_path": str(self.config.source),
            "config": config_to_dict(self.config),
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "seed": self.config.run.seed,
            "selected_stages": self.selected,
            "forced": self.force,
            "backend": {"requested": self.config.run.backend, "resolved": self.resolved_backend(),
                        "scheduler": self.scheduler},  # fmt: skip
            "code_version": code_version(),
            "environment": describe_environment(),
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "wall_seconds": round(time.perf_counter() - self.clock, 3),
            "peak_rss_bytes": max((s.get("peak_rss_bytes") or 0 for s in stages.values() if s["status"] == "ran"), default=0),
            "memory_measured": self.memory_scope(),
            "stages": stages,
            "rows": _rows(summaries["ingest"]) if "ingest" in summaries else {},
            "metrics": {name: value for name, value in metrics.items() if value is not None},
            "outputs": {name: stage.get("outputs") for name, stage in stages.items() if stage.get("outputs")},
        }


def _carried(record: dict | None) -> dict:
    """What a stage's record tells the manifest, whether it ran now or earlier."""
    if record is None:
        return {}
    keys = ("fingerprint", "finished_at", "seconds", "peak_rss_bytes", "peak_client_rss_bytes", "peak_worker_rss_bytes",
            "outputs", "summary")
    return {key: record.get(key) for key in keys}


def run_pipeline(
    config: RunConfig,
    *,
    stages=None,
    force: bool = False,
    client=None,
    progress=None,
    report: bool = True,
) -> RunSummary:
    """Run the stages of ``config`` in order into ``[run] output_dir``; see the module docstring.

    Parameters
    ----------
    config : RunConfig
        With any command-line overrides (as-of, backend, scheduler) already applied.
    stages : sequence of str, optional
        Only these stages (in pipeline order); the others must have run already where a
        selected stage reads their output. Default: every stage the config has.
    force : bool, default False
        Run the selected stages even when they are up to date.
    client : distributed.Client, optional
        Tasks run on its cluster; without one, on Dask's local scheduler.
    progress : callable, optional
        ``progress(label)``, a context manager yielding ``update(done, total)``.
    report : bool, default True
        Write ``report.html`` once every stage is done.

    Returns
    -------
    RunSummary

    Raises
    ------
    RunLockedError
        Another run uses the run directory.
    UsageError
        Bad stage names, a needed stage missing or out of date, bad input (from a stage).
    SegscaleError, Exception
        A stage failed; the manifest records it (status, exit code, message) before the
        error goes on.
    """
    selected = _select(config, stages)
    run_dir = Path(config.run.output_dir)
    scheduler = getattr(getattr(client, "scheduler", None), "address", None) or "local threads"
    with RunLock(run_dir, "run"):
        state = _Run(config, selected, force, client, progress or _no_progress, scheduler)
        try:
            for name in STAGE_NAMES:
                stage = STAGES[name]
                if not stage.applies(config):
                    continue
                if name in selected:
                    state.run_or_skip(stage)
                else:
                    state.not_selected(stage, [other for other in selected if name in STAGES[other].needs])
            if report:
                state.build_report()
        except BaseException as error:
            write_json(state.layout.manifest, state.manifest(error))
            raise
        manifest = state.manifest(None)
        write_json(state.layout.manifest, manifest)
    logger.info("run: %s in %.1f s; manifest %s", manifest["status"], manifest["wall_seconds"], state.layout.manifest)
    return RunSummary(run_dir, manifest)
