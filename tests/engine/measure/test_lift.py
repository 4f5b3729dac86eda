"""Lift with confidence intervals: coverage over simulations with a known lift, the pieces."""

import numpy as np
import pytest

from engine.measure import mean_lift, minimum_detectable_effect, rate_lift


def test_the_95_interval_covers_the_true_lift_in_at_least_90_of_100_simulations():
    covered = {"absolute": 0, "relative": 0, "revenue": 0}
    for seed in range(100):
        rng = np.random.default_rng(seed)
        treated, control = rng.uniform(size=5_000) < 0.12, rng.uniform(size=1_000) < 0.10
        lift = rate_lift(treated.astype(int), control.astype(int))
        covered["absolute"] += lift["absolute_low"] <= 0.02 <= lift["absolute_high"]
        covered["relative"] += lift["relative_low"] <= 0.2 <= lift["relative_high"]
        # Revenue: spend ~ Gamma with mean 40 for buyers; treated buyers spend 10% more.
        spend_t = np.where(treated, rng.gamma(2.0, 22.0, treated.size), 0.0)
        spend_c = np.where(control, rng.gamma(2.0, 20.0, control.size), 0.0)
        revenue = mean_lift(spend_t, spend_c)
        covered["revenue"] += revenue["absolute_low"] <= 0.12 * 44 - 0.10 * 40 <= revenue["absolute_high"]
    assert all(count >= 90 for count in covered.values()), covered


def test_rates_lifts_and_increments_are_what_they_say():
    lift = rate_lift(np.array([1] * 30 + [0] * 70), np.array([1] * 20 + [0] * 80))
    assert lift["treated_rate"] == 0.3 and lift["control_rate"] == 0.2
    assert lift["absolute_lift"] == pytest.approx(0.1) and lift["relative_lift"] == pytest.approx(0.5)
    assert lift["incremental"] == pytest.approx(10.0)
    assert lift["absolute_low"] < 0.1 < lift["absolute_high"] and 0 < lift["p_value"] < 1
    # 100 a side cannot tell 0.3 from 0.2 with 80% power: underpowered, and said with the MDE.
    assert lift["underpowered"] and lift["minimum_detectable_effect"] == pytest.approx(
        2.8016 * np.sqrt(0.2 * 0.8 * 2 / 100), rel=1e-3
    )


def test_the_minimum_detectable_effect_shrinks_with_the_square_root_of_the_groups():
    small, large = minimum_detectable_effect(0.1, 1_000, 1_000), minimum_detectable_effect(0.1, 4_000, 4_000)
    assert small == pytest.approx(2 * large)


def test_a_big_clear_lift_is_not_underpowered_and_an_empty_group_gives_no_interval():
    rng = np.random.default_rng(0)
    lift = rate_lift((rng.uniform(size=20_000) < 0.2).astype(int), (rng.uniform(size=20_000) < 0.1).astype(int))
    assert not lift["underpowered"] and lift["p_value"] < 1e-10
    empty = rate_lift(np.array([1, 0, 1]), np.array([], dtype=int))
    assert np.isnan(empty["absolute_low"]) and empty["underpowered"]
