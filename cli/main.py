"""``segscale``: thin typer commands; each parses options and calls one engine function.

Errors become exit codes in ``cli/_boundary.py`` only.
"""

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import engine
from engine.backend import resolve_backend
from engine.exceptions import SegscaleError, UsageError

from ._boundary import ErrorBoundary
from ._console import configure_logging, print_json, progress, stdout
from ._options import DATE_FORMATS, Backend, BackendOption, BenchBackend, JsonOption, LogLevel, count
from ._run import demo, report, run

app = typer.Typer(
    cls=ErrorBoundary,
    name="segscale",
    help="Customer segments, propensity scores and lifetime value for millions of customers, on GPU or CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _version(value: bool):
    if value:
        stdout.print(f"segscale {engine.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    log_level: Annotated[LogLevel, typer.Option("--log-level", help="Verbosity of messages on stderr.")] = LogLevel.info,
):
    configure_logging(log_level.value)


@contextlib.contextmanager
def _into_run(parsed, stage: str, out):
    """A stage command writing a run config's stage output holds the run directory's lock, and
    drops the stage's record so the next ``segscale run`` recomputes it and what reads it."""
    if parsed is None or not Path(out).absolute().is_relative_to(parsed.run.output_dir / stage):
        yield
        return
    from engine.pipeline import RunLock, forget_stage

    with RunLock(parsed.run.output_dir, stage):
        forget_stage(parsed.run.output_dir, stage)
        yield


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


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the world into.")],
    customers: Annotated[int, typer.Option("--customers", "-n", parser=count, help="People in the world (1M = 1000000).")] = 100_000,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same bytes, whatever the worker count.")] = 0,
    start: Annotated[datetime, typer.Option(formats=DATE_FORMATS, help="First day of activity.")] = datetime(2024, 1, 1),
    end: Annotated[datetime, typer.Option(formats=DATE_FORMATS, help="Last day of activity.")] = datetime(2025, 12, 31),
    dirt: Annotated[float, typer.Option(help="Share of rows given a realistic fault (0 to 0.5).")] = 0.0,
    simulate_future: Annotated[bool, typer.Option("--simulate-future", help="Also record in truth/ who buys in the 30 and 90 days after --end.")] = False,
    chunk_size: Annotated[int, typer.Option(min=1, help="People per chunk (part of what the seed reproduces).")] = 25_000,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
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


def _print_accounting(summary) -> None:
    """Rows read, kept, quarantined and duplicated per input; reasons below, where they fit."""
    table = Table(title=f"Ingested into {summary.out_dir} ({summary.partitions} partitions, {summary.seconds:.1f} s)", title_justify="left")
    for column in ("input", "read", "kept", "quarantined", "duplicates"):
        table.add_column(column, justify="left" if column == "input" else "right", no_wrap=True)
    for name, counts in summary.tables.items():
        table.add_row(
            name,
            f"{counts['read']:,}",
            f"{counts['kept']:,}",
            f"{sum(counts['quarantined'].values()):,}",
            f"{counts['duplicates']:,}",
        )
    stdout.print(table)
    for name, counts in summary.tables.items():
        if counts["quarantined"]:
            reasons = sorted(counts["quarantined"].items(), key=lambda item: -item[1])
            stdout.print(f"  {name} quarantined: " + ", ".join(f"{reason} {rows:,}" for reason, rows in reasons), highlight=False)


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


@app.command()
def doctor(backend: BackendOption = Backend.auto, as_json: JsonOption = False):
    """Show the machine, the CPU and GPU stacks, and which backend a run would use."""
    from engine.environment import describe_environment

    backend = backend.value
    report = describe_environment()
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


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="A segscale run config (TOML).")],
    backend: Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")] = None,
    as_json: JsonOption = False,
):
    """Validate a run config and the backend it asks for, without running anything."""
    from engine.config import config_to_dict, load_config

    parsed = load_config(config)
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


@app.command()
def ingest(
    config: Annotated[Path, typer.Argument(help="A segscale run config (TOML).")],
    backend: Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")] = None,
    scheduler: Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
):
    """Validate, deduplicate, resolve identities and write the customer-clustered store."""
    import dataclasses

    from engine.backend import dask_client
    from engine.config import load_config
    from engine.ingest import ingest as run_ingest

    parsed = load_config(config)
    run = dataclasses.replace(
        parsed.run,
        backend=backend.value if backend else parsed.run.backend,
        scheduler=scheduler or parsed.run.scheduler,
        workers=workers or parsed.run.workers,
    )
    parsed = dataclasses.replace(parsed, run=run)
    with _into_run(parsed, "ingest", run.output_dir / "ingest"), dask_client(
        resolve_backend(run.backend), scheduler=run.scheduler, workers=run.workers
    ) as client:
        with progress("ingest tasks") as update:
            summary = run_ingest(parsed, client=client, progress=update)
    if as_json:
        print_json(summary.to_dict())
        return
    _print_accounting(summary)
    identity = summary.identity
    if identity:
        stdout.print(
            f"identity: {identity.get('accounts', 0):,} accounts -> {identity.get('customers', 0):,} customers "
            f"({identity.get('customers_merged', 0):,} accounts merged); quarantine and store under {summary.out_dir}",
            highlight=False,
        )


def _print_features(summary) -> None:
    stdout.print(
        f"features: {summary.customers:,} customers x {len(summary.features)} features as of {summary.as_of} "
        f"({summary.partitions} partitions, {summary.seconds:.1f} s) in {summary.out_dir}",
        highlight=False,
    )


@app.command()
def features(
    config: Annotated[
        Path | None, typer.Argument(help="A run config: reads <output_dir>/ingest/store, writes <output_dir>/features.")
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="A customer-clustered store (from segscale ingest).")] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=DATE_FORMATS, help="Only rows before this date (UTC) count.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write the features into.")] = None,
    backend: Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")] = None,
    scheduler: Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
):
    """Point-in-time behavioural features, one row per customer, from the store."""
    from engine.backend import dask_client
    from engine.config import FeatureOptions, load_config
    from engine.features import build_features

    options, run_as_of, backend_name = FeatureOptions(), None, "auto"
    parsed = None
    if config is not None:
        parsed = load_config(config)
        options, run_as_of, backend_name = parsed.features, parsed.run.as_of, parsed.run.backend
        store = store or parsed.run.output_dir / "ingest" / "store"
        out = out or parsed.run.output_dir / "features"
        scheduler, workers = scheduler or parsed.run.scheduler, workers or parsed.run.workers
    if store is None or out is None:
        raise UsageError("features needs a run config, or both --store and --out")
    backend_name = backend.value if backend else backend_name
    as_of_date = as_of.date() if as_of else run_as_of
    with _into_run(parsed, "features", out), dask_client(
        resolve_backend(backend_name), scheduler=scheduler, workers=workers
    ) as client:
        with progress("feature tasks") as update:
            summary = build_features(
                store, out, as_of=as_of_date, options=options, backend_name=backend_name, client=client, progress=update
            )
    if as_json:
        print_json(summary.to_dict())
        return
    _print_features(summary)


def _segments_table(summary) -> Table:
    table = Table(
        title=f"{summary.k} segments of {summary.customers:,} customers (silhouette {summary.silhouette:.3f}, {summary.seconds:.1f} s)",
        title_justify="left",
    )
    for column in ("segment", "name", "customers", "share", "revenue share", "stability"):
        table.add_column(column, justify="left" if column == "name" else "right", no_wrap=True)
    for segment in summary.segments:
        stability = segment.get("stability")
        table.add_row(
            str(segment["segment"]),
            segment["name"],
            f"{segment['customers']:,}",
            f"{segment['share_customers']:.1%}",
            f"{segment['share_revenue']:.1%}",
            "-" if stability is None else f"{stability:.2f}" + (" unstable" if segment["segment"] in summary.unstable else ""),
        )
    niches = summary.niche_customers
    table.caption = (
        f"{summary.micro_segments} micro-segments; {len(niches)} niche groups ({sum(niches):,} customers); "
        f"{summary.outliers:,} outliers; stability = mean bootstrap Jaccard, unstable below 0.75"
    )
    table.caption_justify = "left"
    return table


@app.command()
def segments(
    config: Annotated[
        Path | None, typer.Argument(help="A run config: reads <output_dir>/features, writes <output_dir>/segments.")
    ] = None,
    features_dir: Annotated[Path | None, typer.Option("--features", help="A feature table (from segscale features).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write the segments into.")] = None,
    k: Annotated[int | None, typer.Option("--k", min=2, help="A fixed number of segments (default: chosen by silhouette).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed (default: the config's, else 0).")] = None,
    backend: Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")] = None,
    scheduler: Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
):
    """Segments by k-means on prepared features: assignments, profiles and behavioural names."""
    import dataclasses

    from engine.backend import dask_client
    from engine.config import SegmentOptions, load_config
    from engine.segments import build_segments

    options, run_seed, backend_name = SegmentOptions(), 0, "auto"
    parsed = None
    if config is not None:
        parsed = load_config(config)
        options, run_seed, backend_name = parsed.segments, parsed.run.seed, parsed.run.backend
        features_dir = features_dir or parsed.run.output_dir / "features"
        out = out or parsed.run.output_dir / "segments"
        scheduler, workers = scheduler or parsed.run.scheduler, workers or parsed.run.workers
    if features_dir is None or out is None:
        raise UsageError("segments needs a run config, or both --features and --out")
    if k is not None:
        options = dataclasses.replace(options, k=k)
    backend_name = backend.value if backend else backend_name
    with _into_run(parsed, "segments", out), dask_client(
        resolve_backend(backend_name), scheduler=scheduler, workers=workers
    ) as client:
        with progress("segment tasks") as update:
            summary = build_segments(
                features_dir, out, options=options, seed=run_seed if seed is None else seed,
                backend_name=backend_name, client=client, progress=update,
            )  # fmt: skip
    if as_json:
        print_json(summary.to_dict())
        return
    stdout.print(_segments_table(summary))
    stdout.print(f"assignments, profiles and model in {summary.out_dir}", highlight=False)


def _print_comparison(comparison, top: int = 5) -> None:
    """ARI and customer counts, matched segments, the largest moves, suggestions, where movers went."""
    stdout.print(
        f"adjusted Rand index {comparison.adjusted_rand:.3f} over {comparison.common:,} customers in both runs "
        f"({comparison.gone:,} only in A, {comparison.new:,} only in B); segment-share PSI {comparison.psi:.3f}",
        highlight=False,
    )
    table = Table(title="Matched segments (A -> B)", title_justify="left")
    for column in ("segment in A", "segment in B", "Jaccard", "share A -> B"):
        table.add_column(column, justify="right" if column in ("Jaccard", "share A -> B") else "left", no_wrap=True)
    for match, drift in zip(comparison.matches, comparison.drift):
        shares = f"{drift['share_a']:.1%} -> {drift['share_b']:.1%}"
        table.add_row(match["name_a"], match["name_b"], f"{match['jaccard']:.3f}", shares)
    for segment in comparison.unmatched_a:
        table.add_row(segment["name"], "(none)", "", "")
    for segment in comparison.unmatched_b:
        table.add_row("(none)", segment["name"], "", "")
    stdout.print(table)
    if comparison.moves:
        moves = Table(title=f"Top moves away from the match ({len(comparison.moves)} in all)", title_justify="left")
        for column in ("from (A)", "to (B)", "customers", "share of A segment"):
            moves.add_column(column, justify="left" if column.startswith(("from", "to")) else "right", no_wrap=True)
        for move in comparison.moves[:top]:
            moves.add_row(move["name_a"], move["name_b"], f"{move['customers']:,}", f"{move['share_of_a']:.1%}")
        stdout.print(moves)
    for suggestion in comparison.suggestions:
        stdout.print(f"suggest {suggestion['kind']}: {suggestion['message']}", highlight=False, markup=False)
    if not comparison.suggestions:
        stdout.print("no split or merge suggested", highlight=False)
    where = f"written to {comparison.movers_path}" if comparison.movers_path else "not written (use --out DIR)"
    stdout.print(f"{comparison.movers:,} customers moved; movers {where}", highlight=False)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="The earlier segment output (or a run directory holding segments/).")],
    run_b: Annotated[Path, typer.Argument(help="The later segment output (or a run directory holding segments/).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory (replaced) for movers.parquet and comparison.json.")
    ] = None,
    split_share: Annotated[
        float, typer.Option(help="Suggest a split when a segment sends at least this share to each of 2+ segments.")
    ] = 0.25,
    merge_share: Annotated[
        float, typer.Option(help="Suggest a merge when 2+ segments each send at least this share to one segment.")
    ] = 0.5,
    converge_ratio: Annotated[
        float, typer.Option(help="Suggest a merge when two matches' z-profile distance shrinks below this ratio.")
    ] = 0.5,
    as_json: JsonOption = False,
):
    """Compare two segment runs: matched segments, transitions, movers, drift, split and merge suggestions."""
    from engine.segments import compare_runs

    comparison = compare_runs(
        run_a, run_b, out=out, split_share=split_share, merge_share=merge_share, converge_ratio=converge_ratio
    )
    if as_json:
        print_json(comparison.to_dict())
        return
    _print_comparison(comparison)


@app.command()
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


def _print_value(document: dict) -> None:
    from engine.value import format_params

    purchase, spend = document["purchase_model"], document["spend_model"]
    shown = format_params(purchase)
    stdout.print(
        f"value: {document['customers']:,} customers as of {document['as_of']}, "
        f"horizon {document['horizon_days']} days\n"
        f"{purchase['name']}: {shown} (converged: {purchase['converged']}, "
        f"log-likelihood {purchase['log_likelihood']:.1f})\n"
        f"gamma-gamma: {format_params(spend)} "
        f"(converged: {spend['converged']})",
        highlight=False,
    )
    holdout = document["holdout"]
    if holdout is None:
        stdout.print("holdout: the store ends before the horizon does; no evaluation", highlight=False)
        return
    table = Table("holdout", "predicted", "actual", "MAE per customer", "RMSE per customer")
    for name in ("purchases", "spend"):
        row = holdout[name]
        cells = (f"{row['predicted']:,.1f}", f"{row['actual']:,.1f}", f"{row['mae']:.3f}", f"{row['rmse']:.3f}")
        table.add_row(name, *cells)
    buyers = holdout["buyers"]
    table.add_row("buyers", f"{buyers['predicted']:,.1f}", f"{buyers['actual']:,}", "", "")
    stdout.print(table)
    coverage = holdout["next_purchase_inside_interval"].items()
    inside = ", ".join(f"{share:.1%} inside the {level} interval" for level, share in coverage)
    stdout.print(f"next purchase: {inside}", highlight=False)


@app.command()
def value(
    config: Annotated[
        Path | None, typer.Argument(help="A run config: reads <output_dir>/ingest/store, writes <output_dir>/value.")
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="A customer-clustered store (from segscale ingest).")] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=DATE_FORMATS, help="End of the calibration period (UTC).")
    ] = None,
    horizon_days: Annotated[
        int | None, typer.Option("--horizon-days", min=1, help="Days the predictions cover (and the holdout).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write the values into.")] = None,
    backend: Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")] = None,
    scheduler: Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
):
    """Lifetime value: P(alive), expected purchases and spend, CLV and next purchase date per customer."""
    from engine.backend import dask_client
    from engine.config import ValueOptions, load_config
    from engine.value import estimate_value

    options, run_as_of, backend_name = ValueOptions(), None, "auto"
    parsed = None
    if config is not None:
        parsed = load_config(config)
        options, run_as_of, backend_name = parsed.value, parsed.run.as_of, parsed.run.backend
        store = store or parsed.run.output_dir / "ingest" / "store"
        out = out or parsed.run.output_dir / "value"
        scheduler, workers = scheduler or parsed.run.scheduler, workers or parsed.run.workers
    if store is None or out is None:
        raise UsageError("value needs a run config, or both --store and --out")
    backend_name = backend.value if backend else backend_name
    with _into_run(parsed, "value", out), dask_client(
        resolve_backend(backend_name), scheduler=scheduler, workers=workers
    ) as client:
        with progress("value tasks") as update:
            summary = estimate_value(
                store,
                out,
                as_of=as_of.date() if as_of else run_as_of,
                horizon_days=horizon_days or options.horizon_days,
                discount_rate=options.discount_rate_yearly,
                model=options.model,
                grain=options.grain,
                min_repeat_customers=options.min_repeat_customers,
                backend_name=backend_name,
                client=client,
                progress=update,
            )
    if as_json:
        print_json(summary.to_dict())
        return
    _print_value(summary.document)


def _print_propensity(summary) -> None:
    metrics = summary.metrics
    title = f"Propensity: {summary.model} for {summary.target} ({summary.seconds:.1f} s)"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("train / validation / test", " / ".join(f"{summary.splits[s]:,}" for s in ("train", "validation", "test")))
    table.add_row("test positives", f"{metrics['positives']:,} ({metrics['base_rate']:.1%})")
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "ece"):
        value = metrics[name]
        table.add_row(name, "n/a" if value is None else f"{value:.4f}")
    stdout.print(table)
    top = ", ".join(f"{row['feature']} ({row['auc_drop']:.3f})" for row in summary.importance[:5])
    stdout.print(f"top inputs by permutation importance (test AUC lost): {top}", highlight=False, markup=False)
    if summary.flagged:
        stdout.print(f"fairness: selection ratio under 0.8 for {', '.join(summary.flagged)}", highlight=False, markup=False)
    stdout.print(f"model in {summary.out_dir}" if summary.out_dir else "model not written (use --out DIR)", highlight=False)


@app.command()
def propensity(
    config: Annotated[
        Path | None,
        typer.Argument(help="A run config: trains on <output_dir>/ingest/store, writes <output_dir>/propensity."),
    ] = None,
    table: Annotated[Path | None, typer.Option("--table", help="Train on a customer-level CSV or Parquet file instead.")] = None,
    id_column: Annotated[str | None, typer.Option("--id", help="--table: the customer id column (default: row numbers).")] = None,
    target: Annotated[str | None, typer.Option("--target", help="--table: the label column (1/0, yes/no, true/false).")] = None,
    drop: Annotated[str, typer.Option("--drop", help="--table: comma-separated columns that are not inputs.")] = "",
    sensitive: Annotated[str, typer.Option("--sensitive", help="--table: comma-separated columns audited, never inputs.")] = "",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The model directory (replaced).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="random_forest, logistic or gradient_boosting.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed (default: the config's, else 0).")] = None,
    backend: Annotated[Backend | None, typer.Option("--backend", help="Override the config's backend.")] = None,
    as_json: JsonOption = False,
):
    """Train a propensity model, measure it on held-out customers and, with a config, score the run's features."""
    import dataclasses

    from engine.config import PropensityOptions, load_config
    from engine.propensity import score_propensity, train_propensity, train_table

    options, run_seed, backend_name = PropensityOptions(), 0, "auto"
    parsed = load_config(config) if config is not None else None
    if parsed is not None:
        options, run_seed, backend_name = parsed.propensity, parsed.run.seed, parsed.run.backend
    if model is not None:
        options = dataclasses.replace(options, model=model)
    seed = run_seed if seed is None else seed
    backend_name = backend.value if backend else backend_name
    scores = None
    if table is not None:
        if target is None:
            raise UsageError("propensity --table needs --target (the label column)")
        names = lambda text: tuple(part.strip() for part in text.split(",") if part.strip())  # noqa: E731
        summary = train_table(
            table, id_column=id_column, target=target, drop=names(drop), sensitive=names(sensitive), out=out,
            options=options, seed=seed, backend_name=backend_name,
        )  # fmt: skip
    elif parsed is not None:
        if parsed.run.as_of is None:
            raise UsageError(f"{config}: propensity needs [run] as_of (labels end there, features are scored there)")
        run_dir = parsed.run.output_dir
        out = out or run_dir / "propensity" / "model"
        with _into_run(parsed, "propensity", out), progress("propensity tasks") as update:
            summary = train_propensity(
                run_dir / "ingest" / "store", out, as_of=parsed.run.as_of, options=options,
                feature_options=parsed.features, seed=seed, backend_name=backend_name, progress=update,
            )  # fmt: skip
            if (run_dir / "features" / "_features.json").exists():
                scores = score_propensity(out, run_dir / "features", run_dir / "propensity" / "scores", progress=update)
    else:
        raise UsageError("propensity needs a run config, or --table FILE --target COLUMN")
    if as_json:
        print_json({"train": summary.to_dict(), "scores": scores.to_dict() if scores else None})
        return
    _print_propensity(summary)
    if scores is not None:
        _print_scores(scores)


def _print_scores(summary) -> None:
    bands = ", ".join(f"{band} {summary.bands[band]:,}" for band in ("high", "medium", "low"))
    stdout.print(
        f"scored {summary.customers:,} customers ({bands}) in {summary.seconds:.1f} s into {summary.out_dir}",
        highlight=False,
    )


@app.command()
def score(
    model: Annotated[Path, typer.Option("--model", help="A model directory (from segscale propensity).")],
    features_dir: Annotated[Path, typer.Option("--features", help="A feature table (from segscale features).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the scores (replaced).")],
    scheduler: Annotated[str | None, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="Existing Dask scheduler.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
):
    """Score every customer of a feature table with a saved propensity model, one task per part."""
    from engine.backend import dask_client
    from engine.propensity import load_model, score_propensity

    load_model(model)  # a wrong --model is the user's to fix: say so before starting workers
    with dask_client(resolve_backend("cpu"), scheduler=scheduler, workers=workers) as client:
        with progress("score tasks") as update:
            summary = score_propensity(model, features_dir, out, client=client, progress=update)
    if as_json:
        print_json(summary.to_dict())
        return
    _print_scores(summary)


@app.command()
def monitor(
    scores: Annotated[Path, typer.Option("--scores", help="An earlier scoring (from segscale score).")],
    store: Annotated[Path, typer.Option("--store", help="A store that now holds the scoring's outcome window.")],
    max_auc_drop: Annotated[float, typer.Option(help="Retrain when the AUC fell by more than this.")] = 0.05,
    max_ece: Annotated[float, typer.Option(help="Retrain when the calibration error passed this.")] = 0.05,
    min_lift_share: Annotated[
        float, typer.Option(help="Retrain when top-decile lift fell below this share of the test split's.")
    ] = 0.8,
    as_json: JsonOption = False,
):
    """How an earlier scoring did once its outcomes arrived; flags the model for retraining."""
    from engine.propensity import MonitorLimits, monitor_scores

    report = monitor_scores(scores, store, limits=MonitorLimits(max_auc_drop, max_ece, min_lift_share))
    if as_json:
        print_json(report)
        return
    table = Table(title=f"Scoring of {report['window']['from']}: {report['window']['target']} in {report['window']['days']} days", title_justify="left")
    for column in ("", "realised", "at training (test split)"):
        table.add_column(column, justify="left" if not column else "right")
    for name in ("customers", "positives", "roc_auc", "pr_auc", "brier", "ece", "top_decile_lift"):
        now, then = report["realised"][name], report["expected"][name]
        shown = [f"{v:,}" if isinstance(v, int) else "n/a" if v is None else f"{v:.3f}" for v in (now, then)]
        table.add_row(name, *shown)
    stdout.print(table)
    verdict = "retrain: " + "; ".join(report["reasons"]) if report["retrain"] else "no retraining needed"
    stdout.print(verdict, highlight=False, markup=False)


app.command()(run)
app.command()(report)
app.command()(demo)


def main() -> None:
    app()
