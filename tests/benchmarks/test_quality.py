"""The quality benchmark: propensity and value against the world's truth."""

import numpy as np
import pandas as pd
import pytest

from benchmarks import _quality, run_benchmarks
from engine.synth import ARCHETYPES
from engine.synth._people import draw_people, purchase_truth
from engine.value import p_alive

CUSTOMERS = 3_000


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_quality, "ESTIMATOR_CHECK_CUSTOMERS", 20_000)
        return run_benchmarks(stages=("quality",), sizes=(CUSTOMERS,), workers=1, out_dir=tmp_path_factory.mktemp("q"))


def _quality_of(document, case):
    result = next(r for r in document["results"] if r["case"] == case)
    assert result["status"] == "ok", result["reason"]
    return result["quality"]


def test_without_decay_the_history_posterior_is_the_mbgnbd_conditional_probability():
    archetype = next(a for a in ARCHETYPES if a.name == "deal_seeker")
    history = pd.DataFrame({"archetype": archetype.name, "frequency": [0.0, 1, 4, 4], "recency": [0.0, 30, 200, 60],
                            "T": [50.0, 100, 220, 220], "repeat_days_sum": [0.0, 30, 500, 120]})  # fmt: skip
    params = {"r": archetype.rate_shape, "alpha": archetype.rate_shape / archetype.rate_mean,
              "a": archetype.dropout_a, "b": archetype.dropout_b}  # fmt: skip
    x, tx, T = (history[c].to_numpy() for c in ("frequency", "recency", "T"))
    alive = p_alive(params, x, tx, T, model="mbgnbd")
    buys = 1 - ((params["alpha"] + T) / (params["alpha"] + T + 90)) ** (params["r"] + x)
    np.testing.assert_allclose(_quality.history_purchase_probability(history, 90), alive * buys, rtol=1e-10)
    # Recent repeat buyers are likelier to buy than the same count long ago.
    probability = _quality.history_purchase_probability(history, 90)
    assert probability[2] > probability[3]


def test_the_history_posterior_is_calibrated_on_people_drawn_from_the_generating_model():
    # Exact purchase days, straight from the generator: what the posterior conditions on.
    rng = np.random.default_rng(3)
    horizon = 730
    people = draw_people(rng, 0, 60_000, horizon)
    outcome = purchase_truth(people, rng, horizon, realise_future=True)["purchased_next_90d"]
    first = np.cumsum(people.orders_in_window) - people.orders_in_window
    last = first + people.orders_in_window - 1
    since_first = people.order_day - people.order_day[first][people.order_person]
    history = pd.DataFrame({
        "archetype": np.array([a.name for a in ARCHETYPES])[people.archetype],
        "frequency": people.orders_in_window - 1.0,
        "recency": since_first[last],
        "T": horizon - people.order_day[first],
        "repeat_days_sum": np.bincount(people.order_person, weights=since_first, minlength=people.archetype.size),
    })  # fmt: skip
    probability = _quality.history_purchase_probability(history, 90)
    for archetype in ARCHETYPES:  # the declining one included: its decay rate is integrated out
        rows = (history["archetype"] == archetype.name).to_numpy()
        p, y = probability[rows], outcome[rows]
        for decile in np.array_split(np.argsort(p), 5):
            spread = 3 * np.sqrt((p[decile] * (1 - p[decile])).sum()) + 3
            assert abs(y[decile].sum() - p[decile].sum()) < spread, archetype.name


@pytest.mark.slow
def test_the_model_sits_between_history_alone_and_the_oracle(document):
    for case in ("propensity-truth", "propensity-truth-3-origins"):
        quality = _quality_of(document, case)
        assert quality["customers_vs_truth"] > 0.9 * CUSTOMERS
        # The oracle knows who is alive; no model of observable history reaches it.
        assert quality["oracle_auc"] > quality["auc"] > 0.8 and quality["oracle_auc"] > quality["history_bayes_auc"] > 0.8
        assert quality["gap_to_oracle"] == pytest.approx(quality["oracle_auc"] - quality["auc"], abs=2e-4)
        assert 0 <= quality["ece"] < 0.1
    assert _quality_of(document, "propensity-truth-3-origins")["origins"] == 3


@pytest.mark.slow
def test_value_parameters_are_compared_with_the_generating_ones(document):
    quality = _quality_of(document, "value-truth")
    stationary = [a.name for a in ARCHETYPES if a.decline_per_day[1] == 0]
    assert {f"{name}_max_abs_rel_error" for name in stationary} <= set(quality)
    assert not any(key.startswith("declining") for key in quality)
    assert quality["estimator_check_max_abs_rel_error"] < 0.15 and quality["estimator_check_max_abs_z"] < 4
    loyal = quality["loyal_high_value_customers"]
    assert 0.05 * CUSTOMERS < loyal < 0.2 * CUSTOMERS


@pytest.mark.slow
def test_segments_are_scored_against_the_planted_archetypes(document):
    quality = _quality_of(document, "segments-truth")
    assert quality["customers_vs_truth"] > 0.9 * CUSTOMERS
    # Told the archetypes, a classifier on the same matrix recovers them far better than
    # k-means can; the classic RFM grid, which ignores most behaviour, does worst.
    assert quality["supervised_ari_vs_archetypes"] > quality["ari_vs_archetypes_k_archetypes"] + 0.1
    assert quality["ari_vs_archetypes_k_archetypes"] > quality["rfm_grid_ari_vs_archetypes"] > 0
    assert 0 < quality["ari_vs_archetypes"] < 1 and quality["ari_between_seeds"] > 0.9
    assert 3 <= quality["k"] <= 10 and quality["k_next_seed"] >= 3
