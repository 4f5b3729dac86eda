"""The UCI Online Retail file through the example config: real, messy data."""

import dataclasses
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.config import load_config
from engine.ingest import ingest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "online_retail.toml"
DATA = ROOT.parent / "shared" / "datasets" / "online_retail.csv.gz"

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is not beside this checkout")


@pytest.fixture(scope="module")
def retail(tmp_path_factory):
    config = load_config(EXAMPLE)
    out = tmp_path_factory.mktemp("retail")
    config = dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, output_dir=out),
        ingest=dataclasses.replace(config.ingest, pseudonym_key="online-retail-test-key"),
    )
    return ingest(config), out / "ingest"


def test_the_numbers_reconcile_with_the_file(retail):
    summary, out = retail
    source = pd.read_csv(DATA, dtype=str, keep_default_na=False, na_values=[""])
    counts = summary.tables["transactions"]
    assert counts["read"] == len(source) == 541_909
    assert counts["read"] == counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]
    # Lines without a CustomerID cannot belong to anyone: quarantined, each distinct one once.
    blank = source[source["CustomerID"].isna()]
    assert counts["quarantined"] == {"blank_customer_id": len(blank.drop_duplicates())}
    assert counts["duplicates"] == int(source.duplicated().sum())
    assert counts["kept"] == len(source[source["CustomerID"].notna()].drop_duplicates())
    stored = pd.concat(pd.read_parquet(p) for p in sorted((out / "store" / "transactions").glob("*.parquet")))
    assert len(stored) == counts["kept"]
    assert stored["customer_key"].nunique() == source["CustomerID"].nunique() == 4_372


def test_cancellations_become_returns(retail):
    _, out = retail
    source = pd.read_csv(DATA, dtype=str, keep_default_na=False, na_values=[""])
    kept = source[source["CustomerID"].notna()].drop_duplicates()
    cancellations = kept["InvoiceNo"].str.startswith("C")
    stored = pd.concat(pd.read_parquet(p) for p in sorted((out / "store" / "transactions").glob("*.parquet")))
    assert int(stored["is_return"].sum()) == int(cancellations.sum())
    returns = stored[stored["is_return"]]
    assert (returns["amount"] <= 0).all() and (returns["quantity"] < 0).all()
    assert returns["order_id"].str.startswith("C").all()
    # amount = Quantity * UnitPrice, and London wall-clock times stored as UTC.
    first = stored.sort_values("ts").iloc[0]
    assert first["ts"] == pd.Timestamp("2010-12-01 08:26:00", tz="UTC")  # GMT in December
    summer = stored[stored["order_id"] == "556446"]
    assert summer["ts"].iloc[0] == pd.Timestamp("2011-06-10 14:33:00", tz="UTC")  # 15:33 BST
    assert stored.loc[stored["order_id"] == "536365", "amount"].round(2).tolist()[:1] == [15.3]
    quarantine = pq.read_table(out / "quarantine" / "transactions").to_pandas()
    assert {"StockCode", "Description", "Country", "reason"} <= set(quarantine.columns)  # whole rows kept
