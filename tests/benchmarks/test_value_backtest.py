"""The value backtests: real purchase logs against the naive forecast and lifetimes' best."""

import contextlib

import pytest

from benchmarks import _value_backtest
from benchmarks.cases import select_cases


def test_the_value_backtest_stage_holds_the_three_logs():
    assert [case.name for case in select_cases(("value-backtest",))] == [
        "value-grocery", "value-online-retail", "value-cdnow",
    ]  # fmt: skip


def test_cdnow_reports_the_chosen_model_beside_the_naive_forecast(tmp_path):
    data = _value_backtest.prepare_cdnow(0, tmp_path / "data", "cpu", 1)
    result = _value_backtest.run_value_cdnow(0, tmp_path / "run", "cpu", 1, contextlib.nullcontext(), data)
    quality = result["quality"]
    assert result["rows"] == {"customers": 2_357} and quality["purchases_actual"] == 1_882
    assert quality["model_chosen"] == quality["forecast"] in ("bgnbd", "mbgnbd", "pareto_nbd")
    assert quality["mae_vs_naive"] == pytest.approx(quality["mae"] / quality["naive_mae"], rel=1e-3)
    assert quality["mae_at_most_naive"] and quality["degenerate"] == "no"
    assert quality["spend_param_p"] == pytest.approx(6.25, rel=0.005)


@pytest.mark.skipif(not _value_backtest.GROCERY.exists(), reason="../shared/datasets is not beside this checkout")
def test_grocery_is_measured_against_lifetimes(tmp_path):
    data = _value_backtest.prepare_grocery(0, tmp_path / "data", "cpu", 1)
    quality = _value_backtest.run_value_grocery(0, tmp_path / "run", "cpu", 1, contextlib.nullcontext(), data)["quality"]
    assert quality["lifetimes_model"] == "Pareto/NBD" and quality["mae_at_most_lifetimes_best"]
    assert "spend_param_p" not in quality  # no amounts, no spend model
