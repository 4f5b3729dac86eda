"""The activation inputs (issue 27): contacts, suppressions and customers' consent flags,
ingested from CSV like every other table."""

import json
from datetime import date

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.config import load_config
from engine.features import build_features
from engine.ingest import ingest, read_store_meta, read_store_table

PARTITIONS = 4
CUSTOMERS = [f"c{n}" for n in range(12)]

# Every customer buys twice, so the transactions spread them over the partitions.
_TRANSACTIONS = "customer_id,ts,amount\n" + "".join(
    f"{c},2025-0{month}-10 10:00:00,{10 + n}\n" for n, c in enumerate(CUSTOMERS) for month in (3, 4)
)
_CUSTOMERS = (
    "customer_id,region,consent_email,consent_sms\n"
    "c0,north,Yes,n\n"
    "c1,south,FALSE,1\n"
    "c2,north,,Y\n"
    "c3,south,maybe,no\n"  # unreadable consent: quarantined
)
_CONTACTS = (
    "customer_id,sent_at,medium,campaign\n"
    "c0,2025-04-01 09:00:00, Email ,spring\n"
    "c0,2025-04-08 09:00:00,SMS,spring\n"
    "c1,2025-04-01 09:00:00,push,\n"
    "c5,2025-04-02 09:00:00,email,spring\n"
    "c5,2025-04-02 09:00:00,email,spring\n"  # an exact duplicate
    "c7,2025-04-03 09:00:00,,spring\n"  # no channel
    "c8,not a time,email,spring\n"
    ",2025-04-03 09:00:00,email,spring\n"
)
_SUPPRESSIONS = (
    "customer_id,reason,channel,ts\n"
    "c0,Unsubscribed,email,2025-04-05 00:00:00\n"
    "c2,legal_hold,,\n"  # every channel, time unknown
    "c2,legal_hold,,\n"  # an exact duplicate, also without a time
    "c5, COMPLAINT ,SMS,2025-05-01 00:00:00\n"
    "c7,,email,2025-04-05 00:00:00\n"  # no reason
    "c9,unsubscribed,email,31/02/2025\n"
)


def _write_inputs(directory, suppressions=_SUPPRESSIONS):
    (directory / "tx.csv").write_text(_TRANSACTIONS)
    (directory / "customers.csv").write_text(_CUSTOMERS)
    (directory / "contacts.csv").write_text(_CONTACTS)
    (directory / "suppressions.csv").write_text(suppressions)
    (directory / "run.toml").write_text(
        '[inputs.transactions]\npath = "tx.csv"\n'
        '[inputs.customers]\npath = "customers.csv"\n'
        '[inputs.contacts]\npath = "contacts.csv"\n'
        '[inputs.contacts.columns]\nts = "sent_at"\nchannel = "medium"\n'
        '[inputs.suppressions]\npath = "suppressions.csv"\n'
        f'[ingest]\npseudonym_key = "k-for-tests"\npartitions = {PARTITIONS}\nextracted_at = 2025-06-01\n'
    )
    return load_config(directory / "run.toml")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    directory = tmp_path_factory.mktemp("activation")
    summary = ingest(_write_inputs(directory))
    return summary, directory / "run" / "ingest"


def _store_table(out, table, as_of_us=None):
    """Every part of a store table, with the part number each row came from."""
    parts = [
        read_store_table(out / "store", table, n, None, as_of_us).to_pandas().assign(part=n) for n in range(PARTITIONS)
    ]
    return pd.concat(parts, ignore_index=True)


def test_rows_reconcile_and_bad_rows_are_quarantined_with_their_reason(ingested):
    summary, out = ingested
    assert summary.tables["contacts"] == {
        "read": 8, "kept": 4, "duplicates": 1,
        "quarantined": {"bad_timestamp": 1, "blank_channel": 1, "blank_customer_id": 1},
    }  # fmt: skip
    assert summary.tables["suppressions"] == {
        "read": 6, "kept": 3, "duplicates": 1, "quarantined": {"bad_timestamp": 1, "blank_reason": 1},
    }  # fmt: skip
    assert summary.tables["customers"]["quarantined"] == {"bad_consent": 1}
    assert json.loads((out / "ingest.json").read_text())["tables"] == summary.tables
    for table in ("contacts", "suppressions"):
        quarantined = pq.read_table(out / "quarantine" / table).to_pandas()
        assert sorted(quarantined["reason"]) == sorted(
            reason for reason, rows in summary.tables[table]["quarantined"].items() for _ in range(rows)
        )
    contacts = pq.read_table(out / "quarantine" / "contacts").to_pandas().set_index("reason")
    assert contacts.loc["bad_timestamp", "ts"] == "not a time"  # the original text
    # The suppressions' own reason stays beside the quarantine's.
    suppressions = pq.read_table(out / "quarantine" / "suppressions").to_pandas().set_index("reason")
    assert suppressions.loc["bad_timestamp", "suppression_reason"] == "unsubscribed"
    assert suppressions.loc["bad_timestamp", "ts"] == "31/02/2025"


def test_stored_rows_are_keyed_sorted_and_normalised(ingested):
    _, out = ingested
    contacts = _store_table(out, "contacts")
    assert set(contacts.columns) == {"customer_key", "ts", "channel", "campaign", "part"}
    assert sorted(contacts["channel"].astype(str)) == ["email", "email", "push", "sms"]
    suppressions = _store_table(out, "suppressions")
    assert set(suppressions.columns) == {"customer_key", "ts", "channel", "reason", "part"}
    assert sorted(suppressions["reason"]) == ["complaint", "legal_hold", "unsubscribed"]
    assert suppressions["channel"].isna().sum() == 1  # legal hold: every channel
    assert suppressions["ts"].isna().sum() == 1
    for frame in (contacts, suppressions):
        for _, part in frame.groupby("part"):
            assert part["customer_key"].is_monotonic_increasing
    assert not set(contacts["customer_key"]) & set(CUSTOMERS)  # pseudonymised, not source ids
    meta = read_store_meta(out / "store")
    assert list(meta["tables"]["suppressions"]["columns"]) == ["ts", "channel", "reason", "customer_key"]
    assert meta["tables"]["suppressions"]["max_ts"] == "2025-05-01 00:00:00+00:00"


def test_a_customer_lands_in_the_same_part_in_every_table(ingested):
    _, out = ingested
    parts = {table: _store_table(out, table) for table in ("transactions", "customers", "contacts", "suppressions")}
    home = dict(zip(parts["transactions"]["customer_key"], parts["transactions"]["part"]))
    assert len(home) == len(CUSTOMERS) and len(set(home.values())) > 1
    for table, frame in parts.items():
        assert all(home[key] == part for key, part in zip(frame["customer_key"], frame["part"])), table


def test_as_of_reads_earlier_contacts_and_suppressions_and_undated_suppressions(ingested):
    _, out = ingested
    as_of_us = int(pd.Timestamp("2025-04-06", tz="UTC").timestamp() * 1_000_000)
    assert len(_store_table(out, "contacts", as_of_us)) == 3
    suppressions = _store_table(out, "suppressions", as_of_us)
    # The complaint of May is not in force yet; the undated legal hold always is.
    assert sorted(suppressions["reason"]) == ["legal_hold", "unsubscribed"]


def test_consent_flags_are_stored_as_booleans_and_never_become_features(ingested, tmp_path):
    _, out = ingested
    customers = _store_table(out, "customers")
    schema = pq.read_schema(out / "store" / "customers" / "part-00000.parquet")
    assert str(schema.field("consent_email").type) == "bool" and str(schema.field("consent_sms").type) == "bool"
    key = dict(zip(customers["region"] + customers["consent_sms"].astype(str), customers["consent_email"]))
    assert key == {"northFalse": True, "southTrue": False, "northTrue": None}

    summary = build_features(out / "store", tmp_path / "features", as_of=date(2025, 5, 1), backend_name="cpu")
    assert "region" in summary.features
    assert not [name for name in summary.features if name.startswith("consent_")]


def test_an_empty_suppression_list_is_a_state_not_a_mistake(tmp_path):
    summary = ingest(_write_inputs(tmp_path, suppressions="customer_id,reason\n"))
    assert summary.tables["suppressions"] == {"read": 0, "kept": 0, "quarantined": {}, "duplicates": 0}
    assert read_store_table(tmp_path / "run" / "ingest" / "store", "suppressions", 0, None, None).num_rows == 0
