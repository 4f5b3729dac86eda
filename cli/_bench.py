"""``segscale bench``: the benchmark suite."""

from pathlib import Path
from typing import Annotated

import typer

from engine.exceptions import SegscaleError

from ._console import print_json, progress, stdout
from ._options import BenchBackend, JsonOption, count

__all__ = ["bench"]


def bench(
    stages: Annotated[str, typer.Option(help="Comma-separated benchmark stages.")] = "generate",
    customers: Annotated[str, typer.Option("--customers", "-n", help="Comma-separated sizes, e.g. 1M,4M.")] = "1M",
    backend: Annotated[BenchBackend, typer.Option()] = BenchBackend.cpu,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: one per core).")] = None,
    repeats: Annotated[int, typer.Option(min=1)] = 1,
    warmup: Annotated[bool, typer.Option("--warmup", help="Run each case once untimed first.")] = False,
    baselines: Annotated[
        str | None, typer.Option(help="Comma-separated peer cases to run (default all; 'none' for none).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the JSON and plots go.")] = Path("benchmarks/out"),
    as_json: JsonOption = False,
):
    """Measure stages at millions-of-customer sizes: time, rows/s, peak memory (STYLE 12)."""
    from benchmarks import format_table, run_benchmarks

    with progress("benchmark runs") as update:
        document = run_benchmarks(
            stages=tuple(stage.strip() for stage in stages.split(",") if stage.strip()),
            sizes=tuple(count(part) for part in customers.split(",") if part),
            backend=backend.value,
            workers=workers,
            repeats=repeats,
            warmup=warmup,
            out_dir=out,
            progress=update,
            baselines=None if baselines is None else [b.strip() for b in baselines.split(",") if b.strip() not in ("", "none")],
        )
    if as_json:
        print_json(document)
    else:
        stdout.print(format_table(document))
    failed = [f"{r['case']} at {r['size']:,}" for r in document["results"] if r["status"] == "failed"]
    if failed:
        raise SegscaleError(f"benchmark runs failed: {', '.join(failed)} (see the table for why)")
