"""Point-in-time labels on a small world: features before T, labels from [T, T + horizon) only."""

import shutil
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import PropensityOptions
from engine.exceptions import InputDataError, UsageError
from engine.propensity import label_customers, labelled_features, training_origin, training_origins

T = date(2025, 10, 3)


def _store(world):
    return world[0] / "run" / "ingest" / "store"


def _transactions(store):
    frame = pq.read_table(store / "transactions").to_pandas()
    return frame.assign(ts=pd.to_datetime(frame["ts"], utc=True))


def _append(store, table, make_rows):
    """Add rows made from each part's frame, keeping the part's schema and sort order."""
    for path in sorted((store / table).glob("*.parquet")):
        schema = pq.read_schema(path)
        frame = pq.read_table(path).to_pandas()
        frame = pd.concat([frame, make_rows(frame)]).sort_values(["customer_key", "ts"], kind="stable")
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


@pytest.fixture(scope="module")
def labelled(world, tmp_path_factory):
    return labelled_features(_store(world), tmp_path_factory.mktemp("labels") / "f", T, options=PropensityOptions(),
                             backend_name="cpu")  # fmt: skip


def test_training_origin_is_the_latest_complete_window():
    assert training_origin(date(2026, 1, 1), 90) == T
    assert training_origins(date(2026, 1, 1), 90, origins=3) == [T, date(2025, 7, 5), date(2025, 4, 6)]
    assert training_origins(date(2026, 1, 1), 90, origins=2, step_days=30) == [T, date(2025, 9, 3)]
    with pytest.raises(UsageError, match="origins must be at least 1"):
        training_origins(date(2026, 1, 1), 90, origins=0)


def test_purchase_labels_count_orders_in_the_window_only(world, labelled):
    frame, meta = labelled
    assert meta["as_of"] == T.isoformat() and len(frame) == meta["customers"]
    tx = _transactions(_store(world))
    start = pd.Timestamp(T, tz="UTC")
    inside = tx[(tx["ts"] >= start) & (tx["ts"] < start + pd.Timedelta(days=90)) & ~tx["is_return"].astype(bool)]
    positive = inside.groupby("customer_key")["amount"].sum() > 0
    expected = frame["customer_key"].isin(positive[positive].index).astype("int8")
    assert (frame["label"] == expected).mean() > 0.99  # orders summed per order id may differ at the margin
    assert 0.1 < frame["label"].mean() < 0.6


def test_rows_outside_the_windows_change_neither_features_nor_labels(world, labelled, tmp_path):
    frame, _ = labelled
    store = tmp_path / "store"
    shutil.copytree(_store(world), store)
    end = pd.Timestamp(T, tz="UTC") + pd.Timedelta(days=90)

    def late_orders(part):  # one big order per customer exactly at T + horizon, and a day later
        first = part.groupby("customer_key").head(1)
        rows = [first.assign(ts=end + pd.Timedelta(days=d), amount=1e6, order_id=f"late{d}") for d in (0, 1)]
        return pd.concat(rows)

    _append(store, "transactions", late_orders)
    _append(store, "events", lambda part: part.groupby("customer_key").head(1).assign(ts=pd.Timestamp(T, tz="UTC")))
    again, _ = labelled_features(store, tmp_path / "f", T, options=PropensityOptions(), backend_name="cpu")
    pd.testing.assert_frame_equal(again, frame)
    # An order at T itself is inside the label window and outside the features.
    silent = frame.loc[frame["label"] == 0, "customer_key"].iloc[0]

    def order_at_t(part):
        rows = part[part["customer_key"] == silent].head(1)
        return rows.assign(ts=pd.Timestamp(T, tz="UTC"), amount=50.0, order_id="at-t", is_return=False)

    _append(store, "transactions", order_at_t)
    shutil.rmtree(tmp_path / "f")
    moved, _ = labelled_features(store, tmp_path / "f", T, options=PropensityOptions(), backend_name="cpu")
    changed = moved["label"] != frame["label"]
    assert moved.loc[changed, "customer_key"].tolist() == [silent]
    pd.testing.assert_frame_equal(moved.drop(columns="label"), frame.drop(columns="label"))


def _labelled_per_part(world, tmp_path, **options):
    """The training path's labels: each part labelled on its own, from its store partition."""
    frame, _ = labelled_features(_store(world), tmp_path / "per-part", T, options=PropensityOptions(**options),
                                 backend_name="cpu")  # fmt: skip
    return frame[["customer_key", "label"]]


def test_churn_labels_only_recently_active_customers(world, labelled, tmp_path):
    frame, _ = labelled
    churn = label_customers(_store(world), frame, T, target="churn", churn_lookback_days=60)
    active = frame[frame["recency_days"] < 60]
    assert churn["customer_key"].tolist() == active["customer_key"].tolist()
    bought = frame.set_index("customer_key").loc[churn["customer_key"], "label"].to_numpy()
    np.testing.assert_array_equal(churn["label"].to_numpy(), 1 - bought)
    pd.testing.assert_frame_equal(_labelled_per_part(world, tmp_path, target="churn", churn_lookback_days=60), churn,
                                  check_dtype=False)  # the key: object or str, by how pandas read it


def test_event_labels_look_for_the_event_type_in_the_window(world, labelled, tmp_path):
    frame, _ = labelled
    labels = label_customers(_store(world), frame, T, target="event", event_type="email_click")
    events = pq.read_table(_store(world) / "events").to_pandas()
    ts = pd.to_datetime(events["ts"], utc=True)
    start = pd.Timestamp(T, tz="UTC")
    clicked = events.loc[(ts >= start) & (ts < start + pd.Timedelta(days=90)) & (events["event_type"] == "email_click")]
    expected = frame["customer_key"].isin(set(clicked["customer_key"])).astype("int8").to_numpy()
    np.testing.assert_array_equal(labels["label"].to_numpy(), expected)
    assert labels["label"].sum() > 0
    pd.testing.assert_frame_equal(_labelled_per_part(world, tmp_path, target="event", event_type="email_click"), labels,
                                  check_dtype=False)
    with pytest.raises(UsageError, match="needs event_type"):
        label_customers(_store(world), frame, T, target="event")


def test_a_window_past_the_store_is_refused(world, labelled, tmp_path):
    frame, _ = labelled
    with pytest.raises(InputDataError, match="cannot label 2025-12-01.* the store's data ends at 2026-01-01"):
        label_customers(_store(world), frame, date(2025, 12, 1), horizon_days=90)
    with pytest.raises(InputDataError, match="cannot label"):
        labelled_features(_store(world), tmp_path / "f", date(2025, 12, 1), options=PropensityOptions())
    assert not (tmp_path / "f").exists()
