"""build_features over a real store: ingest of a small synthetic world."""

import dataclasses
import json
import os
import shutil
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import FeatureOptions, load_config
from engine.exceptions import InputDataError, UsageError
from engine.features import build_features
from engine.ingest import ingest, read_store_table
from engine.layout import FeaturesLayout
from engine._samples import KEPT_SAMPLE
from engine.measure import drift_sample
from engine.synth import WorldSpec, generate_world

AS_OF = date(2025, 10, 1)


def _ingest(world, out, partitions):
    config = load_config(world / "segscale.toml")
    config = dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, output_dir=out),
        ingest=dataclasses.replace(config.ingest, partitions=partitions),
    )
    ingest(config)
    return out / "ingest" / "store"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, WorldSpec(customers=1_500, seed=5, chunk_size=500))
    return out


@pytest.fixture(scope="module")
def store(world, tmp_path_factory):
    return _ingest(world, tmp_path_factory.mktemp("run3"), partitions=3)


@pytest.fixture(scope="module")
def features(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "features"
    summary = build_features(store, out, as_of=AS_OF, backend_name="cpu")
    return summary, out


def _read(out):
    return pq.read_table(out).to_pandas().sort_values("customer_key").reset_index(drop=True)


def test_writes_parts_aligned_with_the_store_and_metadata(features, store):
    summary, out = features
    meta = json.loads((out / "_features.json").read_text())
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-0000{i}.parquet" for i in range(3)]
    assert meta["as_of"] == "2025-10-01" and meta["customers"] == summary.customers
    assert sum(meta["rows_per_partition"]) == summary.customers
    for number in range(3):
        keys = set(
            pq.read_table(out / f"part-0000{number}.parquet", columns=["customer_key"])["customer_key"].to_pylist()
        )
        stored = set(
            pq.read_table(store / "transactions" / f"part-0000{number}.parquet", columns=["customer_key"])[
                "customer_key"
            ].to_pylist()
        )
        assert keys <= stored | set(
            pq.read_table(store / "events" / f"part-0000{number}.parquet", columns=["customer_key"])[
                "customer_key"
            ].to_pylist()
        )
    assert not list(out.parent.glob(".features-staging-*"))
    columns = meta["columns"]
    assert "_gross" not in columns and columns["customer_key"] in ("string", "large_string")
    shares = [name for name in columns if name.startswith(("category_share_", "channel_share_"))]
    assert len(shares) >= 7 and {columns[name] for name in shares} == {"float"}
    assert {columns[name] for name in ("r_score", "f_score", "m_score")} == {"int8"}


def test_agrees_with_a_plain_pandas_computation(features, store):
    """Recompute a feature subset with pandas groupby straight from the store."""
    _, out = features
    ours = _read(out).set_index("customer_key")
    lines = pq.read_table(store / "transactions").to_pandas()
    lines = lines[lines["ts"] < pd.Timestamp(AS_OF, tz="UTC")]
    bought = lines[~lines["is_return"]]
    orders = bought.groupby(["customer_key", "order_id"]).agg(ts=("ts", "min"), spend=("amount", "sum")).reset_index()
    as_of = pd.Timestamp(AS_OF, tz="UTC")
    per = orders.groupby("customer_key").agg(frequency=("ts", "size"), last=("ts", "max"), gross=("spend", "sum"))
    recent = orders[orders["ts"] >= as_of - pd.Timedelta(days=90)].groupby("customer_key")["spend"].sum()
    returned = lines[lines["is_return"]].groupby("customer_key")["amount"].apply(lambda a: a.abs().sum())
    expected = per.assign(
        recency_days=(as_of - per["last"]) / pd.Timedelta(days=1),
        spend_90d=recent.reindex(per.index, fill_value=0.0),
        monetary_total=per["gross"] - returned.reindex(per.index, fill_value=0.0),
    )
    top = json.loads((out / "_features.json").read_text())["top_categories"]
    column, category = next(iter(top.items()))
    spend = bought.groupby("customer_key")["amount"].sum()
    share = (
        bought[bought["category"] == category]
        .groupby("customer_key")["amount"]
        .sum()
        .reindex(spend.index, fill_value=0.0)
        / spend
    )
    mine = ours.loc[expected.index]
    np.testing.assert_array_equal(mine["frequency"], expected["frequency"])
    np.testing.assert_allclose(mine["recency_days"], expected["recency_days"], rtol=1e-5)
    np.testing.assert_allclose(mine["spend_90d"], expected["spend_90d"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(mine["monetary_total"], expected["monetary_total"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(mine[column], share.reindex(expected.index), rtol=1e-5, atol=1e-6)
    assert (ours.drop(index=expected.index)["frequency"] == 0).all()


def test_rfm_scores_follow_the_quintiles(features):
    _, out = features
    frame = _read(out)
    buyers = frame[frame["frequency"] > 0]
    assert set(buyers[["r_score", "f_score", "m_score"]].stack().unique()) <= {1, 2, 3, 4, 5}
    assert (frame.loc[frame["frequency"] == 0, ["r_score", "f_score", "m_score"]] == 0).all().all()
    # Higher monetary value never scores lower; fresher customers never score lower on R.
    by_money = buyers.sort_values("monetary_total")
    assert by_money["m_score"].is_monotonic_increasing
    assert buyers.sort_values("recency_days")["r_score"].is_monotonic_decreasing
    # Quintiles: the top score holds about a fifth of buyers.
    assert 0.15 < (buyers["m_score"] == 5).mean() < 0.25


def test_keeps_the_drift_sample_that_reading_its_parts_would_take(features, tmp_path):
    _, out = features
    kept = drift_sample(out, None, KEPT_SAMPLE)
    copy = tmp_path / "features"
    shutil.copytree(out, copy)
    FeaturesLayout(copy).drift_sample.unlink()
    read = drift_sample(copy, None, KEPT_SAMPLE)
    assert len(read) and "recency_days" in read.columns
    pd.testing.assert_frame_equal(kept, read)
    # Another size is read from the parts.
    assert len(drift_sample(out, ["recency_days"], 100)) < len(kept)


def _append_future_rows(store, as_of):
    """Rows at and after as-of in every part: huge amounts, a new category, a new customer."""
    later = pd.Timestamp(as_of, tz="UTC")
    for path in sorted((store / "transactions").glob("*.parquet")):
        table = pq.read_table(path)
        frame = table.to_pandas()
        extra = frame.groupby("customer_key").head(1).copy()
        extra["ts"] = later
        extra["amount"], extra["category"], extra["order_id"] = 1e6, "zz-future-only", "future"
        newcomer = extra.head(1).assign(customer_key="k-future-customer", ts=later + pd.Timedelta(days=3))
        frame = pd.concat([frame, extra, newcomer]).sort_values(["customer_key", "ts"], kind="stable")
        pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), path)
    for path in sorted((store / "events").glob("*.parquet")):
        table = pq.read_table(path)
        frame = table.to_pandas()
        extra = frame.groupby("customer_key").head(1).copy()
        extra["ts"] = later + pd.Timedelta(seconds=1)
        frame = pd.concat([frame, extra]).sort_values(["customer_key", "ts"], kind="stable")
        pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), path)


def test_rows_at_or_after_as_of_change_nothing(features, store, tmp_path):
    _, out = features
    future_store = tmp_path / "store"
    import shutil

    shutil.copytree(store, future_store)
    _append_future_rows(future_store, AS_OF)
    again = tmp_path / "features"
    build_features(future_store, again, as_of=AS_OF, backend_name="cpu")
    pd.testing.assert_frame_equal(_read(again), _read(out))
    before = json.loads((out / "_features.json").read_text())
    after = json.loads((again / "_features.json").read_text())
    for key in ("top_categories", "rfm_quintiles", "columns", "rows_per_partition"):
        assert after[key] == before[key]


def test_the_same_features_whatever_the_partition_count(world, features, tmp_path):
    _, out = features
    single = _ingest(world, tmp_path / "run1", partitions=1)
    build_features(single, tmp_path / "features1", as_of=AS_OF, backend_name="cpu")
    pd.testing.assert_frame_equal(_read(tmp_path / "features1"), _read(out))


def test_a_later_as_of_starts_from_the_event_summaries_kept_with_the_features(store, tmp_path, monkeypatch):
    from engine.features import _pipeline

    store = shutil.copytree(store, tmp_path / "store")
    out = tmp_path / "features"
    build_features(store, out, as_of=date(2026, 6, 1), backend_name="cpu")  # after every row
    read = []
    monkeypatch.setattr(_pipeline, "read_store_table", lambda *a: read.append(a[1:3]) or read_store_table(*a))
    build_features(store, out, as_of=date(2026, 6, 4), backend_name="cpu")
    assert not [table for table, _ in read if table == "events"]
    build_features(store, tmp_path / "fresh", as_of=date(2026, 6, 4), backend_name="cpu")
    pd.testing.assert_frame_equal(_read(out), _read(tmp_path / "fresh"), check_exact=True)
    # A part whose file changed since its summary was made is read again, whole.
    part = store / "events" / "part-00001.parquet"
    os.utime(part, ns=(part.stat().st_atime_ns, part.stat().st_mtime_ns + 1))
    read.clear()
    build_features(store, out, as_of=date(2026, 6, 10), backend_name="cpu")
    assert [(table, n) for table, n in read if table == "events"] == [("events", 1)]
    build_features(store, tmp_path / "fresh", as_of=date(2026, 6, 10), backend_name="cpu")
    pd.testing.assert_frame_equal(_read(out), _read(tmp_path / "fresh"), check_exact=True)


def test_groups_and_windows_from_options(store, tmp_path):
    options = FeatureOptions(groups=("rfm", "windows", "categories"), windows=(7, 60), top_categories=2)
    summary = build_features(store, tmp_path / "f", as_of=AS_OF, options=options, backend_name="cpu")
    assert summary.features[:5] == ["recency_days", "frequency", "monetary_total", "aov", "tenure_days"]
    assert {"orders_7d", "spend_60d", "r_score"} <= set(summary.features)
    assert sum(name.startswith("category_share_") for name in summary.features) == 2
    assert "view_count" not in summary.features and "orders_30d" not in summary.features


def test_bad_inputs_are_clear_errors(store, tmp_path):
    with pytest.raises(InputDataError, match="not a segscale store"):
        build_features(tmp_path, tmp_path / "f", as_of=AS_OF)
    with pytest.raises(InputDataError, match="no transactions before as_of 2000-01-01"):
        build_features(store, tmp_path / "f", as_of=date(2000, 1, 1))
    with pytest.raises(UsageError, match="unknown feature group"):
        build_features(store, tmp_path / "f", as_of=AS_OF, options=FeatureOptions(groups=("rfm", "vibes")))
    with pytest.raises(UsageError, match="at least 1 day"):
        build_features(store, tmp_path / "f", as_of=AS_OF, options=FeatureOptions(windows=(0,)))
    assert not (tmp_path / "f").exists()


def test_default_as_of_is_the_day_after_the_last_transaction(store, tmp_path):
    summary = build_features(store, tmp_path / "f", options=FeatureOptions(groups=("rfm",)), backend_name="cpu")
    last = json.loads((store / "_store.json").read_text())["tables"]["transactions"]["max_ts"]
    assert summary.as_of == str(pd.Timestamp(last).date() + pd.Timedelta(days=1))


@pytest.mark.gpu
def test_gpu_features_match_the_cpu(store, features, tmp_path):
    _, out = features
    build_features(store, tmp_path / "gpu", as_of=AS_OF, backend_name="gpu")
    gpu, cpu = _read(tmp_path / "gpu"), _read(out)
    assert list(gpu.columns) == list(cpu.columns)
    numeric = cpu.select_dtypes("number").columns
    pd.testing.assert_frame_equal(gpu[numeric], cpu[numeric], check_exact=False, rtol=1e-5, atol=1e-5)


# What a store without amounts cannot say: every feature made from spend.
_SPEND = ("monetary_total", "aov", "spend_", "category_share_", "channel_share_", "m_score")


def _features_of(world, transactions, out):
    """Features as of AS_OF of ``world`` with its transactions read from ``transactions``,
    every line kept: without amounts, lines of one order alike but for their amount are exact
    duplicates, and both stores must hold the same lines."""
    config = load_config(world / "segscale.toml")
    spec = dataclasses.replace(config.inputs["transactions"], path=str(transactions), duplicates="none")
    config = dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, output_dir=out / "run"),
        inputs={**config.inputs, "transactions": spec},
        ingest=dataclasses.replace(config.ingest, partitions=3),
    )
    counts = ingest(config).tables["transactions"]
    assert counts["quarantined"] == {} and counts["duplicates"] == 0
    summary = build_features(out / "run" / "ingest" / "store", out / "f", as_of=AS_OF, backend_name="cpu")
    return summary, _read(out / "f"), json.loads((out / "f" / "_features.json").read_text())


def test_a_store_without_amounts_carries_no_spend_and_the_same_other_features(world, tmp_path):
    """The world's transactions with their amount column taken out, ingested with the same
    key: the spend features are left out, not 0, and every other feature is unchanged."""
    counts_only = tmp_path / "transactions"
    counts_only.mkdir()
    for part in sorted((world / "transactions").glob("*.parquet")):
        pq.write_table(pq.read_table(part).drop_columns(["amount"]), counts_only / part.name)
    summary, ours, meta = _features_of(world, counts_only, tmp_path / "counts")
    _, theirs, _ = _features_of(world, world / "transactions", tmp_path / "amounts")
    assert not [name for name in ours.columns if name.startswith(_SPEND)]
    assert list(ours.columns) == [name for name in theirs.columns if not name.startswith(_SPEND)]
    assert "frequency" in ours.columns and "orders_90d" in ours.columns and "order_trend_90d" in ours.columns
    pd.testing.assert_frame_equal(ours, theirs[ours.columns])
    assert meta["has_amount"] is False and meta["rfm_scores"] == ["r_score", "f_score"]
    assert set(meta["rfm_quintiles"]) == {"recency_days", "frequency"} and meta["top_categories"] == {}
    assert summary.features == list(ours.columns[1:])
