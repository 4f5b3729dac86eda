"""Option types the commands share: counts such as 250k, backend and log-level choices, --json."""

from enum import Enum
from typing import Annotated

import typer

from engine.backend import BACKEND_CHOICES

from ._console import LOG_LEVELS

__all__ = [
    "DATE_FORMATS", "Backend", "BackendOption", "BackendOverride", "BenchBackend", "ForceOption", "JsonOption",
    "LogLevel", "MemoryLimitOption", "SchedulerOption", "WorkersOption", "count",
]  # fmt: skip


def count(value) -> int:
    """A positive count written as 1000000, 1_000_000, 250k or 1M."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().replace("_", "")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:], 1)
    try:
        count = round(float(text[:-1] if scale != 1 else text) * scale)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a count (examples: 50000, 250k, 1M)") from None
    if count < 1:
        raise typer.BadParameter(f"{value!r} must be at least 1")
    return count


Backend = Enum("Backend", {name: name for name in BACKEND_CHOICES}, type=str)
BenchBackend = Enum("BenchBackend", {"cpu": "cpu", "gpu": "gpu"}, type=str)
LogLevel = Enum("LogLevel", {name: name for name in LOG_LEVELS}, type=str)

DATE_FORMATS = ["%Y-%m-%d"]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
BackendOverride = Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")]
SchedulerOption = Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler.")]
WorkersOption = Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")]
MemoryLimitOption = Annotated[
    str | None,
    typer.Option("--memory-limit", help="Each local worker's memory limit, e.g. 4GB (default: the config's, else shared)."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="With a run config: run the stage even when its output is up to date.")
]
BackendOption = Annotated[
    Backend, typer.Option("--backend", help="auto picks the GPU when cuDF, cuML and a CUDA device are present.")
]
