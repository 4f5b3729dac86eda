"""The feature benchmark on a tiny world: every implementation computes the same numbers."""

import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks import run_benchmarks


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-features")
    return run_benchmarks(stages=("features",), sizes=(1_500,), workers=1, out_dir=out, keep_data=True)


def _result(document, case):
    return next(r for r in document["results"] if r["case"] == case)


def test_every_case_runs_or_says_why_not(document):
    for result in document["results"]:
        if result["status"] == "skipped":
            assert "not installed" in result["reason"]
        else:
            assert result["status"] == "ok", result["reason"]
            assert result["median_seconds"] > 0 and result["rows"] > 1000
    ours = _result(document, "features")
    assert ours["time_vs_fastest_peer"] is not None and ours["fastest_peer"].startswith("features-")


def test_segscale_and_pandas_count_the_same_orders_and_money(document):
    ours, pandas_peer = _result(document, "features")["quality"], _result(document, "features-pandas")["quality"]
    assert ours["orders"] == pandas_peer["orders"]
    # Identity resolution merges accounts: fewer customers, the same business.
    assert ours["customers"] < pandas_peer["customers"]
    # Ingest drops exact duplicate lines, which a raw peer counts twice.
    assert ours["monetary_total"] == pytest.approx(pandas_peer["monetary_total"], rel=1e-3)


@pytest.mark.parametrize("peer", ["polars", "duckdb"])
def test_peers_agree_with_pandas_column_by_column(document, peer):
    if importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} not installed")
    reference = pq.read_table(_result(document, "features-pandas")["data_path"]).to_pandas()
    other = pq.read_table(_result(document, f"features-{peer}")["data_path"]).to_pandas()
    reference, other = (f.sort_values("customer_id").reset_index(drop=True) for f in (reference, other))
    assert sorted(other.columns) == sorted(reference.columns)
    for column in reference.columns.drop("customer_id"):
        np.testing.assert_allclose(
            other[column].to_numpy(dtype="float64"), reference[column].to_numpy(dtype="float64"),
            rtol=1e-9, atol=1e-9, err_msg=column,
        )  # fmt: skip
    assert (other["customer_id"] == reference["customer_id"]).all()
