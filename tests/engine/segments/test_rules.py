"""Surrogate rules recover planted segment definitions, in round numbers, and survive JSON."""

import json

import numpy as np
import pandas as pd
import pytest

from engine.exceptions import UsageError
from engine.segments._rules import NO_RULE, SegmentRules, _roundest

FEATURES = ("orders_90d", "recency_days", "spend_90d")


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(4)
    rows = 3000
    frame = pd.DataFrame(
        {
            "orders_90d": rng.integers(0, 9, rows),
            "recency_days": rng.uniform(0, 365, rows),
            "spend_90d": rng.gamma(2.0, 50.0, rows),
        }
    )
    segments = ((frame["orders_90d"] >= 3) & (frame["recency_days"] < 30)).astype("int64").to_numpy()
    return frame, segments


def test_a_planted_rule_is_recovered_exactly_in_round_numbers(planted):
    frame, segments = planted
    rules = SegmentRules(FEATURES).fit(frame, segments)
    assert rules.fidelity_ == 1.0
    described = {entry["segment"]: entry for entry in rules.describe()}
    assert described[1]["rules"] == ["orders_90d >= 3 and recency_days < 30"]
    # The tree splits on recency first; splits whose sides agree are merged away.
    assert sorted(described[0]["rules"]) == ["orders_90d < 3 and recency_days < 30", "recency_days >= 30"]
    assert described[1]["recall"] == described[1]["precision"] == 1.0
    assert described[1]["customers"] == segments.sum() and described[1]["note"] is None


def test_predict_reproduces_the_tree_and_places_new_customers(planted):
    frame, segments = planted
    rules = SegmentRules(FEATURES).fit(frame, segments)
    predicted = rules.predict(frame)
    assert predicted.dtype == np.int32
    np.testing.assert_array_equal(predicted, rules.estimator_.predict(frame[list(FEATURES)].to_numpy("float32")))
    new = pd.DataFrame({"orders_90d": [3, 2, 8, 5], "recency_days": [29.9, 1.0, 30.0, 0.0], "spend_90d": [1.0] * 4})
    assert rules.predict(new).tolist() == [1, 0, 0, 1]


def test_missing_values_are_filled_by_meaning(planted):
    frame, segments = planted
    with_gaps = frame.astype({"orders_90d": "float64"})
    # Customers who never bought (no recency) are outside segment 1, as planted.
    with_gaps.loc[np.flatnonzero(segments == 0)[:20], "recency_days"] = np.nan
    rules = SegmentRules(FEATURES).fit(with_gaps, segments)
    assert rules.fidelity_ == 1.0
    # Never bought = as long ago as anyone: a missing recency fills with the sample maximum.
    assert rules.fill_[1] == pytest.approx(with_gaps["recency_days"].max())
    new = pd.DataFrame({"orders_90d": [6.0], "recency_days": [np.nan], "spend_90d": [np.nan]})
    assert rules.predict(new).tolist() == [0]


def test_a_segment_no_leaf_predicts_says_so():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"orders_90d": rng.integers(0, 5, 400), "recency_days": rng.uniform(0, 100, 400)})
    # One split, two leaves: segment 2, five customers scattered over both halves, gets neither.
    segments = (frame["recency_days"] >= 50).to_numpy().astype("int64")
    segments[:5] = 2
    described = SegmentRules(("orders_90d", "recency_days"), max_depth=1).fit(frame, segments).describe()
    lonely = next(entry for entry in described if entry["segment"] == 2)
    assert lonely == {"segment": 2, "customers": 5, "rules": [], "recall": 0.0, "precision": None, "note": NO_RULE}


def test_round_trip_through_json_keeps_rules_and_predictions(planted):
    frame, segments = planted
    segments = segments + (frame["spend_90d"] > 150).to_numpy() * 2
    rules = SegmentRules(FEATURES, max_depth=2, seed=3).fit(frame, segments)
    loaded = SegmentRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    np.testing.assert_array_equal(loaded.predict(frame), rules.predict(frame))
    assert loaded.describe() == rules.describe() and loaded.fidelity_ == rules.fidelity_
    assert all(len(rule.split(" and ")) <= 2 for entry in rules.describe() for rule in entry["rules"])


@pytest.mark.parametrize(
    ("low", "high", "roundest"),
    [(2, 3, 3), (29.93, 30.04, 30), (21, 27, 25), (0.231, 0.2347, 0.234), (-4.2, 0.3, 0), (1234.1, 1290.0, 1250)],
)
def test_thresholds_are_the_roundest_number_that_splits_alike(low, high, roundest):
    assert _roundest(low, high) == pytest.approx(roundest)


def test_bad_inputs_are_usage_errors(planted):
    frame, segments = planted
    with pytest.raises(UsageError, match="one integer label per row"):
        SegmentRules(FEATURES).fit(frame, segments[:-1])
    with pytest.raises(UsageError, match="not in the feature table"):
        SegmentRules(("orders_90d", "nope")).fit(frame, segments)
    rules = SegmentRules(FEATURES).fit(frame, segments)
    with pytest.raises(UsageError, match="lacks the rule columns"):
        rules.predict(frame.drop(columns="spend_90d"))
