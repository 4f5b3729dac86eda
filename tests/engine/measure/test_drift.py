"""Population stability between runs: 0 for the same distribution, above 0.2 for a shift."""

import numpy as np
import pytest

from engine.measure import SHIFTED, population_stability


def test_identical_distributions_have_no_drift_and_a_shifted_one_does():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 50.0, 50_000)
    assert population_stability(values, values) == 0.0
    assert population_stability(values, rng.permutation(values)) == 0.0
    assert population_stability(values, rng.gamma(2.0, 50.0, 50_000)) < 0.01  # a fresh draw: noise only
    assert population_stability(values, values * 1.6) > SHIFTED


def test_few_values_few_bins_and_missing_values_left_out():
    before = np.array([0, 0, 0, 1, 1, 2] * 100, dtype=float)
    after = np.array([0, 1, 1, 2, 2, 2, np.nan] * 100, dtype=float)
    psi = population_stability(before, after)
    # Bins are the distinct deciles: 0, 1 and 2 each a bin; by hand over the three shares.
    shares_before, shares_after = np.array([3, 2, 1]) / 6, np.array([1, 2, 3]) / 6
    assert psi == pytest.approx(np.sum((shares_after - shares_before) * np.log(shares_after / shares_before)))
    assert np.isnan(population_stability(np.array([]), before))


def test_run_drift_flags_the_columns_that_moved(tmp_path):
    import pandas as pd

    from engine.layout import RunLayout, part_name
    from engine.measure import run_drift

    rng = np.random.default_rng(1)
    for name, scale in (("before", 1.0), ("after", 2.0)):
        layout = RunLayout(tmp_path / name)
        for number in range(3):
            features = pd.DataFrame({"customer_key": [f"k{number}-{i}" for i in range(4_000)],
                                     "recency_days": rng.exponential(60 * scale, 4_000),
                                     "frequency": rng.poisson(4, 4_000), "region": "north"})  # fmt: skip
            layout.features.root.mkdir(parents=True, exist_ok=True)
            features.to_parquet(layout.features.part(number), index=False)
            scores = pd.DataFrame({"customer_key": features["customer_key"], "score": rng.beta(2, 5, 4_000)})
            layout.propensity_scores.root.mkdir(parents=True, exist_ok=True)
            scores.to_parquet(layout.propensity_scores.root / part_name(number), index=False)
    drift = {row["column"]: row for row in run_drift(tmp_path / "before", tmp_path / "after")}
    assert set(drift) == {"recency_days", "frequency", "score"}  # text columns have no PSI
    assert drift["recency_days"]["shifted"] and not drift["frequency"]["shifted"] and not drift["score"]["shifted"]
