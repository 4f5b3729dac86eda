"""The registry of benchmark cases: what is measured, as data (STYLE 12).

A :class:`Case` is one implementation of one pipeline stage: segscale's own (with the
backends it runs on) or, later, a peer baseline (polars, DuckDB, pandas + scikit-learn,
Spark) registered under the same ``stage`` and named in the segscale case's ``baselines``.
``run_benchmarks(stages=...)`` runs every case of the chosen stages at every size.

A case's ``run`` does the real work of one repeat::

    run(size, workdir, backend_name, workers, clock) -> dict

``size`` is the number of customers; ``workdir`` is an empty directory the runner owns and
deletes afterwards (write outputs into a fresh subdirectory of it); ``backend_name`` is
``"cpu"`` or ``"gpu"`` and always one of ``Case.backends``; ``workers`` is the number of
worker processes (or GPUs) to use. The case wraps exactly the work to be timed in
``with clock:`` (set-up such as starting a cluster stays outside) and returns:

``rows``
    dict of output table -> rows produced (required).
``total_rows``
    The throughput numerator; defaults to the sum of ``rows``.
``setup_seconds``
    Untimed set-up it measured (cluster start-up), or None.
``workers``
    Workers it actually used, when fewer than asked.
``data_path``
    Where its output went (reported when the data are kept).
``quality``
    dict of quality metric -> value, for cases whose output can be scored.

A case with a ``dataset`` also gets ``data=``: the dict its entry in :data:`DATASETS`
returned. The runner builds each dataset once per size, untimed and outside the memory
measurement, shares it between the cases of the run and deletes it afterwards, so peers
compared with each other read the very same files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.exceptions import UsageError

from . import (
    _activate, _backtest, _features, _ingest, _lookalike, _pipeline, _propensity, _quality, _segments, _spark,
    _update, _value_backtest,
)  # fmt: skip

__all__ = ["CASES", "DATASETS", "SIZE_UNIT", "BenchmarkUsageError", "Case", "missing_requirements", "select_cases"]

SIZE_UNIT = "customers"
_BACKENDS = ("cpu", "gpu")


class BenchmarkUsageError(UsageError, ValueError):
    """A benchmark was asked for that cannot be run as asked (unknown stage, bad size).

    A ``UsageError``, so the CLI exits with 2, and a ``ValueError`` for Python callers.
    """


@dataclass(frozen=True)
class Case:
    """One benchmarked implementation of one stage.

    Parameters
    ----------
    name : str
        Unique key in :data:`CASES`; shown in tables and plots.
    stage : str
        The pipeline stage measured; ``run_benchmarks(stages=...)`` selects by it, and a
        stage's peer baselines share it.
    description : str
        One line: what runs and on what data.
    run : callable
        ``run(size, workdir, backend_name, workers, clock) -> dict``; see the module docstring.
    backends : tuple of {"cpu", "gpu"}, default ("cpu",)
        Backends it has an implementation for; others are reported as skipped.
    baselines : tuple of str, default ()
        Names of registered cases of the same stage to compare with; the runner reports
        the ratio of their median time to this case's (``speedup_vs``) at each size.
    dataset : str, optional
        Key in :data:`DATASETS` of the shared input data ``run`` receives as ``data=``.
    requires : tuple of str, default ()
        Modules the case imports (a peer's library); without them it is skipped, with a
        message saying how to install them.
    """

    name: str
    stage: str
    description: str
    run: Callable[..., dict]
    backends: tuple[str, ...] = ("cpu",)
    baselines: tuple[str, ...] = ()
    dataset: str | None = None
    requires: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.backends or not set(self.backends) <= set(_BACKENDS):
            raise ValueError(
                f"case {self.name!r}: backends must be a non-empty subset of {_BACKENDS}, got {self.backends}"
            )


# ---------------------------------------------------------------------------------------
# generate: the synthetic world generator (engine.synth)


def _run_generate(size: int, workdir: Path, backend_name: str, workers: int, clock) -> dict:
    """Write a world of ``size`` customers (seed 0) under ``workdir``; time the writing only."""
    from engine.backend import dask_client, resolve_backend
    from engine.synth import WorldSpec, generate_world

    spec = WorldSpec(customers=size, seed=0)
    spec.validate()
    # As `segscale generate` does: never more workers than chunks (25,000 customers each).
    workers = max(1, min(workers, spec.n_chunks))
    out_dir = Path(tempfile.mkdtemp(prefix="world-", dir=workdir))
    with contextlib.ExitStack() as stack:
        client, setup_seconds = None, None
        if workers > 1:
            started = time.perf_counter()
            client = stack.enter_context(dask_client(resolve_backend(backend_name), workers=workers))
            setup_seconds = time.perf_counter() - started
        with clock:
            summary = generate_world(out_dir, spec, client=client, overwrite=True)
    return {
        "rows": dict(summary.rows),
        "total_rows": sum(summary.rows.values()),
        "setup_seconds": setup_seconds,
        "workers": workers,
        "data_path": str(out_dir),
    }


# ---------------------------------------------------------------------------------------
# ingest: segscale's ingest and its peers (benchmarks/_ingest.py)

_INGEST_WORK = (
    "validate, quarantine, drop exact duplicates, resolve identities (SciPy connected components), "
    "sort by (key, ts), write Parquet in segscale's number of parts"
)


# ---------------------------------------------------------------------------------------
# features: segscale's feature stage and its peers (benchmarks/_features.py)

DATASETS = {
    "dirty-world": _ingest.prepare_dirty_world,
    "world+store": _features.prepare_world_and_store,
    "kmeans-matrix": _segments.prepare_kmeans_matrix,
    "propensity-frame": _propensity.prepare_propensity_frame,
    "future-world": _quality.prepare_future_world,
    "backtest-world": _backtest.prepare_backtest_world,
    "online-retail": _backtest.prepare_online_retail,
    "grocery": _value_backtest.prepare_grocery,
    "cdnow": _value_backtest.prepare_cdnow,
    "activation-run": _activate.prepare_activation_run,
    "update-run": _update.prepare_update_run,
}

_FEATURE_PEERS = ("features-pandas", "features-polars", "features-duckdb", "features-spark")
_SUBSET = "RFM + scores, orders/spend 30/90/365 d, top-5 category shares"


def missing_requirements(case: Case) -> list[str]:
    """The modules ``case`` requires that cannot be imported here."""
    return [module for module in case.requires if importlib.util.find_spec(module) is None]


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            name="generate",
            stage="generate",
            description="engine.synth.generate_world: seeded world (transactions, events, customers, "
            "identities, truth) to Parquet; Dask processes when workers > 1",
            run=_run_generate,
            backends=("cpu",),
        ),
        # ingest (benchmarks/_ingest.py). segscale runs first, in a process the peers'
        # allocators have not grown; each case leaves its counts in the shared data, and the
        # cases after it report whether theirs match.
        Case(
            name="ingest",
            stage="ingest",
            description="engine.ingest: a generated world (1% dirt) validated, deduplicated, "
            "identity-resolved and written to the customer-clustered store; rows = rows read",
            run=_ingest.run_segscale_ingest,
            backends=("cpu", "gpu"),
            baselines=("ingest-duckdb", "ingest-polars"),
            dataset="dirty-world",
        ),
        Case(
            name="ingest-duckdb",
            stage="ingest",
            description=f"DuckDB SQL from the world's Parquet: {_INGEST_WORK}; the store copied out part by part",
            run=_ingest.run_duckdb,
            dataset="dirty-world",
            requires=("duckdb",),
        ),
        Case(
            name="ingest-polars",
            stage="ingest",
            description=f"polars lazy frames from the world's Parquet: {_INGEST_WORK}; sunk by the streaming engine",
            run=_ingest.run_polars,
            dataset="dirty-world",
            requires=("polars",),
        ),
        Case(
            name="pipeline",
            stage="pipeline",
            description="engine.pipeline run_pipeline (segscale run) on a generated world (1% dirt), every stage "
            "at its defaults and the report; per-stage seconds and peak RSS from the manifest",
            run=_pipeline.run_pipeline_case,
            backends=("cpu", "gpu"),
        ),
        Case(
            name="features",
            stage="features",
            description=f"engine.features from the customer-clustered store: {_SUBSET}",
            run=_features.run_segscale_features,
            backends=("cpu", "gpu"),
            baselines=_FEATURE_PEERS,
            dataset="world+store",
        ),
        Case(
            name="ingest+features",
            stage="features",
            description="engine.ingest then engine.features from the raw world (validation, identity, store, features)",
            run=_features.run_ingest_and_features,
            backends=("cpu", "gpu"),
            baselines=_FEATURE_PEERS,
            dataset="world+store",
        ),
        Case(
            name="features-pandas",
            stage="features",
            description=f"pandas groupby from the raw world's Parquet: {_SUBSET}",
            run=_features.run_pandas,
            dataset="world+store",
        ),
        Case(
            name="features-polars",
            stage="features",
            description=f"polars lazy query from the raw world's Parquet: {_SUBSET}",
            run=_features.run_polars,
            dataset="world+store",
            requires=("polars",),
        ),
        Case(
            name="features-duckdb",
            stage="features",
            description=f"DuckDB SQL from the raw world's Parquet: {_SUBSET}",
            run=_features.run_duckdb,
            dataset="world+store",
            requires=("duckdb",),
        ),
        Case(
            name="features-spark",
            stage="features",
            description=f"Spark SQL DataFrames, local[workers], from the raw world's Parquet: {_SUBSET}",
            run=_spark.run_spark_features,
            dataset="world+store",
            requires=("pyspark",),
        ),
        # k-means (benchmarks/_segments.py). The peer is registered, and so runs, first: it
        # leaves its labels in the shared data for the segscale case's relative quality.
        Case(
            name="kmeans-sklearn",
            stage="kmeans",
            description=f"scikit-learn KMeans fit + predict on every row of the prepared matrix ({_segments.SETTINGS})",
            run=_segments.run_sklearn_kmeans,
            dataset="kmeans-matrix",
        ),
        Case(
            name="kmeans",
            stage="kmeans",
            description=f"engine.segments choose_k on the pipeline's {_segments.SAMPLE:,}-row sample, "
            f"then assign of every row by part ({_segments.SETTINGS})",
            run=_segments.run_segscale_kmeans,
            backends=("cpu", "gpu"),
            baselines=("kmeans-sklearn", "kmeans-spark"),
            dataset="kmeans-matrix",
        ),
        Case(
            name="kmeans-distributed",
            stage="kmeans",
            description="engine.segments fit_distributed_kmeans on every row (k-means||, Lloyd passes over the "
            f"parts), then assign of every row by part ({_segments.SETTINGS})",
            run=_segments.run_distributed_kmeans,
            backends=("cpu", "gpu"),
            baselines=("kmeans-sklearn", "kmeans-spark"),
            dataset="kmeans-matrix",
        ),
        Case(
            name="kmeans-spark",
            stage="kmeans",
            description="Spark MLlib KMeans, local[workers], fit + transform of every row of the prepared matrix "
            f"({_spark.KMEANS_SETTINGS})",
            run=_spark.run_spark_kmeans,
            dataset="kmeans-matrix",
            requires=("pyspark",),
        ),
        # random forest (benchmarks/_propensity.py). The peer runs first, as for k-means: it
        # leaves its AUC and test scores in the shared data for the segscale cases' comparison.
        Case(
            name="rf-sklearn",
            stage="propensity",
            description="scikit-learn RandomForestClassifier fit on the train split's prepared matrix + predict_proba "
            f"of the test split's; purchase in 90 days ({_propensity.SETTINGS}, n_jobs=workers)",
            run=_propensity.run_sklearn_forest,
            dataset="propensity-frame",
        ),
        Case(
            name="rf",
            stage="propensity",
            description="engine.propensity ModelInputs + make_estimator forest fit on the train split's labelled "
            "features + predict_proba of the test split's, matrices included; no calibration, bands, reasons "
            f"or metrics ({_propensity.SETTINGS}, n_jobs=workers)",
            run=_propensity.run_segscale_forest,
            baselines=("rf-sklearn", "rf-spark"),
            dataset="propensity-frame",
        ),
        Case(
            name="rf-stage",
            stage="propensity",
            description="engine.propensity fit_and_evaluate on the labelled features: the forest, isotonic "
            "calibration on the validation split, bands, reasons, test scores, metrics, permutation importance "
            f"({_propensity.SETTINGS}, n_jobs=usable cores; on the GPU cuML, majority class undersampled)",
            run=_propensity.run_segscale_stage,
            backends=("cpu", "gpu"),
            baselines=("rf-sklearn", "rf-spark"),
            dataset="propensity-frame",
        ),
        Case(
            name="propensity-stage",
            stage="propensity",
            description="engine.propensity fit_and_evaluate as rf-stage, with the stage's default model (auto: "
            "scikit-learn HistGradientBoosting on the CPU, 100 rounds, learning rate 0.1; cuML's forest on the GPU)",
            run=_propensity.run_default_stage,
            backends=("cpu", "gpu"),
            baselines=("rf-sklearn", "rf-spark"),
            dataset="propensity-frame",
        ),
        Case(
            name="rf-spark",
            stage="propensity",
            description="Spark MLlib RandomForestClassifier, local[workers], fit on the train split's prepared matrix "
            f"+ probability of the test split's; purchase in 90 days ({_spark.FOREST_SETTINGS})",
            run=_spark.run_spark_forest,
            dataset="propensity-frame",
            requires=("pyspark",),
        ),
        # quality: the propensity, value and segment stages against the world's truth (benchmarks/_quality.py)
        Case(
            name="propensity-truth",
            stage="quality",
            description="engine.propensity train (stage defaults) + score at the world's end; AUC and ECE on the "
            "simulated next 90 days beside the oracle's and the purchase-history Bayes AUC",
            run=_quality.run_propensity_truth,
            backends=("cpu", "gpu"),
            dataset="future-world",
        ),
        Case(
            name="propensity-truth-3-origins",
            stage="quality",
            description="the same with [propensity] origins = 3 (three label windows of training rows)",
            run=_quality.run_propensity_truth_3_origins,
            backends=("cpu", "gpu"),
            dataset="future-world",
        ),
        Case(
            name="segments-truth",
            stage="quality",
            description="engine.segments with the stage's defaults; ARI against the planted archetypes beside "
            "k fixed at the archetypes, the RFM grid, a classifier told the archetypes, and another seed",
            run=_quality.run_segments_truth,
            backends=("cpu", "gpu"),
            dataset="future-world",
        ),
        Case(
            name="segments-backtest",
            stage="backtest",
            description="engine.segments with the stage's defaults, as of 90 days before the world's end; against "
            "the RFM grid at equal group count (bootstrap intervals) and ARI beside a classifier told the archetypes",
            run=_backtest.run_segments_backtest,
            backends=("cpu", "gpu"),
            dataset="backtest-world",
        ),
        Case(
            name="segments-online-retail",
            stage="backtest",
            description="engine.segments with the stage's defaults on UCI Online Retail as of 2011-09-09 (size "
            "ignored); against the RFM grid at equal group count, with bootstrap intervals",
            run=_backtest.run_segments_online_retail,
            backends=("cpu", "gpu"),
            dataset="online-retail",
        ),
        Case(
            name="lookalike",
            stage="lookalike",
            description="engine.lookalike: a seed of 1% of the customers from the largest planted archetype, as many "
            "lookalikes (timed); precision per archetype for seeds of 1,000",
            run=_lookalike.run_lookalike,
            backends=("cpu", "gpu"),
            dataset="backtest-world",
        ),
        Case(
            name="activate",
            stage="activate",
            description="engine.activate: 10 audiences over segments, bands, scores, CLV percentiles, P(alive) and "
            "recency on 3 channels, caps, consent, 2% suppressed, 10% control, a 3-action playbook; 20 contacts "
            "a customer",
            run=_activate.run_activate,
            dataset="activation-run",
        ),
        # update (benchmarks/_update.py). The full run is registered, and so runs, first: it
        # leaves its time in the shared data for the update's ratio.
        Case(
            name="update-full-run",
            stage="update",
            description="engine.pipeline run_pipeline (no report) over the base run's inputs and the new week of rows "
            "as of the world's as-of: the full refresh that update is measured against",
            run=_update.run_full_run,
            backends=("cpu", "gpu"),
            dataset="update-run",
        ),
        Case(
            name="update",
            stage="update",
            description="engine.update update_run: a week of new rows for 1% of the customers (1% dirt) into a "
            "finished run as of a week earlier (a copy, untimed); append, features, rescoring, deltas, drift",
            run=_update.run_update,
            backends=("cpu", "gpu"),
            baselines=("update-full-run",),
            dataset="update-run",
        ),
        Case(
            name="value-grocery",
            stage="value-backtest",
            description="engine.value with the stage's defaults on the BTYDplus grocery log (no amounts), "
            "calibration to 2006-12-31, holdout 2007; against the naive forecast and lifetimes' best",
            run=_value_backtest.run_value_grocery,
            backends=("cpu", "gpu"),
            dataset="grocery",
        ),
        Case(
            name="value-online-retail",
            stage="value-backtest",
            description="engine.value with the stage's defaults on UCI Online Retail, calibration to 2011-09-08, "
            "holdout 90 days; against the naive forecast and lifetimes' best",
            run=_value_backtest.run_value_online_retail,
            backends=("cpu", "gpu"),
            dataset="online-retail",
        ),
        Case(
            name="value-cdnow",
            stage="value-backtest",
            description="engine.value with the stage's defaults on the CDNOW 1/10 sample, 39 weeks of calibration, "
            "holdout to 1998-06-30; against the naive forecast",
            run=_value_backtest.run_value_cdnow,
            backends=("cpu", "gpu"),
            dataset="cdnow",
        ),
        Case(
            name="value-truth",
            stage="quality",
            description="engine.value MBG/NBD + Gamma-Gamma (order grain, 90 days); parameters recovered per "
            "stationary archetype, and on 100k draws from the model",
            run=_quality.run_value_truth,
            backends=("cpu", "gpu"),
            dataset="future-world",
        ),
    )
}


def _check_registry(cases: dict[str, Case]) -> None:
    for key, case in cases.items():
        if key != case.name:
            raise ValueError(f"CASES[{key!r}] holds case {case.name!r}")
        if case.dataset is not None and case.dataset not in DATASETS:
            raise ValueError(f"case {case.name!r}: unknown dataset {case.dataset!r}")
        for baseline in case.baselines:
            if baseline not in cases or cases[baseline].stage != case.stage:
                raise ValueError(f"case {case.name!r}: baseline {baseline!r} is not a registered {case.stage!r} case")


_check_registry(CASES)


def select_cases(
    stages: Iterable[str], cases: dict[str, Case] | None = None, baselines: Iterable[str] | None = None
) -> list[Case]:
    """The cases of ``stages``, in registry order within each stage.

    ``baselines`` keeps only those peer cases (all of them when None; none when empty):
    segscale's own cases always run.

    Raises
    ------
    BenchmarkUsageError
        No stage given, a stage no case measures, or a baseline that is no peer of the chosen
        stages (the message lists the known ones).
    """
    cases = CASES if cases is None else cases
    if isinstance(stages, str):
        stages = (stages,)
    stages = list(dict.fromkeys(stages))
    known = sorted({case.stage for case in cases.values()})
    unknown = [stage for stage in stages if stage not in known]
    if unknown or not stages:
        what = f"unknown stage(s) {', '.join(map(repr, unknown))}" if unknown else "no stage given"
        raise BenchmarkUsageError(f"{what}; known stages: {', '.join(known)}")
    chosen = [case for stage in stages for case in cases.values() if case.stage == stage]
    if baselines is None:
        return chosen
    peers = {name for case in chosen for name in case.baselines}
    wanted = set(baselines)
    if wanted - peers:
        unknown = ", ".join(sorted(wanted - peers))
        raise BenchmarkUsageError(f"unknown baseline(s) {unknown} for these stages; known: {', '.join(sorted(peers))}")
    return [case for case in chosen if case.name not in peers or case.name in wanted]
