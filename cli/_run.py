"""``segscale run``, ``segscale report`` and ``segscale demo``: the whole pipeline and its report."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.backend import resolve_backend
from engine.exceptions import InputDataError, UsageError
from engine.layout import RunLayout

from ._console import against_rfm_grid, print_json, progress, stdout
from ._options import (
    DATE_FORMATS, BackendOverride, JsonOption, MemoryLimitOption, SchedulerOption, WorkersOption, count,
)  # fmt: skip
from ._target import overridden

__all__ = ["demo", "report", "run"]

_TOP_AUDIENCES = 5
# Fewer people leave the propensity model under its 100 buyers and 100 non-buyers to learn from.
_DEMO_MINIMUM = 2_000


def _stages_table(manifest: dict) -> Table:
    table = Table(title=f"Run {manifest['status']} in {manifest['wall_seconds']:.1f} s (as of {manifest['as_of']})",
                  title_justify="left")  # fmt: skip
    for column in ("stage", "status", "seconds", "peak GiB"):
        table.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for name, stage in manifest["stages"].items():
        seconds, peak = stage.get("seconds"), stage.get("peak_rss_bytes")
        table.add_row(name, stage["status"], "-" if seconds is None else f"{seconds:,.1f}",
                      "-" if not peak else f"{peak / 2**30:.2f}")  # fmt: skip
    return table


def _segments_table(manifest: dict) -> Table | None:
    segments = manifest["stages"].get("segments", {}).get("summary")
    if not segments:
        return None
    table = Table(title=f"{segments['k']} segments of {segments['customers']:,} customers", title_justify="left")
    for column in ("segment", "customers", "share", "value share"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for segment in segments["segments"]:
        table.add_row(segment["name"], f"{segment['customers']:,}", f"{segment['share_customers']:.1%}",
                      f"{segment['share_revenue']:.1%}")  # fmt: skip
    table.caption = against_rfm_grid(segments)
    table.caption_justify = "left"
    return table


def _audiences_table(manifest: dict) -> Table | None:
    """The largest audiences by CLV, from the report's count of them in the manifest."""
    audiences = (manifest["stages"].get("report", {}).get("summary") or {}).get("audiences")
    if not audiences:
        return None
    top = sorted(audiences, key=lambda row: -row["clv_total"])[:_TOP_AUDIENCES]
    table = Table(title="Top audiences (segment x propensity band) by expected value", title_justify="left")
    for column in ("segment", "band", "customers", "CLV total", "CLV each"):
        table.add_column(column, justify="left" if column in ("segment", "band") else "right")
    for row in top:
        table.add_row(row["segment_name"], row["band"], f"{row['customers']:,}", f"{row['clv_total']:,.0f}",
                      f"{row['clv_mean']:,.1f}")  # fmt: skip
    return table


def _print_run(summary) -> None:
    manifest = summary.manifest
    stdout.print(_stages_table(manifest))
    rows = manifest.get("rows") or {}
    if rows:
        shown = "; ".join(f"{name} {r['read']:,} read = {r['kept']:,} kept + {r['quarantined']:,} quarantined + "
                          f"{r['duplicates']:,} duplicates" for name, r in rows.items())  # fmt: skip
        stdout.print(f"rows: {shown}", highlight=False)
    for table in (_segments_table(manifest), _audiences_table(manifest)):
        if table is not None:
            stdout.print(table)
    metrics = manifest.get("metrics", {})
    if "propensity" in metrics:
        model = metrics["propensity"]
        stdout.print(f"propensity ({model['target']}, {model['model']}): test AUC {model['roc_auc']:.3f}, "
                     f"ECE {model['ece']:.3f}", highlight=False)  # fmt: skip
    if "value" in metrics and (metrics["value"]["holdout"] or {}).get("spend"):
        spend = metrics["value"]["holdout"]["spend"]
        stdout.print(f"value: holdout spend predicted {spend['predicted']:,.0f} against {spend['actual']:,.0f} actual",
                     highlight=False)  # fmt: skip
    stdout.print(f"manifest: {summary.manifest_path}", highlight=False)
    report_path = summary.to_dict()["report"]
    if report_path:
        stdout.print(f"report: {report_path}", highlight=False)


def run(
    config: Annotated[Path, typer.Argument(help="A segscale run config (TOML).")],
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=DATE_FORMATS, help="Point in time of the run (overrides [run] as_of).")
    ] = None,
    stages: Annotated[
        str | None, typer.Option("--stages", help="Comma-separated stages to run (default: all); the others must be done.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run the chosen stages even when they are up to date.")] = False,
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    as_json: JsonOption = False,
):
    """Run every stage in order into [run] output_dir; stages already up to date are skipped,
    so a failed run started again resumes where it stopped."""
    from engine.backend import dask_client
    from engine.config import load_config
    from engine.pipeline import RunLock, run_pipeline

    parsed = overridden(load_config(config), as_of=as_of, backend=backend, scheduler=scheduler, workers=workers,
                        memory_limit=memory_limit)  # fmt: skip
    chosen = None if stages is None else [name.strip() for name in stages.split(",") if name.strip()]
    # The lock first: a second run is refused before it starts a cluster.
    with RunLock(parsed.run.output_dir, "run"):
        with dask_client(resolve_backend(parsed.run.backend), scheduler=parsed.run.scheduler,
                         workers=parsed.run.workers, memory_limit=parsed.run.memory_limit) as client:  # fmt: skip
            summary = run_pipeline(parsed, stages=chosen, force=force, client=client, progress=progress)
    if as_json:
        print_json(summary.to_dict())
        return
    _print_run(summary)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (the [run] output_dir of a run).")],
    as_json: JsonOption = False,
):
    """Rebuild a run's report.html from what the run directory holds."""
    from engine.pipeline import RunLock
    from engine.report import build_report

    if not RunLayout(run_dir).manifest.exists():  # before the lock, which would create the directory
        raise InputDataError(f"{run_dir}: not a segscale run directory (no manifest.json); run segscale run first")
    with RunLock(run_dir, "report"):
        summary = build_report(run_dir)
    if as_json:
        print_json(summary.to_dict())
        return
    stdout.print(f"report: {summary.path} ({len(summary.sections)} sections, {len(summary.images)} charts)", highlight=False)


def demo(
    customers: Annotated[int, typer.Option("--customers", "-n", parser=count, help="People in the demo world.")] = 100_000,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the demo world and its run (replaced).")] = Path("segscale-demo"),
    seed: Annotated[int, typer.Option(min=0)] = 0,
    holdout_days: Annotated[int, typer.Option(min=7, help="Days at the end of the world held out to check the run against.")] = 90,
    as_json: JsonOption = False,
):
    """Generate a slightly dirty world, run the whole pipeline on it as of HOLDOUT_DAYS before
    its end (so the report checks every model against what happened), and write the report."""
    from engine.backend import dask_client
    from engine.config import load_config
    from engine.pipeline import RunLock, run_pipeline
    from engine.synth import WorldSpec, generate_world, write_backtest_config

    if customers < _DEMO_MINIMUM:
        raise UsageError(
            f"--customers {customers:,} is too few for the demo: it needs at least {_DEMO_MINIMUM:,} so that every "
            "model has enough buyers and non-buyers to learn from"
        )
    spec = WorldSpec(customers=customers, seed=seed, dirt=0.01)
    backend = resolve_backend("auto")
    with dask_client(backend) as client:
        with progress("generating chunks") as update:
            world = generate_world(out, spec, client=client, progress=update, overwrite=True)
        config = load_config(write_backtest_config(out, spec, holdout_days, name="demo.toml"))
        with RunLock(config.run.output_dir, "demo"):
            summary = run_pipeline(config, client=client, progress=progress)
    if as_json:
        print_json({"world": world.to_dict(), "run": summary.to_dict(), "config": str(config.source)})
        return
    stdout.print(
        f"world: {world.persons:,} customers behind {world.accounts:,} accounts, {world.rows['transactions']:,} order "
        f"lines and {world.rows['events']:,} events in {world.out_dir} ({world.seconds:.1f} s); run again with "
        f"`segscale run {config.source}`",
        highlight=False,
    )
    _print_run(summary)
