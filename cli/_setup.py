"""``segscale generate``, ``doctor`` and ``check``: a world to work on, the machine, a config."""

import logging
import stat
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.backend import resolve_backend
from engine.exceptions import UsageError

from ._console import print_json, progress, stdout
from ._options import DATE_FORMATS, Backend, BackendOption, BackendOverride, JsonOption, WorkersOption, count

logger = logging.getLogger("segscale")

__all__ = ["check", "doctor", "generate"]


def _world_table(summary) -> Table:
    table = Table(title=f"World in {summary.out_dir} ({summary.seconds:.1f} s)", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("dirty rows", justify="right")
    for name, rows in summary.rows.items():
        dirty = sum(summary.dirty_rows.get(name, {}).values())
        table.add_row(name, f"{rows:,}", f"{dirty:,}")
    return table


def _print_world(summary, as_json: bool) -> None:
    if as_json:
        print_json(summary.to_dict())
        return
    stdout.print(_world_table(summary))
    mix = ", ".join(f"{name} {count / summary.persons:.0%}" for name, count in summary.archetypes.items())
    stdout.print(f"{summary.persons:,} customers behind {summary.accounts:,} accounts; archetypes: {mix}", highlight=False)
    stdout.print(f"run config: {summary.config_path}", highlight=False)


def _generate(out, spec, *, workers, scheduler, overwrite):
    from engine.synth import generate as generate_on_workers

    with progress("generating chunks") as update:
        return generate_on_workers(out, spec, workers=workers, scheduler=scheduler, progress=update, overwrite=overwrite)


def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the world into.")],
    customers: Annotated[int, typer.Option("--customers", "-n", parser=count, help="People in the world (1M = 1000000).")] = 100_000,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same bytes, whatever the worker count.")] = 0,
    start: Annotated[datetime, typer.Option(formats=DATE_FORMATS, help="First day of activity.")] = datetime(2024, 1, 1),
    end: Annotated[datetime, typer.Option(formats=DATE_FORMATS, help="Last day of activity.")] = datetime(2025, 12, 31),
    dirt: Annotated[float, typer.Option(help="Share of rows given a realistic fault (0 to 0.5).")] = 0.0,
    simulate_future: Annotated[bool, typer.Option("--simulate-future", help="Also record in truth/ who buys in the 30 and 90 days after --end.")] = False,
    chunk_size: Annotated[int, typer.Option(min=1, help="People per chunk (part of what the seed reproduces).")] = 25_000,
    workers: WorkersOption = None,
    scheduler: Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler; --out must be visible to its workers.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a world already in --out.")] = False,
    as_json: JsonOption = False,
):
    """Write a seeded synthetic customer world with its ground truth (DESIGN 4)."""
    from engine.synth import WorldSpec

    spec = WorldSpec(
        customers=customers, seed=seed, start=start.date(), end=end.date(), dirt=dirt,
        chunk_size=chunk_size, simulate_future=simulate_future,
    )  # fmt: skip
    summary = _generate(out, spec, workers=workers, scheduler=scheduler, overwrite=overwrite)
    _print_world(summary, as_json)


def _environment_table(report: dict, backend_name: str) -> Table:
    table = Table(title="segscale doctor", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("segscale", report["segscale"])
    table.add_row("python", report["python"])
    table.add_row("platform", report["platform"])
    cpu = report["cpu"]
    table.add_row("cpu", f"{cpu['model']} ({cpu['usable_cores']} usable of {cpu['logical_cores']} cores)")
    table.add_row("memory", f"{report['memory_gib']} GiB")
    for name, version in {**report["packages"], **report["gpu"]["packages"]}.items():
        table.add_row(name, version or "not installed")
    devices = report["gpu"]["devices"]
    table.add_row(
        "CUDA devices",
        "; ".join(f"{d['index']}: {d['name']} ({d['memory_gib']} GiB)" for d in devices) or "none",
    )
    if report["gpu"]["problems"]:
        table.add_row("GPU backend", "unavailable: " + "; ".join(report["gpu"]["problems"]))
    table.add_row("backend", backend_name)
    return table


def _shared(directory: Path) -> dict:
    """Whether others than the owner may read or enter ``directory`` (or, before it exists,
    the nearest directory above it that does)."""
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    mode = stat.S_IMODE(existing.stat().st_mode)
    return {"path": str(existing), "mode": f"{mode:04o}", "shared": bool(mode & 0o077)}


def doctor(
    config: Annotated[Path | None, typer.Argument(help="A run config: also check its output directory.")] = None,
    backend: BackendOption = Backend.auto,
    as_json: JsonOption = False,
):
    """Show the machine, the CPU and GPU stacks, which backend a run would use and, given a
    config, whether its output directory is private."""
    from engine.config import load_config
    from engine.environment import describe_environment

    backend = backend.value
    report = describe_environment()
    if config is not None:
        report["output_dir"] = _shared(Path(load_config(config).run.output_dir))
        if report["output_dir"]["shared"]:
            logger.warning(
                "%s (mode %s) is open to other users: run outputs hold customer keys, scores and the identity "
                "mapping; use a directory only you can enter (chmod 700)", report["output_dir"]["path"],
                report["output_dir"]["mode"],
            )  # fmt: skip
    try:
        resolved = resolve_backend(backend).name
    except UsageError:
        resolved = None
    report["backend"] = {"requested": backend, "resolved": resolved}
    if as_json:
        print_json(report)
    else:
        stdout.print(_environment_table(report, resolved or f"{backend}: unavailable"))
    if resolved is None:
        resolve_backend(backend)  # raise the typed error for the boundary: exit 2


def check(
    config: Annotated[Path, typer.Argument(help="A segscale run config (TOML).")],
    backend: BackendOverride = None,
    as_json: JsonOption = False,
):
    """Validate a run config, its inputs (readable, with the columns it maps) and the backend it
    asks for: everything `segscale run` would refuse before work, without running anything."""
    from engine.config import config_to_dict, load_config
    from engine.ingest import check_inputs

    parsed = load_config(config)
    check_inputs(parsed)
    resolved = resolve_backend(backend.value if backend else parsed.run.backend)
    if as_json:
        print_json({"config": config_to_dict(parsed), "backend": resolved.name})
        return
    table = Table(title=f"{config}: valid (backend {resolved.name})", title_justify="left")
    for column in ("input", "format", "path"):
        table.add_column(column)
    for name, spec in parsed.inputs.items():
        table.add_row(name, spec.format, spec.path)
    stdout.print(table)
    as_of = parsed.run.as_of.isoformat() if parsed.run.as_of else "not set"
    stdout.print(f"output: {parsed.run.output_dir}; seed {parsed.run.seed}; as_of {as_of}", highlight=False)
