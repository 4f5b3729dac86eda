"""The propensity stage on a run: train from the store, score any feature table.

Training (:func:`train_propensity`): features as of T = as_of - horizon (and, with
``origins``, as of earlier Ts too), built from the store into scratch directories, labels
from [T, T + horizon) (``_labels``), the training sample (``[propensity] sample`` rows, drawn
by a salted hash of the key) read from the feature parts on the workers, so the client never
holds every customer's features, one fit that learns
everything on the sampled customers (``_models``), metrics on the test split, a fairness
audit by the sensitive columns ingest kept apart, and the model directory, written atomically.

Scoring (:func:`score_propensity`), fit small and score big: one task per feature part loads
the saved model and writes ``part-NNNNN.parquet`` (customer_key, score, percentile, band,
reason_1..3); the output directory appears whole or not at all.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import dask
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from .._parts import write_part
from .._summary import Summary
from .._tasks import compute_tasks, staged_output
from ..backend import resolve_backend
from ..config import PropensityOptions
from ..exceptions import InputDataError, UsageError
from ..features import read_features_meta
from ..ingest import first_transaction, read_store_meta
from ..layout import IngestLayout, ModelLayout, ScoresLayout, part_files
from ._fairness import flagged_groups
from ._labels import LABEL, ORIGIN, label_origin, read_labelled, training_origins
from ._prepare import ModelInputs, frame_from_table
from ._reasons import REASON_COLUMNS
from ._train import fit_and_evaluate, load_model, read_model_document, write_model

__all__ = ["SCORE_COLUMNS", "ScoreSummary", "TrainSummary", "score_propensity", "train_propensity"]

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("customer_key", "score", "percentile", "band", *REASON_COLUMNS)


@dataclass
class TrainSummary(Summary):
    """What ``train_propensity`` (or ``train_table``) wrote and measured: the ten most
    important inputs (``metrics.json`` has them all) and the groups the fairness audit flags."""

    out_dir: Path | None
    target: str
    model: str
    window: dict
    splits: dict
    metrics: dict
    importance: list
    fairness_flagged: list
    seconds: float


def _summary(out, trained, options, window, started) -> TrainSummary:
    keys = ("customers", "positives", "base_rate", "roc_auc", "pr_auc", "log_loss", "brier", "ece")
    return TrainSummary(
        out_dir=out, target=options.target, model=trained.fit.model, window=window, splits=trained.report["splits"],
        metrics={k: trained.report["test"][k] for k in keys}, importance=trained.report["importance"][:10],
        fairness_flagged=flagged_groups(trained.report.get("fairness", {})),
        seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip


def _sensitive(store: Path, keys: pd.Series) -> pd.DataFrame | None:
    """The sensitive profile columns ingest wrote beside the store, if any, of ``keys`` only.

    The table has a row per customer: read whole, it put every customer's key into the
    client (1.5 GiB of the peak at 10M). Filtered while scanning, it holds the sample's.
    """
    path = IngestLayout(store.parent).sensitive.table("customers")
    if not (path.exists() and any(path.glob("*.parquet"))):
        return None
    dataset = pads.dataset(path, format="parquet")
    wanted = pa.array(keys.to_numpy(dtype=object), dataset.schema.field("customer_key").type)
    return dataset.to_table(filter=pc.field("customer_key").isin(wanted)).to_pandas()


def _check_earliest_origin(store: Path, earliest: date, options: PropensityOptions) -> None:
    """Refuse, before building anything, an origin with no transaction before it."""
    first = first_transaction(read_store_meta(store))
    if first is not None and pd.Timestamp(earliest, tz="UTC") <= pd.Timestamp(first):
        raise InputDataError(
            f"{store}: the training origin {earliest.isoformat()} is not after the first transaction ({first}); "
            f"use fewer than {options.origins} [propensity] origins or a shorter origin_step_days"
        )


def train_propensity(
    store: str | os.PathLike,
    out: str | os.PathLike,
    *,
    as_of: date,
    options: PropensityOptions | None = None,
    feature_options=None,
    seed: int = 0,
    backend_name: str = "auto",
    client=None,
    progress=None,
) -> TrainSummary:
    """Train a propensity model on the store's latest complete label window before ``as_of``.

    Parameters
    ----------
    store : path
        The customer-clustered store (``<run>/ingest/store``).
    out : path
        The model directory; replaced only when training succeeds.
    as_of : date
        The end of the label window: T = as_of - ``options.horizon_days``.
    options : PropensityOptions, optional
    feature_options : FeatureOptions, optional
        How the training features are built: use the same as the features the model will score.

    Raises
    ------
    InputDataError
        The store does not hold the label window, too few positives or negatives, or a
        sensitive column among the inputs.
    """
    started = time.perf_counter()
    options = options or PropensityOptions()
    backend = resolve_backend(backend_name)
    store, out = Path(store), Path(out)
    if options.target == "response" and options.origins > 1:
        raise UsageError("propensity: a campaign's responses are one window; origins apply to purchase, churn and event")
    if options.out_of_time_test and options.origins < 2:
        raise UsageError("propensity: an out-of-time test needs at least 2 origins ([propensity] origins)")
    origins = training_origins(as_of, options.horizon_days, options.origins, options.origin_step_days)
    _check_earliest_origin(store, origins[-1], options)
    with staged_output(out) as staging:
        labelled = [
            label_origin(store, staging / f"training-features-{origin.isoformat()}", origin, options=options,
                         feature_options=feature_options, backend_name=backend.name, client=client, progress=progress)
            for origin in origins
        ]  # fmt: skip
        # Draw the training sample while reading, by the rule fit_and_evaluate applies to all
        # rows, so the client never holds every customer's features.
        rows = sum(one.rows for one in labelled)
        fraction = options.sample / rows if rows > options.sample else 1.0
        frames = []
        for origin, one in zip(origins, labelled):
            frame = read_labelled(one, fraction, seed=seed, client=client, progress=progress)
            shutil.rmtree(one.work)
            frames.append(frame.assign(**{ORIGIN: origin}) if len(origins) > 1 else frame)
        meta = labelled[0].meta
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        sensitive = _sensitive(store, frame["customer_key"])
        sensitive_columns = [c for c in (sensitive.columns if sensitive is not None else []) if c != "customer_key"]
        features = list(options.features) if options.features else [n for n in meta["features"] if n != LABEL]
        trained = fit_and_evaluate(
            frame, features=features, options=options, seed=seed, backend=backend, sensitive=sensitive,
            sensitive_columns=sensitive_columns,
        )  # fmt: skip
        latest = origins[0].isoformat()
        window = {"features_before": latest, "labels_from": latest, "labels_until": as_of.isoformat(),
                  "horizon_days": options.horizon_days, "origins": [o.isoformat() for o in origins]}  # fmt: skip
        write_model(staging, trained, options=options, seed=seed, backend=backend,
                    source={"store": str(store), "window": window, "feature_columns": meta["columns"]})  # fmt: skip
    summary = _summary(out, trained, options, window, started)
    logger.info(
        "propensity: %s model for %s, test AUC %.3f, ECE %.3f (%d test customers) in %.1f s",
        summary.model, options.target, summary.metrics["roc_auc"] or float("nan"), summary.metrics["ece"],
        summary.metrics["customers"], summary.seconds,
    )  # fmt: skip
    return summary


@dataclass
class ScoreSummary(Summary):
    """What ``score_propensity`` wrote."""

    out_dir: Path
    customers: int
    bands: dict
    partitions: int
    seconds: float


@functools.lru_cache(maxsize=1)
def _scoring_model(model_dir: str, saved: tuple):
    """The model of ``model_dir`` as its files were when ``saved`` (their sizes and times) was
    taken: loaded once per worker, not once per part (unpickling it took 65 ms a task); a
    boosted model as its leaf tables."""
    fit, _ = load_model(model_dir, scoring=True)
    # A task has one worker thread and each core its worker: a forest saved with the training
    # process's n_jobs would score with that many threads in every worker at once.
    if hasattr(fit.estimator, "get_params") and "n_jobs" in fit.estimator.get_params():
        fit.estimator.set_params(n_jobs=1)
    return fit


def _score_task(model_dir: str, part: str, out: str) -> dict:
    """Score one feature part and write it; return its band counts."""
    files = ModelLayout(model_dir)
    present = [path for path in (files.model, files.estimator, files.leaf_tables) if path.exists()]
    saved = tuple((stat.st_size, stat.st_mtime_ns) for stat in map(os.stat, present))
    fit = _scoring_model(model_dir, saved)
    path = Path(part)
    frame = frame_from_table(pq.read_table(path))
    scored = fit.score(frame, where=str(path))
    scored.insert(0, "customer_key", frame["customer_key"].to_numpy())
    write_part(scored, Path(out) / path.name)
    return {band: int((scored["band"] == band).sum()) for band in ("high", "medium", "low")}


def score_propensity(
    model_dir: str | os.PathLike, features: str | os.PathLike, out: str | os.PathLike, *, client=None, progress=None
) -> ScoreSummary:
    """Score every customer of a feature table with a saved model, one task per part.

    Raises
    ------
    InputDataError
        Not a model, not a feature table, or a feature table without the columns (or column
        types) the model was trained on.
    """
    started = time.perf_counter()
    model_dir, features, out = Path(model_dir), Path(features), Path(out)
    document = read_model_document(model_dir)
    meta = read_features_meta(features)
    parts = part_files(features)
    # Check the schema once, before any work: a mismatch is the user's to fix, not a task failure.
    preparation = ModelInputs.from_dict(document["preparation"])
    preparation.check_columns(frame_from_table(pq.read_schema(parts[0]).empty_table()), where=str(features))
    with staged_output(out) as staging:
        tasks = [dask.delayed(_score_task)(str(model_dir), str(part), str(staging)) for part in parts]
        counts = compute_tasks(tasks, client, progress, "score")
        bands = {band: sum(count[band] for count in counts) for band in ("high", "medium", "low")}
        document = {
            "model": str(model_dir.resolve()),
            "model_fingerprint": document["data_fingerprint"],
            "features": str(features.resolve()),
            "as_of": meta.get("as_of"),
            "customers": sum(bands.values()),
            "bands": bands,
            "partitions": len(parts),
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        ScoresLayout(staging).meta.write_text(json.dumps(document, indent=2) + "\n")
    summary = ScoreSummary(out, sum(bands.values()), bands, len(parts), round(time.perf_counter() - started, 3))
    logger.info("propensity: scored %d customers in %.1f s", summary.customers, summary.seconds)
    return summary
