"""The segment backtests: segments against the RFM grid at equal group count, measured."""

import contextlib

import pytest

from benchmarks import _backtest
from benchmarks.cases import CASES, select_cases


def test_the_backtest_stage_holds_both_cases():
    assert [case.name for case in select_cases(("backtest",))] == ["segments-backtest", "segments-online-retail"]
    assert CASES["segments-online-retail"].dataset == "online-retail"


def _quality(data, workdir):
    result = _backtest.run_segments_backtest(3_000, workdir, "cpu", 1, contextlib.nullcontext(), data)
    return result["rows"]["customers"], result["quality"]


def test_a_synthetic_backtest_reports_every_measure_with_its_interval(tmp_path):
    data = _backtest.prepare_backtest_world(3_000, tmp_path / "data", "cpu", 1)
    customers, quality = _quality(data, tmp_path / "work")
    assert customers > 2_500 and quality["k_chosen_by"] == "stability" and 3 <= quality["k"] <= 10
    for measure in ("log_spend_adjusted_eta_squared", "purchase_adjusted_eta_squared", "churn_rate_spread"):
        for side in ("segments", "rfm_grid", "difference"):
            assert quality[f"{measure}_{side}_low"] < quality[f"{measure}_{side}_high"], (measure, side)
        assert quality[f"{measure}_rfm_cut"] in ("ward R, F, M", "ward R, FM", "score sum")
        assert quality[f"{measure}_segments_win"] in (True, False, None)
    # Told the archetypes, a classifier does better than any clustering of the same features.
    assert quality["supervised_ari_vs_archetypes"] > quality["ari_vs_archetypes"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not _backtest.ONLINE_RETAIL.exists(), reason="../shared/datasets is not beside this checkout")
def test_online_retail_is_measured_as_of_september(tmp_path):
    data = _backtest.prepare_online_retail(0, tmp_path / "data", "cpu", 1)
    customers, quality = _quality(data, tmp_path / "work")
    assert customers > 3_000 and quality["customers_measured"] == customers
    assert "ari_vs_archetypes" not in quality
