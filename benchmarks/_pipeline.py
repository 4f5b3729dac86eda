"""The whole pipeline at one size (issue 8, the scale curve): ``segscale run`` on a world.

The ``pipeline`` case writes a world of ``size`` customers (seed 0, 1% dirt) outside the
clock, then times ``engine.pipeline.run_pipeline`` on the config `segscale generate` wrote
for it: ingest, features, segments, propensity, value and the report, with every section at
its defaults, on a local cluster of ``workers`` processes started outside the clock. The
workers keep Dask's default memory limit (85% of the machine's memory, shared) and spill
past it, so a size that does not fit in memory runs out of core or fails, and the result
says which.

Quality columns: each stage's seconds and the peak RSS of the process tree during it (from
the run's manifest); the peak disk the run took above what was in use when its clock started
(``disk_peak_gib``, beside the inputs' own ``inputs_gib``); and what the stages produced
(customers, segments, test AUC), so a run at a larger size can be checked for doing the
same work.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from ._measure import PeakDisk

__all__ = ["dirty_world", "inputs_gib", "run_pipeline_case"]

_GIB = 2**30


def dirty_world(size: int, workdir: Path, client, backend_name: str):
    """Write a world of ``size`` customers (seed 0, 1% dirt) under ``workdir`` on ``client``'s
    cluster; return the run config `segscale generate` wrote for it, with its output in
    ``workdir/run`` and ``backend_name`` as its backend. The ingest case shares it."""
    from engine.config import load_config
    from engine.synth import WorldSpec, generate_world

    world = Path(tempfile.mkdtemp(prefix="world-", dir=workdir))
    generate_world(world, WorldSpec(customers=size, seed=0, dirt=0.01), client=client, overwrite=True)
    config = load_config(world / "segscale.toml")
    return dataclasses.replace(config, run=dataclasses.replace(config.run, output_dir=workdir / "run", backend=backend_name))


def inputs_gib(config) -> float:
    """GiB of the world's input files (its truth left out), beside which a run's disk peak reads."""
    total = 0
    for spec in config.inputs.values():
        path = Path(spec.path)
        total += sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size
    return round(total / _GIB, 3)


def run_pipeline_case(size: int, workdir: Path, backend_name: str, workers: int, clock) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.pipeline import run_pipeline

    started = time.perf_counter()
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        config = dirty_world(size, workdir, client, backend_name)
        setup_seconds = time.perf_counter() - started
        with PeakDisk(workdir) as disk, clock:
            summary = run_pipeline(config, client=client)
    manifest = summary.manifest
    quality = {}
    for name, stage in manifest["stages"].items():
        if stage.get("status") == "ran":
            quality[f"{name}_seconds"] = stage["seconds"]
            quality[f"{name}_peak_rss_gib"] = round(stage["peak_rss_bytes"] / _GIB, 3)
            for process in ("client", "worker"):
                if stage.get(f"peak_{process}_rss_bytes") is not None:
                    quality[f"{name}_{process}_peak_rss_gib"] = round(stage[f"peak_{process}_rss_bytes"] / _GIB, 3)
    # Ingest's phases (identities, phase 1, phase 2): where its time goes.
    for phase, measured in (manifest["stages"].get("ingest", {}).get("summary") or {}).get("phases", {}).items():
        quality[f"ingest_{phase.replace(' ', '_')}_seconds"] = measured["seconds"]
    metrics = manifest["metrics"]
    quality |= {
        "disk_peak_gib": round(disk.peak_bytes / _GIB, 3),
        "inputs_gib": inputs_gib(config),
        "customers": metrics.get("segments", {}).get("customers"),
        "segments": metrics.get("segments", {}).get("k"),
        "test_auc": metrics.get("propensity", {}).get("roc_auc"),
    }
    return {
        "rows": {table: counts["read"] for table, counts in manifest["rows"].items()},
        "setup_seconds": setup_seconds,
        "workers": workers,
        "data_path": str(summary.run_dir),
        "quality": quality,
    }
