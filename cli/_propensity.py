"""``segscale propensity``, ``score`` and ``monitor``: train, score and watch a propensity model."""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.backend import resolve_backend
from engine.exceptions import UsageError

from ._console import print_json, progress, show_stage, stdout
from ._options import BackendOverride, ForceOption, JsonOption, SchedulerOption, WorkersOption
from ._target import is_own, resolve_target

__all__ = ["monitor", "propensity", "score"]


def _print_propensity(summary) -> None:
    metrics = summary['metrics']
    title = f"Propensity: {summary['model']} for {summary['target']} ({summary['seconds']:.1f} s)"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("train / validation / test", " / ".join(f"{summary['splits'][s]:,}" for s in ("train", "validation", "test")))
    table.add_row("test positives", f"{metrics['positives']:,} ({metrics['base_rate']:.1%})")
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "ece"):
        value = metrics[name]
        table.add_row(name, "n/a" if value is None else f"{value:.4f}")
    stdout.print(table)
    top = ", ".join(f"{row['feature']} ({row['auc_drop']:.3f})" for row in summary['importance'][:5])
    stdout.print(f"top inputs by permutation importance (test AUC lost): {top}", highlight=False, markup=False)
    if summary['fairness_flagged']:
        stdout.print(f"fairness: selection ratio under 0.8 for {', '.join(summary['fairness_flagged'])}", highlight=False, markup=False)
    stdout.print(f"model in {summary['out_dir']}" if summary['out_dir'] else "model not written (use --out DIR)", highlight=False)


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
    backend: BackendOverride = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Train a propensity model, measure it on held-out customers and, with a config, score the run's features."""
    from engine.config import PropensityOptions
    from engine.propensity import train_propensity, train_table

    run = resolve_target(config, backend=backend)
    options = run.config.propensity if run.config else PropensityOptions()
    if model is not None:
        options = dataclasses.replace(options, model=model)
    seed = run.seed if seed is None else seed
    if table is not None:
        if target is None:
            raise UsageError("propensity --table needs --target (the label column)")
        names = lambda text: tuple(part.strip() for part in text.split(",") if part.strip())  # noqa: E731
        summary = train_table(
            table, id_column=id_column, target=target, drop=names(drop), sensitive=names(sensitive), out=out,
            options=options, seed=seed, backend_name=run.backend_name,
        )  # fmt: skip
    elif run.config is not None and is_own(out, run.layout.propensity_model.root):
        config = dataclasses.replace(run.config, propensity=options, run=dataclasses.replace(run.config.run, seed=seed))
        stage = dataclasses.replace(run, config=config).run_stage("propensity", force=force)
        show_stage(stage, as_json, _print_trained_and_scored)
        return
    elif run.config is not None:
        if run.as_of is None:
            raise UsageError(f"{config}: propensity needs [run] as_of (labels end there, features are scored there)")
        with run.into_run("propensity", out), progress("propensity tasks") as update:
            summary = train_propensity(
                run.layout.store.root, out, as_of=run.as_of, options=options, feature_options=run.config.features,
                seed=seed, backend_name=run.backend_name, progress=update,
            )  # fmt: skip
    else:
        raise UsageError("propensity needs a run config, or --table FILE --target COLUMN")
    if as_json:
        print_json({"train": summary.to_dict(), "scores": None})
        return
    _print_propensity(summary.to_dict())


def _print_trained_and_scored(summary: dict) -> None:
    _print_propensity(summary["train"])
    _print_scores(summary["scores"])


def _print_scores(summary) -> None:
    bands = ", ".join(f"{band} {summary['bands'][band]:,}" for band in ("high", "medium", "low"))
    stdout.print(
        f"scored {summary['customers']:,} customers ({bands}) in {summary['seconds']:.1f} s into {summary['out_dir']}",
        highlight=False,
    )


def score(
    model: Annotated[Path, typer.Option("--model", help="A model directory (from segscale propensity).")],
    features_dir: Annotated[Path, typer.Option("--features", help="A feature table (from segscale features).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the scores (replaced).")],
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    as_json: JsonOption = False,
):
    """Score every customer of a feature table with a saved propensity model, one task per part."""
    from engine.backend import dask_client
    from engine.propensity import read_model_document, score_propensity

    read_model_document(model)  # a wrong --model is the user's to fix: say so before starting workers
    with dask_client(resolve_backend("cpu"), scheduler=scheduler, workers=workers) as client:
        with progress("score tasks") as update:
            summary = score_propensity(model, features_dir, out, client=client, progress=update)
    if as_json:
        print_json(summary.to_dict())
        return
    _print_scores(summary.to_dict())


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
