"""Point-in-time training rows: features as of T beside what happened in [T, T + horizon).

The features are the feature stage's own, built with ``as_of=T``, so they read only rows
strictly before T; the labels read only rows in [T, T + horizon), through
:mod:`engine.outcomes`. The two windows never overlap, and a label window the store does not
hold in full is refused rather than read as "nothing happened".

Targets (``[propensity] target``):

- ``purchase``: at least one order (lines adding up to a positive amount) in the horizon;
  every customer with features is a row.
- ``churn``: no order in the horizon; only customers with an order in the
  ``churn_lookback_days`` before T are rows (the others have nothing left to churn from).
- ``event``: at least one event of type ``event_type`` in the horizon; every customer is a row.
- ``response``: converted in campaign ``campaign`` of the outcomes table; only the customers
  it treated are rows. The outcomes table has no times: the campaign is taken to go out at T,
  and the store's windows are not checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._tasks import compute_tasks
from ..exceptions import InputDataError, UsageError
from ..features import build_features, read_features_meta
from ..ingest import read_store_meta, read_store_table
from ..layout import StoreLayout, part_files
from ..outcomes import align_outcomes, outcome_window, partition_outcomes
from ._prepare import frame_from_table

__all__ = [
    "LABEL", "ORIGIN", "TARGETS", "Labelled", "label_customers", "label_origin", "labelled_features",
    "read_labelled", "sample_units", "training_origin", "training_origins",
]  # fmt: skip

TARGETS = ("purchase", "churn", "event", "response")
LABEL = "label"
ORIGIN = "origin"  # the T of a training row, when training has several origins


def training_origin(as_of: date, horizon_days: int) -> date:
    """The latest T whose label window [T, T + horizon) ends by ``as_of``."""
    return as_of - timedelta(days=horizon_days)


def training_origins(as_of: date, horizon_days: int, origins: int = 1, step_days: int | None = None) -> list[date]:
    """The latest origin, then ``origins - 1`` earlier ones ``step_days`` apart (default: the horizon)."""
    if origins < 1:
        raise UsageError(f"propensity: origins must be at least 1, got {origins}")
    latest = training_origin(as_of, horizon_days)
    return [latest - timedelta(days=k * (step_days or horizon_days)) for k in range(origins)]


def _covered(store, as_of, horizon_days: int):
    window = outcome_window(store, as_of, horizon_days)
    if not window.covered:
        ends = "holds no timestamps" if window.data_end is None else f"ends at {window.data_end.isoformat()}"
        raise InputDataError(
            f"{store}: cannot label {window.start.isoformat()} to {window.end.isoformat()}: the store's data {ends} "
            "(train on an earlier as_of or a shorter horizon)"
        )
    return window


def _partition_event_customers(store: str, number: int, start_us: int, end_us: int, event_type: str) -> np.ndarray:
    """Keys of one partition's customers with an ``event_type`` event in [start, end)."""
    table = read_store_table(Path(store), "events", number, ["customer_key", "ts", "event_type"], end_us)
    table = table.filter(pc.greater_equal(table["ts"], start_us))
    types = pc.cast(table["event_type"], pa.string())
    table = table.filter(pc.equal(types, event_type))
    return np.unique(table["customer_key"].to_numpy(zero_copy_only=False).astype(object))


def _partition_responses(store: str, number: int, campaign: str) -> tuple[pd.DataFrame, set]:
    """One partition's customers treated in ``campaign`` and whether they converted; and
    every campaign the partition holds."""
    columns = ["customer_key", "campaign", "treated", "converted"]
    frame = read_store_table(Path(store), "outcomes", number, columns, None).to_pandas()
    treated = frame[(frame["campaign"] == campaign) & frame["treated"].fillna(False).astype(bool)]
    # A customer with several outcome rows for one campaign responded if any row converted.
    responses = treated.groupby("customer_key", as_index=False, sort=False)["converted"].max()
    return responses, set(frame["campaign"].dropna().unique())


def _check_target(target: str, event_type: str | None, campaign: str | None) -> None:
    """Refuse a target without what it needs, before any work is done."""
    if target not in TARGETS:
        raise UsageError(f"propensity: unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if target == "event" and not event_type:
        raise UsageError("propensity: target event needs event_type (e.g. email_click)")
    if target == "response" and not campaign:
        raise UsageError("propensity: target response needs campaign (the outcomes table's campaign to model)")


# The store table each target reads its labels from.
_SOURCE = {"purchase": "transactions", "churn": "transactions", "event": "events", "response": "outcomes"}


@dataclass(frozen=True)
class _Question:
    """What a label asks of the store, small enough to send with every partition's task."""

    store: str
    target: str
    start_us: int | None  # the label window [start, end); None for response, which has no times
    end_us: int | None
    churn_lookback_days: int
    event_type: str | None
    campaign: str | None


def _question(store, as_of: date, *, target, horizon_days, churn_lookback_days, event_type, campaign) -> _Question:
    """The question, once the store is known to be able to answer it."""
    _check_target(target, event_type, campaign)
    if not part_files(StoreLayout(store).table(_SOURCE[target])):
        needs = "[inputs.outcomes]" if target == "response" else "an events input"
        raise InputDataError(f"{store}: the store has no {_SOURCE[target]} table; target {target} needs {needs}")
    start_us = end_us = None
    if target != "response":
        window = _covered(store, as_of, horizon_days)
        start_us, end_us = window.start.value // 1_000, window.end.value // 1_000
    return _Question(str(store), target, start_us, end_us, churn_lookback_days, event_type, campaign)


def _answer(question: _Question, number: int):
    """What store partition ``number`` says: each customer's orders in the window (purchase,
    churn), the keys with the event (event), or the treated customers' responses and the
    campaigns present (response)."""
    if not StoreLayout(question.store).table_part(_SOURCE[question.target], number).exists():
        if question.target == "event":
            return np.empty(0, dtype=object)
        nobody = pd.DataFrame({"customer_key": pd.Series(dtype=object)})
        if question.target == "response":
            return nobody.assign(converted=False), set()
        return nobody.assign(orders_next=0, spend_next=0.0)
    if question.target == "event":
        return _partition_event_customers(question.store, number, question.start_us, question.end_us,
                                          question.event_type)  # fmt: skip
    if question.target == "response":
        return _partition_responses(question.store, number, question.campaign)
    return partition_outcomes(question.store, number, question.start_us, question.end_us)


def _combine(question: _Question, answers: list):
    """The partitions' answers as one."""
    if question.target == "event":
        return np.concatenate(answers)
    if question.target == "response":
        return pd.concat([frame for frame, _ in answers], ignore_index=True), set().union(*(c for _, c in answers))
    return pd.concat(answers, ignore_index=True)


def _check_campaign(question: _Question, campaigns: set) -> None:
    if question.campaign not in campaigns:
        listed = ", ".join(sorted(campaigns)[:10]) or "none"
        raise InputDataError(
            f"{question.store}: the outcomes table has no campaign {question.campaign!r} (it has: {listed})"
        )


def _label(question: _Question, features: pd.DataFrame, answer) -> pd.DataFrame:
    """The labels of the eligible customers of ``features``, from the answer for their partitions."""
    keys = features["customer_key"].to_numpy(dtype=object)
    if question.target == "response":
        rows = pd.DataFrame({"customer_key": keys}).merge(answer[0], on="customer_key", how="inner")
        return pd.DataFrame({"customer_key": rows["customer_key"].to_numpy(),
                             LABEL: rows["converted"].fillna(False).astype("int8").to_numpy()})  # fmt: skip
    if question.target == "event":
        return pd.DataFrame({"customer_key": keys, LABEL: np.isin(keys, answer).astype("int8")})
    orders = align_outcomes(keys, answer)["orders_next"].to_numpy()
    if question.target == "purchase":
        return pd.DataFrame({"customer_key": keys, LABEL: (orders > 0).astype("int8")})
    recency = pd.to_numeric(features["recency_days"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    active = recency < question.churn_lookback_days  # NaN (never ordered) compares False
    return pd.DataFrame({"customer_key": keys[active], LABEL: (orders[active] == 0).astype("int8")})


def label_customers(
    store: str | os.PathLike,
    features: pd.DataFrame,
    as_of: date,
    *,
    target: str = "purchase",
    horizon_days: int = 90,
    churn_lookback_days: int = 90,
    event_type: str | None = None,
    campaign: str | None = None,
    client=None,
    progress=None,
) -> pd.DataFrame:
    """The label of each eligible customer of ``features`` (a frame as of ``as_of``).

    Parameters
    ----------
    store : path
        The customer-clustered store the features were built from.
    features : pandas.DataFrame
        ``customer_key`` and, for churn, ``recency_days`` (days since the last order at T).
    as_of : date
        T: the labels read rows in [T, T + horizon_days).
    target, horizon_days, churn_lookback_days, event_type, campaign
        See the module docstring.

    Returns
    -------
    pandas.DataFrame
        ``customer_key``, ``label`` (int8, 1 for the event predicted), eligible rows only, in
        the order of ``features``.
    """
    question = _question(store, as_of, target=target, horizon_days=horizon_days,
                         churn_lookback_days=churn_lookback_days, event_type=event_type, campaign=campaign)  # fmt: skip
    partitions = int(read_store_meta(store)["partitions"])
    tasks = [dask.delayed(_answer)(question, number) for number in range(partitions)]
    answer = _combine(question, compute_tasks(tasks, client, progress, "labels"))
    if target == "response":
        _check_campaign(question, answer[1])
    return _label(question, features, answer)


def sample_units(keys, seed: int) -> np.ndarray:
    """Each key's place in [0, 1) for the training sample.

    A salted hash of the key, so a customer is drawn or not whatever reads the rows and in
    whatever order: the store-reading path and ``fit_and_evaluate`` draw the same customers.
    """
    salt = f"sample{seed:010d}"[-16:]
    return pd.util.hash_array(np.asarray(keys, dtype=object), hash_key=salt).astype("float64") / 2.0**64


@dataclass
class Labelled:
    """One origin's feature table (built, not yet read) and its labels, one file per part."""

    work: Path
    rows: int  # labelled customers
    meta: dict

    @property
    def labels(self) -> Path:
        return self.work / "_labels"  # a leading underscore: not part of the feature table


def _label_part(question: _Question, part: str, out: str) -> tuple[int, set]:
    """Label the customers of one feature part from its store partition, and write them."""
    columns = ["customer_key", "recency_days"] if question.target == "churn" else ["customer_key"]
    features = frame_from_table(pq.read_table(part, columns=columns))
    answer = _answer(question, int(Path(part).stem.split("-")[1]))
    labels = _label(question, features, answer)
    labels.to_parquet(Path(out) / Path(part).name, index=False)
    return len(labels), answer[1] if question.target == "response" else set()


def label_origin(
    store: str | os.PathLike,
    work: str | os.PathLike,
    as_of: date,
    *,
    options,
    feature_options=None,
    backend_name: str = "auto",
    client=None,
    progress=None,
) -> Labelled:
    """Build the features as of ``as_of`` into ``work`` and label their customers, a part
    per task, so the client never holds every customer's key: only the count comes back.
    :func:`read_labelled` then reads the rows the training sample keeps.
    """
    # Refuse before building features.
    question = _question(store, as_of, target=options.target, horizon_days=options.horizon_days,
                         churn_lookback_days=options.churn_lookback_days, event_type=options.event_type,
                         campaign=options.campaign)  # fmt: skip
    build_features(store, work, as_of=as_of, options=feature_options, backend_name=backend_name, client=client,
                   progress=progress)  # fmt: skip
    work = Path(work)
    labelled = Labelled(work, 0, read_features_meta(work))
    labelled.labels.mkdir()
    parts = part_files(work)
    tasks = [dask.delayed(_label_part)(question, str(part), str(labelled.labels)) for part in parts]
    counts = compute_tasks(tasks, client, progress, "labels")
    if question.target == "response":
        _check_campaign(question, set().union(*(campaigns for _, campaigns in counts)))
    labelled.rows = sum(rows for rows, _ in counts)
    return labelled


def _sampled_part(part: str, labels: str, fraction: float, seed: int) -> tuple[pa.Table, pd.DataFrame]:
    """One part's labelled customers whose ``sample_units`` fall below ``fraction``: their
    feature rows and their labels."""
    chosen = pd.read_parquet(labels)
    if fraction < 1:
        chosen = chosen.loc[sample_units(chosen["customer_key"], seed) < fraction]
    table = pq.read_table(part)
    keys = pa.array(chosen["customer_key"].to_numpy(dtype=object), table.schema.field("customer_key").type)
    return table.filter(pc.is_in(table["customer_key"], value_set=keys)), chosen


def read_labelled(labelled: Labelled, fraction: float = 1.0, *, seed: int = 0, client=None, progress=None) -> pd.DataFrame:
    """The feature rows and labels of the labelled customers whose ``sample_units`` fall
    below ``fraction``, in key order.

    Each part is read and filtered on a worker, so the client holds the sample, never the
    whole table: with ``fraction = limit / rows`` the result is what ``fit_and_evaluate``
    would draw from every row.
    """
    parts = sorted(labelled.work.glob("part-*.parquet"))
    tasks = [dask.delayed(_sampled_part)(str(part), str(labelled.labels / part.name), fraction, seed) for part in parts]
    results = compute_tasks(tasks, client, progress, "training rows")
    # A part whose column is all null holds it as null type: promote it, as a dataset read would.
    tables = [table for table, _ in results] or [pq.read_schema(parts[0]).empty_table()]
    frame = frame_from_table(pa.concat_tables(tables, promote_options="default"))
    labels = pd.concat([chosen for _, chosen in results], ignore_index=True)
    frame = frame.merge(labels, on="customer_key", how="inner", validate="one_to_one")
    return frame.sort_values("customer_key", ignore_index=True)


def labelled_features(
    store: str | os.PathLike,
    work: str | os.PathLike,
    as_of: date,
    *,
    options,
    feature_options=None,
    backend_name: str = "auto",
    client=None,
    progress=None,
) -> tuple[pd.DataFrame, dict]:
    """Features as of ``as_of`` (built into ``work``) joined with their labels, every row.

    Returns the frame (``customer_key``, the feature columns, ``label``) and the feature
    table's metadata.
    """
    labelled = label_origin(store, work, as_of, options=options, feature_options=feature_options,
                            backend_name=backend_name, client=client, progress=progress)  # fmt: skip
    return read_labelled(labelled, client=client, progress=progress), labelled.meta
