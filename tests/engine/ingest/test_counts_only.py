"""Counts-only transactions: a purchase log with a customer id and a date, and no amount."""

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.config import load_config
from engine.exceptions import InputDataError
from engine.ingest import has_amounts, ingest, read_store_meta
from engine.ingest._validate import ParseRules, validate_partition

_LOG = "cust,date\n1,2006-01-01\n2,2006-01-01\n2,2006-12-19\n,2006-01-02\n3,2006-02-30\n"


def _config(tmp_path, text, columns='customer_id = "cust"\nts = "date"\n'):
    (tmp_path / "tx.csv").write_text(text)
    (tmp_path / "run.toml").write_text(
        f'[inputs.transactions]\npath = "tx.csv"\n[inputs.transactions.columns]\n{columns}'
        '[ingest]\npseudonym_key = "k-for-tests"\n'
    )
    return load_config(tmp_path / "run.toml")


def test_a_log_without_amounts_is_stored_with_null_amounts_and_flagged(tmp_path):
    summary = ingest(_config(tmp_path, _LOG))
    # Only the row faults that have nothing to do with amounts.
    assert summary.tables["transactions"] == {
        "read": 5, "kept": 3, "quarantined": {"bad_timestamp": 1, "blank_customer_id": 1}, "duplicates": 0,
    }  # fmt: skip
    store = tmp_path / "run" / "ingest" / "store"
    meta = read_store_meta(store)
    assert meta["has_amount"] is False and not has_amounts(meta)
    assert meta["tables"]["transactions"]["columns"]["amount"] == "double"
    stored = pq.read_table(store / "transactions").to_pandas()
    assert len(stored) == 3 and stored["amount"].isna().all()


def test_a_store_with_amounts_says_so_and_an_older_store_is_taken_to_have_them(tmp_path):
    ingest(_config(tmp_path, "cust,date,amount\n1,2006-01-01,2.5\n", 'customer_id = "cust"\nts = "date"\n'))
    assert read_store_meta(tmp_path / "run" / "ingest" / "store")["has_amount"] is True
    assert has_amounts({"tables": {"transactions": {}}})


def test_an_amount_mapped_to_a_column_the_file_lacks_is_an_error(tmp_path):
    config = _config(tmp_path, _LOG, 'customer_id = "cust"\nts = "date"\namount = "price"\n')
    with pytest.raises(InputDataError, match=r"tx.csv: missing required column 'price' for transactions.amount"):
        ingest(config)


def test_validation_without_an_amount_column_quarantines_nothing_for_amount():
    raw = pd.DataFrame({"customer_id": ["1", "2", "3"], "ts": ["2024-01-01", "2024-01-02", "2024-01-03"]}, dtype=str)
    checked = validate_partition(raw, "transactions", ParseRules(max_abs_amount=1.0))
    assert checked["reason"].isna().all()
    assert checked["amount"].isna().all() and checked["amount"].dtype == "float64"
