"""``segscale ingest``, ``features``, ``segments`` and ``value``: one stage each, from a run config or from paths."""

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.exceptions import UsageError

from ._console import against_rfm_grid, progress, show_stage, stdout
from ._options import (
    DATE_FORMATS, BackendOverride, ForceOption, JsonOption, MemoryLimitOption, SchedulerOption, WorkersOption,
)  # fmt: skip
from ._target import is_own, overridden, resolve_target

__all__ = ["features", "ingest", "segments", "value"]


def _print_accounting(summary) -> None:
    """Rows read, kept, quarantined and duplicated per input; reasons below, where they fit."""
    table = Table(title=f"Ingested into {summary['out_dir']} ({summary['partitions']} partitions, {summary['seconds']:.1f} s)", title_justify="left")
    for column in ("input", "read", "kept", "quarantined", "duplicates"):
        table.add_column(column, justify="left" if column == "input" else "right", no_wrap=True)
    for name, counts in summary['tables'].items():
        table.add_row(
            name,
            f"{counts['read']:,}",
            f"{counts['kept']:,}",
            f"{sum(counts['quarantined'].values()):,}",
            f"{counts['duplicates']:,}",
        )
    stdout.print(table)
    for name, counts in summary['tables'].items():
        if counts["quarantined"]:
            reasons = sorted(counts["quarantined"].items(), key=lambda item: -item[1])
            stdout.print(f"  {name} quarantined: " + ", ".join(f"{reason} {rows:,}" for reason, rows in reasons), highlight=False)


def ingest(
    config: Annotated[Path, typer.Argument(help="A segscale run config (TOML).")],
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Validate, deduplicate, resolve identities and write the customer-clustered store."""
    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    show_stage(run.run_stage("ingest", force=force), as_json, _print_ingest)


def _print_ingest(summary: dict) -> None:
    _print_accounting(summary)
    identity = summary['identity']
    if identity:
        stdout.print(
            f"identity: {identity.get('accounts', 0):,} accounts -> {identity.get('customers', 0):,} customers "
            f"({identity.get('customers_merged', 0):,} accounts merged); quarantine and store under {summary['out_dir']}",
            highlight=False,
        )


def _print_features(summary) -> None:
    stdout.print(
        f"features: {summary['customers']:,} customers x {len(summary['features'])} features as of {summary['as_of']} "
        f"({summary['partitions']} partitions, {summary['seconds']:.1f} s) in {summary['out_dir']}",
        highlight=False,
    )


def features(
    config: Annotated[
        Path | None, typer.Argument(help="A run config: reads <output_dir>/ingest/store, writes <output_dir>/features.")
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="A customer-clustered store (from segscale ingest).")] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=DATE_FORMATS, help="Only rows before this date (UTC) count.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write the features into.")] = None,
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Point-in-time behavioural features, one row per customer, from the store."""
    from engine.config import FeatureOptions
    from engine.features import build_features

    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    if run.config and is_own(store, run.layout.store.root) and is_own(out, run.layout.features.root):
        run = dataclasses.replace(run, config=overridden(run.config, as_of=as_of))
        show_stage(run.run_stage("features", force=force), as_json, _print_features)
        return
    options = run.config.features if run.config else FeatureOptions()
    if run.config:
        store, out = store or run.layout.store.root, out or run.layout.features.root
    if store is None or out is None:
        raise UsageError("features needs a run config, or both --store and --out")
    as_of_date = as_of.date() if as_of else run.as_of
    with run.client("features", out) as client:
        with progress("feature tasks") as update:
            summary = build_features(
                store, out, as_of=as_of_date, options=options, backend_name=run.backend_name, client=client,
                progress=update,
            )  # fmt: skip
    show_stage({"status": "ran", "summary": summary.to_dict()}, as_json, _print_features)


def _segments_table(summary) -> Table:
    table = Table(
        title=f"{summary['k']} segments of {summary['customers']:,} customers (k by {summary.get('k_chosen_by', 'silhouette')}, "
        f"silhouette {summary['silhouette']:.3f}, {summary['seconds']:.1f} s)",
        title_justify="left",
    )
    for column in ("segment", "name", "customers", "share", "revenue share", "stability"):
        table.add_column(column, justify="left" if column == "name" else "right", no_wrap=True)
    for segment in summary['segments']:
        stability = segment.get("stability")
        table.add_row(
            str(segment["segment"]),
            segment["name"],
            f"{segment['customers']:,}",
            f"{segment['share_customers']:.1%}",
            f"{segment['share_revenue']:.1%}",
            "-" if stability is None else f"{stability:.2f}" + (" unstable" if segment["segment"] in summary['unstable_segments'] else ""),
        )
    niches = summary['niche_customers']
    table.caption = (
        f"{summary['micro_segments']} micro-segments; {len(niches)} niche groups ({sum(niches):,} customers); "
        f"{summary['outliers']:,} outliers; stability = mean bootstrap Jaccard, unstable below 0.75"
    )
    against = against_rfm_grid(summary)
    if against:
        table.caption += f"\n{against}"
    table.caption_justify = "left"
    return table


def segments(
    config: Annotated[
        Path | None, typer.Argument(help="A run config: reads <output_dir>/features, writes <output_dir>/segments.")
    ] = None,
    features_dir: Annotated[Path | None, typer.Option("--features", help="A feature table (from segscale features).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Directory to write the segments into.")] = None,
    k: Annotated[int | None, typer.Option("--k", min=2, help="A fixed number of segments (default: chosen by stability).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed (default: the config's, else 0).")] = None,
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Segments by k-means on prepared features: assignments, profiles and behavioural names."""
    from engine.config import SegmentOptions
    from engine.segments import build_segments

    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    options = run.config.segments if run.config else SegmentOptions()
    if k is not None:
        options = dataclasses.replace(options, k=k)
    seed = run.seed if seed is None else seed
    if run.config and is_own(features_dir, run.layout.features.root) and is_own(out, run.layout.segments.root):
        config = dataclasses.replace(run.config, segments=options, run=dataclasses.replace(run.config.run, seed=seed))
        show_stage(dataclasses.replace(run, config=config).run_stage("segments", force=force), as_json, _print_segments)
        return
    if run.config:
        features_dir, out = features_dir or run.layout.features.root, out or run.layout.segments.root
    if features_dir is None or out is None:
        raise UsageError("segments needs a run config, or both --features and --out")
    with run.client("segments", out) as client:
        with progress("segment tasks") as update:
            summary = build_segments(
                features_dir, out, options=options, seed=seed, backend_name=run.backend_name, client=client,
                progress=update,
            )  # fmt: skip
    show_stage({"status": "ran", "summary": summary.to_dict()}, as_json, _print_segments)


def _print_segments(summary: dict) -> None:
    stdout.print(_segments_table(summary))
    stdout.print(f"assignments, profiles and model in {summary['out_dir']}", highlight=False)


def _print_value(document: dict) -> None:
    from engine.value import MODEL_LABELS, format_params

    purchase, spend = document["purchase_model"], document["spend_model"]
    unit = document.get("time_unit", "days")
    stdout.print(
        f"value: {document['customers']:,} customers as of {document['as_of']}, "
        f"horizon {document['horizon_days']} days (parameters in {unit})\n"
        f"{MODEL_LABELS.get(purchase['name'], purchase['name'])}: {format_params(purchase)} "
        f"(converged: {purchase['converged']}, log-likelihood {purchase['log_likelihood']:.2f})\n"
        + (f"gamma-gamma: {format_params(spend)} (converged: {spend['converged']})" if spend
           else "no spend model: the transactions carry no amounts"),
        highlight=False,
    )  # fmt: skip
    if document.get("forecast") == "naive":
        stdout.print("every purchase model lost to the naive forecast before as-of: the naive forecast makes the "
                     "expected purchases and CLV (no P(alive))", style="bold red", highlight=False)  # fmt: skip
    for name, fit in (("purchase", purchase), ("spend", spend)):
        if fit and fit.get("degenerate"):
            stdout.print(f"the {name} model's fit is degenerate, do not trust its predictions: "
                         + "; ".join(fit["degenerate"]), style="bold red", highlight=False)  # fmt: skip
    holdout = document["holdout"]
    if holdout is None:
        stdout.print("holdout: the store ends before the horizon does; no evaluation", highlight=False)
        return
    table = Table("holdout", "predicted", "actual", "MAE per customer", "RMSE per customer")
    for name in ("purchases", "spend"):
        row = holdout[name]
        if row is None:
            continue
        cells = (f"{row['predicted']:,.1f}", f"{row['actual']:,.1f}", f"{row['mae']:.3f}", f"{row['rmse']:.3f}")
        table.add_row(name, *cells)
    buyers = holdout["buyers"]
    table.add_row("buyers", f"{buyers['predicted']:,.1f}", f"{buyers['actual']:,}", "", "")
    naive = holdout.get("naive")
    if naive:
        table.add_row("purchases, naive", f"{naive['predicted']:,.1f}", f"{holdout['purchases']['actual']:,.1f}",
                      f"{naive['mae']:.3f}", "")  # fmt: skip
        table.caption = (f"naive: each customer buys on at their calibration rate; the model's per-customer error is "
                         f"{naive['model_mae_ratio']:.3f}x the naive forecast's")  # fmt: skip
        table.caption_justify = "left"
    stdout.print(table)
    if naive and naive["model_mae_ratio"] > 1:
        stdout.print("the purchase model predicts the holdout worse than the naive forecast", style="bold red")
    coverage = holdout["next_purchase_inside_interval"].items()
    inside = ", ".join(f"{share:.1%} inside the {level} interval" for level, share in coverage)
    stdout.print(f"next purchase: {inside}", highlight=False)


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
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Lifetime value: P(alive), expected purchases and spend, CLV and next purchase date per customer."""
    from engine.config import ValueOptions
    from engine.value import estimate_value

    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    options = run.config.value if run.config else ValueOptions()
    if horizon_days is not None:
        options = dataclasses.replace(options, horizon_days=horizon_days)
    if run.config and is_own(store, run.layout.store.root) and is_own(out, run.layout.value.root):
        config = dataclasses.replace(overridden(run.config, as_of=as_of), value=options)
        show_stage(dataclasses.replace(run, config=config).run_stage("value", force=force), as_json, _print_value)
        return
    if run.config:
        store, out = store or run.layout.store.root, out or run.layout.value.root
    if store is None or out is None:
        raise UsageError("value needs a run config, or both --store and --out")
    with run.client("value", out) as client:
        with progress("value tasks") as update:
            summary = estimate_value(
                store,
                out,
                as_of=as_of.date() if as_of else run.as_of,
                horizon_days=options.horizon_days,
                discount_rate=options.discount_rate_yearly,
                model=options.model,
                grain=options.grain,
                calibration_end=options.calibration_end,
                time_unit=options.time_unit,
                min_repeat_customers=options.min_repeat_customers,
                sample=options.sample,
                backend_name=run.backend_name,
                client=client,
                progress=update,
            )
    show_stage({"status": "ran", "summary": summary.to_dict()}, as_json, _print_value)


def _print_activation(summary: dict) -> None:
    table = Table("audience", "channel", "candidates", "removed", "treated", "control")
    for audience in summary["audiences"]:
        removed = ", ".join(f"{reason} {count:,}" for reason, count in audience["removed"].items()) or "none"
        table.add_row(audience["name"], audience["channel"], f"{audience['candidates']:,}", removed,
                      f"{audience['treated']:,}", f"{audience['control']:,}")  # fmt: skip
    stdout.print(table)
    for audience in summary["audiences"]:
        if audience["imbalanced"]:
            stdout.print(f"{audience['name']}: treated and control differ by more than 0.1 standardised difference on "
                         + ", ".join(audience["imbalanced"]), style="bold red", highlight=False)  # fmt: skip
    stdout.print(f"audiences (Parquet and CSV) in {summary['out_dir']}/audiences", highlight=False)


def activate(
    config: Annotated[Path, typer.Argument(help="A run config with [[activate.audiences]]: writes <output_dir>/activate.")],
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=DATE_FORMATS, help="When the sends go out (the run's as-of).")
    ] = None,
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Campaign audiences from the run's outputs: consent, suppressions, frequency caps, control groups."""
    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    if not run.config.activate.audiences:
        raise UsageError(f"{config}: no [[activate.audiences]] declared; nothing to activate")
    run = dataclasses.replace(run, config=overridden(run.config, as_of=as_of))
    show_stage(run.run_stage("activate", force=force), as_json, _print_activation)


def _print_measure(summary: dict) -> None:
    table = Table("audience", "treated", "control", "rate, treated", "rate, control", "lift [95% interval]", "p-value")
    for audience in summary["audiences"]:
        lift = audience["conversion"]
        interval = f"{lift['absolute_lift']:+.4f} [{lift['absolute_low']:.4f}, {lift['absolute_high']:.4f}]"
        table.add_row(audience["name"], f"{lift['treated']:,}", f"{lift['control']:,}", f"{lift['treated_rate']:.2%}",
                      f"{lift['control_rate']:.2%}", interval, f"{lift['p_value']:.3g}")  # fmt: skip
    stdout.print(table)
    for audience in summary["audiences"]:
        lift = audience["conversion"]
        if lift["underpowered"]:
            stdout.print(f"{audience['name']}: underpowered: the smallest lift this test detects is "
                         f"{lift['minimum_detectable_effect']:.4f}", style="bold red", highlight=False)  # fmt: skip
        for name, guardrail in audience["guardrails"].items():
            if guardrail["worse"]:
                stdout.print(f"{audience['name']}: {name} is worse in the treated group", style="bold red",
                             highlight=False)  # fmt: skip
    if summary["outside_audiences"]:
        stdout.print(f"{summary['outside_audiences']:,} outcome rows are of customers in no audience; left out",
                     highlight=False)  # fmt: skip
    stdout.print(f"measure.json, measure.html and manifest.json in {summary['out_dir']}", highlight=False)


def measure(
    assignments: Annotated[Path, typer.Option("--assignments", help="A run's activate directory (the audiences).")],
    outcomes: Annotated[
        Path, typer.Option("--outcomes", help="CSV or Parquet: customer_key, converted [, revenue, unsubscribed, complained].")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write measure.json, measure.html and manifest.json into.")],
    as_json: JsonOption = False,
):
    """Lift of each audience, treated against control, with 95% intervals, p-values and guardrails."""
    from engine.measure import measure_lift

    summary = measure_lift(assignments, outcomes, out).to_dict()
    show_stage({"status": "ran", "summary": summary}, as_json, _print_measure)


def _print_lookalikes(summary: dict) -> None:
    stdout.print(f"lookalike: {summary['lookalikes']:,} customers most like the seed's {summary['seed_known']:,} "
                 f"(of {summary['customers']:,}; {summary['method']}), in {summary['out_dir']}/lookalikes.parquet",
                 highlight=False)  # fmt: skip
    if summary["seed_unknown"]:
        stdout.print(f"{summary['seed_unknown']:,} of the seed's {summary['seed_rows']:,} rows are not customers of "
                     "this run; left out", style="bold red", highlight=False)  # fmt: skip


def lookalike(
    config: Annotated[Path, typer.Argument(help="A run config whose run has features (and suppressions, if any).")],
    seed: Annotated[Path, typer.Option("--seed", help="CSV or Parquet with customer_key or customer_id: the seed.")],
    size: Annotated[int | None, typer.Option("--size", min=1, help="How many lookalikes.")] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", help="How many, as a share of the customers.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write (default <output_dir>/lookalike).")] = None,
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    as_json: JsonOption = False,
):
    """The customers most like a seed audience (seed members and suppressed customers left out)."""
    from engine.lookalike import find_lookalikes

    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    out = out or run.layout.root / "lookalike"
    with run.client("lookalike", out) as client:
        with progress("lookalike tasks") as update:
            summary = find_lookalikes(run.layout.root, seed, out, size=size, fraction=fraction, seed=run.config.run.seed,
                                      backend_name=run.backend_name, client=client, progress=update)  # fmt: skip
    show_stage({"status": "ran", "summary": summary.to_dict()}, as_json, _print_lookalikes)


def _new_files(values: list[str]) -> dict[str, str]:
    """``--new`` values: ``TABLE=PATH``, or a bare ``PATH`` of transactions (a path may hold
    ``=`` itself, as Hive-style partition directories do)."""
    from engine.contract import TABLES

    new: dict[str, str] = {}
    for value in values:
        table, _, path = value.partition("=")
        if table not in TABLES:
            table, path = "transactions", value
        if table in new:
            raise UsageError(f"--new {value}: {table} is given twice; put its new files in one directory")
        new[table] = path
    return new


def _print_update(summary: dict) -> None:
    table = Table("input", "read", "kept", "quarantined", "duplicates")
    for name, counts in summary["tables"].items():
        table.add_row(name, f"{counts['read']:,}", f"{counts['kept']:,}", f"{sum(counts['quarantined'].values()):,}",
                      f"{counts['duplicates']:,}")  # fmt: skip
    stdout.print(table)
    stdout.print(f"update: as of {summary['as_of']} (was {summary['previous_as_of']}), {summary['customers']:,} customers, "
                 f"{summary['partitions_appended']} store partitions appended to ({summary['partitions_rewritten']} "
                 f"rewritten for merged customers), {summary['new_customers']:,} new "
                 "customers; changed: " + ", ".join(f"{name} {count:,}" for name, count in summary["changes"].items()),
                 highlight=False)  # fmt: skip
    if summary["stale"]:
        stdout.print("the saved models are stale (" + ", ".join(f"{row['column']} PSI {row['psi']:.2f}"
                                                               for row in summary["shifted"][:5])
                     + "): segscale run refits them", style="bold red", highlight=False)  # fmt: skip
    stdout.print(f"deltas (Parquet and CSV) in {summary['update_dir']}", highlight=False)


def update(
    config: Annotated[Path, typer.Argument(help="The config of a finished run: its output_dir is refreshed.")],
    new: Annotated[list[str], typer.Option("--new", help="New rows: TABLE=PATH (a file or directory), or PATH for "
                                                         "transactions; repeat for several tables.")],  # fmt: skip
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=DATE_FORMATS, help="The refreshed as-of (default: the day after the last transaction)."),
    ] = None,
    backend: BackendOverride = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    memory_limit: MemoryLimitOption = None,
    as_json: JsonOption = False,
):
    """Refresh a run with new rows: append them to the store, recompute features, re-place and re-score every
    customer with the saved models (no refit), and write who changed segment, band or audience."""
    from engine.pipeline import RunLock
    from engine.update import update_run

    run = resolve_target(config, backend=backend, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    files = _new_files(new)
    # The lock before the cluster: a run directory in use is refused before workers start.
    with RunLock(run.layout.root, "update"), run.client("update", run.layout.root / "updates") as client:
        with progress("update tasks") as report:
            summary = update_run(run.config, files, as_of=as_of.date() if as_of else None,
                                 backend_name=run.backend_name, client=client, progress=report)  # fmt: skip
    show_stage({"status": "ran", "summary": summary.to_dict()}, as_json, _print_update)
