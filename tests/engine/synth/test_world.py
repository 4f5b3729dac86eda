import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.backend import dask_client, resolve_backend
from engine.config import load_config
from engine.contract import EVENT_TYPES, TABLES
from engine.exceptions import UsageError
from engine.synth import ARCHETYPES, DATA_TABLES, DEFAULT_END, FAULTS, WorldSpec, generate_world
from engine.synth import _world

SMALL = dict(customers=3_000, seed=11, chunk_size=1_000)
WINDOW_END = pd.Timestamp(DEFAULT_END, tz="UTC") + pd.Timedelta(days=1)


def _read(directory):
    return pq.read_table(directory).to_pandas()


def _digests(root: Path) -> dict:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    summary = generate_world(out, WorldSpec(**SMALL, simulate_future=True))
    return out, summary


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    summary = generate_world(out, WorldSpec(**SMALL, dirt=0.03, simulate_future=True))
    return out, summary


@pytest.fixture(scope="module")
def big_world(tmp_path_factory):
    """Enough people for sampling-error checks on truth."""
    out = tmp_path_factory.mktemp("big")
    generate_world(out, WorldSpec(customers=40_000, seed=5, simulate_future=True))
    return out


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tmp_path, clean_world):
    reference, _ = clean_world
    with dask_client(resolve_backend("cpu"), workers=2, local_directory=tmp_path / "dask") as client:
        generate_world(tmp_path / "parallel", WorldSpec(**SMALL, simulate_future=True), client=client)
    assert _digests(tmp_path / "parallel") == _digests(reference)


def test_another_seed_gives_another_world(tmp_path, clean_world):
    reference, _ = clean_world
    generate_world(tmp_path / "other", WorldSpec(**{**SMALL, "seed": 12}, simulate_future=True))
    ours = _read(tmp_path / "other" / "transactions")
    theirs = _read(reference / "transactions")
    assert len(ours) != len(theirs) or not ours.equals(theirs)


def test_layout_schema_and_contract(clean_world):
    out, summary = clean_world
    assert sorted(p.name for p in out.iterdir()) == sorted([*DATA_TABLES, "truth", "segscale.toml"])
    assert sorted(p.name for p in (out / "transactions").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(3)
    ]
    for name in DATA_TABLES:
        schema = pq.read_schema(next((out / name).iterdir()))
        assert set(TABLES[name].required) <= set(schema.names), name
        assert pq.read_metadata(out / name / "part-00000.parquet").num_rows > 0
        assert sum(pq.read_metadata(p).num_rows for p in (out / name).iterdir()) == summary.rows[name]
    transactions = pq.read_schema(out / "transactions" / "part-00000.parquet")
    assert transactions.field("ts").type == pa.timestamp("us", tz="UTC")
    assert transactions.field("amount").type == pa.float64()
    assert transactions.field("order_id").type == pa.int64()
    # The scale: about 20 transactions and 50 events per customer.
    assert 14 < summary.rows["transactions"] / summary.persons < 28
    assert 35 < summary.rows["events"] / summary.persons < 80


def test_activity_stays_inside_the_window(clean_world):
    out, _ = clean_world
    for name in ("transactions", "events"):
        for part in (out / name).iterdir():
            ts = _read(part)["ts"]
            assert ts.min() >= pd.Timestamp("2024-01-01", tz="UTC")
            assert ts.max() < WINDOW_END
            assert ts.is_monotonic_increasing  # raw exports come in time order within a part
    assert set(_read(out / "events")["event_type"]) == set(EVENT_TYPES)


def test_orders_in_truth_match_the_transactions(clean_world):
    out, _ = clean_world
    transactions = _read(out / "transactions")
    accounts = _read(out / "truth" / "accounts")
    persons = _read(out / "truth" / "persons").set_index("person_id")
    purchases = transactions[transactions["quantity"] > 0].merge(accounts, on="customer_id")
    orders = purchases.groupby("person_id")["order_id"].nunique()
    pd.testing.assert_series_equal(
        orders.reindex(persons.index, fill_value=0), persons["orders_in_window"].astype(orders.dtype), check_names=False
    )
    # The first order is at acquisition (same day: time of day is drawn separately).
    first = purchases.groupby("person_id")["ts"].min()
    assert (first.dt.floor("D") == persons["acquisition_ts"].dt.floor("D")).all()
    returns = transactions[transactions["quantity"] < 0]
    assert (returns["amount"] < 0).all() and (returns["discount"] == 0).all()
    assert set(returns["order_id"]) <= set(purchases["order_id"])


def test_planted_archetypes_have_their_behaviour(big_world):
    persons = _read(big_world / "truth" / "persons")
    shares = persons["archetype"].value_counts(normalize=True)
    for archetype in ARCHETYPES:
        assert abs(shares[archetype.name] - archetype.share) < 0.02, archetype.name
    by_type = persons.groupby("archetype")
    orders = by_type["orders_in_window"].mean()
    assert orders.idxmax() == "loyal_high_value"
    assert orders["browser"] < orders["deal_seeker"]
    value = by_type["mean_order_value"].median()
    assert value.idxmax() == "loyal_high_value" and value.idxmin() == "deal_seeker"
    alive = by_type["alive_at_end"].mean()
    assert alive["dormant"] < 0.25 < alive["loyal_high_value"]
    assert by_type["p_purchase_90d"].mean()["declining"] < by_type["p_purchase_90d"].mean()["loyal_high_value"]
    # Dead people never buy again, so their true probabilities are zero.
    dead = persons[~persons["alive_at_end"]]
    assert (dead["p_purchase_30d"] == 0).all() and (dead["p_purchase_90d"] == 0).all()
    assert ((persons["p_purchase_30d"] <= persons["p_purchase_90d"]) & (persons["p_purchase_90d"] < 1)).all()


def test_realised_future_purchases_match_the_true_probabilities(big_world):
    persons = _read(big_world / "truth" / "persons")
    for days in (30, 90):
        probability = persons[f"p_purchase_{days}d"]
        realised = persons[f"purchased_next_{days}d"]
        standard_error = np.sqrt((probability * (1 - probability)).sum()) / len(persons)
        assert abs(realised.mean() - probability.mean()) < 4 * standard_error
        # Calibrated within deciles too, not only on average.
        bins = pd.qcut(probability.rank(method="first"), 10, labels=False)
        for _, group in persons.groupby(bins):
            p = group[f"p_purchase_{days}d"]
            tolerance = 4 * np.sqrt((p * (1 - p)).sum()) / len(group) + 1e-9
            assert abs(group[f"purchased_next_{days}d"].mean() - p.mean()) <= tolerance
    assert (persons["purchased_next_30d"] <= persons["purchased_next_90d"]).all()
    bought = persons["purchased_next_90d"]
    assert persons.loc[bought, "days_to_next_purchase"].between(0, 90).all()
    assert persons.loc[~bought, "days_to_next_purchase"].isna().all()


def test_events_follow_purchase_behaviour(big_world):
    events = _read(big_world / "events").merge(_read(big_world / "truth" / "accounts"), on="customer_id")
    persons = _read(big_world / "truth" / "persons").set_index("person_id")
    views = events[events["event_type"] == "view"].groupby("person_id").size().reindex(persons.index, fill_value=0)
    assert views.corr(persons["orders_in_window"], method="spearman") > 0.3
    views_per_order = (views / persons["orders_in_window"]).groupby(persons["archetype"]).median()
    assert views_per_order.idxmax() == "browser"
    opens = events[events["event_type"] == "email_open"].groupby("person_id").size()
    assert opens.corr(persons["email_open_rate"].reindex(opens.index), method="spearman") > 0.3


def _normalise(id_type, value):
    value = value.strip().lower()
    return "".join(ch for ch in value if ch.isdigit()) if id_type == "phone" else value


def test_extra_accounts_share_an_identifier_with_their_first_account(clean_world):
    out, summary = clean_world
    identities = _read(out / "identities")
    accounts = _read(out / "truth" / "accounts")
    assert summary.accounts == len(accounts) > summary.persons
    identities["key"] = [_normalise(t, v) for t, v in zip(identities["id_type"], identities["id_value"])]
    linked = identities.merge(accounts, on="customer_id")
    owners = linked.groupby(["id_type", "key"])["person_id"].nunique()
    assert (owners == 1).all(), "a clean world links no two people"
    keys = linked.groupby("customer_id").apply(lambda rows: set(zip(rows["id_type"], rows["key"])), include_groups=False)
    first_account = accounts[accounts["account_slot"] == 0].set_index("person_id")["customer_id"]
    for row in accounts[accounts["account_slot"] > 0].itertuples():
        assert keys[row.customer_id] & keys[first_account[row.person_id]], row
    # Profiles carry the direct identifiers ingest must drop, and the sensitive attributes.
    profiles = _read(out / "customers")
    assert {"email", "phone", "full_name", "age_band", "gender"} <= set(profiles.columns)
    assert profiles["customer_id"].is_unique and len(profiles) == summary.accounts


def _as_text(clean, name):
    """The clean table as the dirty world writes it: ts and amount as text."""
    text = clean.copy()
    if "ts" in text and name in ("transactions", "events"):
        text["ts"] = text["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    if "amount" in text:
        text["amount"] = pa.array(text["amount"].to_numpy()).cast(pa.string()).to_pylist()
    return text


@pytest.mark.parametrize("name", DATA_TABLES)
def test_dirt_touches_exactly_the_rows_truth_records(clean_world, dirty_world, name):
    clean_out, _ = clean_world
    dirty_out, summary = dirty_world
    truth = _read(dirty_out / "truth" / "dirty_rows")
    truth = truth[truth["table"] == name]
    assert set(truth["fault"]) == set(FAULTS[name])  # every fault kind occurs at this rate
    recorded = sum(summary.dirty_rows[name].values())
    assert len(truth) == recorded
    for part in sorted((dirty_out / name).iterdir()):
        dirty = _read(part)
        clean = _as_text(_read(clean_out / name / part.name), name)
        faults = truth[truth["file"] == part.name].set_index("row")["fault"]
        duplicates = faults.index[faults == "duplicate"]
        for row in duplicates:
            assert dirty.iloc[row].equals(dirty.iloc[row - 1])
        # Nothing lost: without the inserted copies, the dirty part has the clean part's rows,
        # and every row truth does not name is exactly the clean row.
        kept = dirty.drop(index=duplicates).reset_index(drop=True)
        assert len(kept) == len(clean)
        named = np.zeros(len(dirty), dtype=bool)
        named[faults.index] = True
        untouched = ~np.delete(named, duplicates)
        pd.testing.assert_frame_equal(
            kept[untouched].reset_index(drop=True), clean[untouched].reset_index(drop=True), check_dtype=False
        )
        _assert_faults_visible(dirty, faults, name)


def _assert_faults_visible(dirty, faults, name):
    for row, fault in faults.items():
        record = dirty.iloc[row]
        if fault == "bad_timestamp":
            assert pd.isna(pd.to_datetime(record["ts"], format="%Y-%m-%d %H:%M:%S", errors="coerce"))
        elif fault == "future_timestamp":
            assert pd.Timestamp(record["ts"], tz="UTC") > WINDOW_END
        elif fault == "negative_amount":
            assert float(record["amount"]) < 0 < record["quantity"]
        elif fault == "non_numeric_amount":
            assert pd.isna(pd.to_numeric(record["amount"], errors="coerce"))
        elif fault == "blank_customer_id":
            assert pd.isna(record["customer_id"]) or not record["customer_id"].strip()
        elif fault == "unknown_event_type":
            assert record["event_type"] not in EVENT_TYPES
        elif fault == "junk_identifier":
            assert record["id_value"].strip().lower() in {
                "", "unknown", "null", "test@test.com", "none@none.com", "0000000000", "000-000-0000",
                "00000000000000000000000000000000",
            }  # fmt: skip
        else:
            assert fault == "duplicate", fault


def test_world_config_is_a_valid_run_config(clean_world, dirty_world):
    for out, summary in (clean_world, dirty_world):
        config = load_config(out / "segscale.toml")
        assert set(config.inputs) == set(DATA_TABLES)
        assert config.inputs["transactions"].path == str(out / "transactions")
        assert config.run.seed == summary.spec.seed
        assert config.run.as_of == DEFAULT_END + timedelta(days=1)
        assert config.ingest.extracted_at == DEFAULT_END + timedelta(days=1)
        assert config.ingest.pseudonym_key
        expected_format = "%Y-%m-%d %H:%M:%S" if summary.spec.dirt else None
        assert config.inputs["events"].timestamp_format == expected_format
    world = json.loads((out / "truth" / "world.json").read_text())
    assert world["spec"]["dirt"] == 0.03
    assert [a["name"] for a in world["archetypes"]] == [a.name for a in ARCHETYPES]
    assert world["counts"]["rows"] == summary.rows


def test_an_existing_world_is_kept_unless_overwrite(tmp_path):
    spec = WorldSpec(customers=50, seed=1)
    generate_world(tmp_path, spec)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already holds a world.*--overwrite"):
        generate_world(tmp_path, spec)
    generate_world(tmp_path, WorldSpec(customers=60, seed=1), overwrite=True)
    assert len(_read(tmp_path / "truth" / "persons")) == 60
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only our entries are replaced


def test_a_failed_run_leaves_no_partial_world(tmp_path, monkeypatch):
    real_chunk = _world.generate_chunk

    def failing_chunk(spec, index, staging_dir):
        if index == 1:
            raise RuntimeError("disk full")
        return real_chunk(spec, index, staging_dir)

    monkeypatch.setattr(_world, "generate_chunk", failing_chunk)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_world(tmp_path, WorldSpec(customers=30, chunk_size=10))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (WorldSpec(customers=0), "--customers must be at least 1"),
        (WorldSpec(customers=10, seed=-1), "--seed"),
        (WorldSpec(customers=10, start=date(2025, 1, 1), end=date(2024, 1, 1)), "must be after --start"),
        (WorldSpec(customers=10, dirt=0.7), "--dirt"),
        (WorldSpec(customers=10, chunk_size=0), "chunk size"),
    ],
)
def test_bad_specs_are_usage_errors(tmp_path, spec, message):
    with pytest.raises(UsageError, match=message):
        generate_world(tmp_path, spec)
    assert not (tmp_path / ".segscale-staging").exists()


def test_short_custom_window(tmp_path):
    spec = WorldSpec(customers=500, seed=3, start=date(2023, 3, 1), end=date(2023, 4, 30))
    generate_world(tmp_path, spec)
    ts = _read(tmp_path / "transactions")["ts"]
    assert ts.min() >= pd.Timestamp("2023-03-01", tz="UTC") and ts.max() < pd.Timestamp("2023-05-01", tz="UTC")


def test_phone_numbers_never_collide_between_people():
    from engine.synth._identity import phone_parts

    area, exchange, line = phone_parts(np.arange(3_000_000, dtype=np.int64), seed=5)
    numbers = area * 10**7 + exchange * 10**4 + line
    assert len(np.unique(numbers)) == len(numbers)
    assert area.min() >= 200 and area.max() <= 999 and exchange.min() >= 200 and line.max() <= 9999
