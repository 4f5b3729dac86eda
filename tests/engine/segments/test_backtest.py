"""The fair comparison: segments against the RFM grid at equal group count, with intervals."""

import json

import numpy as np
import pandas as pd
import pytest

from engine.exceptions import UsageError
from engine.segments._backtest import (
    MEASURES,
    adjusted_eta_squared,
    against_what_happened,
    compare_at_equal_groups,
)


def _outcomes(orders, spend):
    return pd.DataFrame({"orders_next": orders, "spend_next": spend})


def _world(customers=4_000, seed=0):
    """Three behaviours; a grouping that knows them, and one that is noise."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, customers)
    buys = rng.random(customers) < np.array([0.1, 0.5, 0.9])[kind]
    spend = np.where(buys, rng.lognormal(np.array([2.0, 3.0, 5.0])[kind], 0.5), 0.0)
    return kind, rng.integers(0, 3, customers), _outcomes(buys.astype(int), spend)


def test_adjusted_eta_squared_by_hand():
    assert adjusted_eta_squared(0.5, 101, 11) == pytest.approx(1 - 0.5 * 100 / 90)
    # What random groups explain is taken away: about zero for noise.
    assert adjusted_eta_squared(10 / 100, 101, 11) == pytest.approx(0.0)


def test_the_grouping_that_knows_wins_outside_its_interval():
    knows, noise, outcomes = _world()
    compared = compare_at_equal_groups(knows, {"noise": noise}, outcomes, resamples=100)
    assert compared["groups"] == {"segments": 3, "noise": 3} and compared["customers"] == 4_000
    assert [m["measure"] for m in compared["measures"]] == list(MEASURES)
    for measure in compared["measures"]:
        assert measure["segments_win"] is True and measure["difference"]["low"] > 0
        # Noise explains nothing beyond chance: adjusted, its estimate sits at about zero.
        if measure["measure"].endswith("eta_squared"):
            assert abs(measure["rfm_grid"]["value"]) < 0.01
    reversed_ = compare_at_equal_groups(noise, {"knows": knows}, outcomes, resamples=100)
    assert all(m["segments_win"] is False for m in reversed_["measures"])


def test_the_segments_face_the_best_cut_on_each_measure():
    knows, noise, outcomes = _world(seed=2)
    compared = compare_at_equal_groups(noise, {"noise": noise, "knows": knows}, outcomes, resamples=20)
    for measure in compared["measures"]:
        assert measure["cut"] == "knows" and measure["cuts"]["knows"] > measure["cuts"]["noise"]
        assert measure["rfm_grid"]["value"] == measure["cuts"]["knows"] and measure["segments_win"] is False


def test_identical_groupings_tie_and_intervals_hold_the_estimates():
    knows, _, outcomes = _world(seed=1)
    compared = compare_at_equal_groups(knows, {"same": knows}, outcomes, resamples=50, seed=3)
    for measure in compared["measures"]:
        assert measure["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0} and measure["segments_win"] is None
        for side in ("segments", "rfm_grid"):
            # Percentile intervals; a spread's resamples run high, so only the η²s must hold theirs.
            if measure["measure"].endswith("eta_squared"):
                assert measure[side]["low"] <= measure[side]["value"] <= measure[side]["high"]
    assert compare_at_equal_groups(knows, {"same": knows}, outcomes, resamples=50, seed=3) == compared  # seeded


def test_estimates_by_hand_and_without_resamples():
    outcomes = _outcomes([0, 1, 1, 3], [0.0, 2.0, 4.0, 6.0])
    compared = compare_at_equal_groups([0, 0, 1, 1], {"one group": [0, 0, 0, 0]}, outcomes, resamples=0)
    by_measure = {m["measure"]: m for m in compared["measures"]}
    logs = np.log1p([0.0, 2.0, 4.0, 6.0])
    eta = 2 * ((logs[:2].mean() - logs.mean()) ** 2 + (logs[2:].mean() - logs.mean()) ** 2) / ((logs - logs.mean()) ** 2).sum()
    assert by_measure["log_spend_adjusted_eta_squared"]["segments"]["value"] == pytest.approx(1 - (1 - eta) * 3 / 2)
    # Churn: group {0, 1} half churned, group {2, 3} none.
    assert by_measure["churn_rate_spread"]["segments"] == {"value": 0.5, "low": None, "high": None}
    assert by_measure["churn_rate_spread"]["rfm_grid"]["value"] == 0.0  # one group: no spread
    assert by_measure["log_spend_adjusted_eta_squared"]["rfm_grid"]["value"] == pytest.approx(0.0)


def test_rows_must_line_up():
    with pytest.raises(UsageError, match="row for row"):
        compare_at_equal_groups([0, 1], {"cut": [0, 1, 1]}, _outcomes([0, 1], [0.0, 1.0]))
    with pytest.raises(UsageError, match="row for row"):
        compare_at_equal_groups([0, 1], {}, _outcomes([0, 1], [0.0, 1.0]))


def test_a_store_without_amounts_is_not_measured_on_spend(tmp_path):
    """Half the measures are of next-period spend, which a counts-only store cannot give:
    skipped with the reason, not measured on spend read as 0."""
    store = tmp_path / "store"
    store.mkdir()
    meta = {"partitions": 1, "tables": {"transactions": {"max_ts": "2025-12-30 00:00:00+00:00"}}, "has_amount": False}
    (store / "_store.json").write_text(json.dumps(meta))
    evaluation = against_what_happened(
        tmp_path / "assignments", {"store": str(store), "as_of": "2025-06-01"}, groups=3, days=90, customers=100,
        resamples=0, seed=0,
    )  # fmt: skip
    assert evaluation == {"skipped": "the store's transactions have no amounts, so next-period spend is unknown"}
