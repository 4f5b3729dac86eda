"""One short rule per segment: planted definitions come back in round numbers and plain
words, every segment gets a rule (a weak one says so), and the figures are the rule's own."""

import json
import operator

import numpy as np
import pandas as pd
import pytest

from engine.exceptions import UsageError
from engine.segments._prepare import DEFAULT_FEATURES
from engine.segments._rules import WEAK_BELOW, SegmentRules, _condition_text, _roundest

FEATURES = ("orders_90d", "recency_days", "spend_90d")
OPS = {">=": operator.ge, "<": operator.lt}


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


@pytest.fixture(scope="module")
def four_segments(planted):
    """The planted segment, the rest split by spend at an unround 137.2, and one of
    customers scattered at random: no short rule isolates that one."""
    frame, segments = planted
    segments = np.where((segments == 0) & (frame["spend_90d"] >= 137.2).to_numpy(), 2, segments)
    segments[np.random.default_rng(5).choice(len(frame), 150, replace=False)] = 3
    return frame, segments


def _by_hand(frame, fill, columns, conditions) -> np.ndarray:
    """Whom a rule's conditions catch, read from the frame with missing values filled."""
    caught = np.ones(len(frame), dtype=bool)
    for condition in conditions:
        column = frame[condition["feature"]].fillna(fill[columns.index(condition["feature"])])
        caught &= OPS[condition["op"]](column.to_numpy(), condition["value"])
    return caught


def _significant_digits(value: float) -> int:
    return len(f"{abs(value):.10g}".replace(".", "").strip("0"))


def test_a_planted_rule_is_recovered_exactly_in_round_numbers_and_plain_words(planted):
    frame, segments = planted
    described = {entry["segment"]: entry for entry in SegmentRules(FEATURES).fit(frame, segments).describe()}
    assert described[1]["conditions"] == [
        {"feature": "recency_days", "op": "<", "value": 30, "text": "last bought less than 30 days ago"},
        {"feature": "orders_90d", "op": ">=", "value": 3, "text": "3 or more orders in the last 90 days"},
    ]
    assert described[1]["rule"] == "last bought less than 30 days ago and 3 or more orders in the last 90 days"
    assert described[1]["recall"] == described[1]["precision"] == 1.0
    assert described[1]["strength"] == "strong" and described[1]["note"] is None
    assert described[1]["customers"] == segments.sum()
    # The rest is mostly "not recent": one condition catches 97% of it and nobody else.
    assert described[0]["rule"] == "last bought 30 or more days ago" and described[0]["precision"] == 1.0


def test_every_segment_gets_one_rule_of_at_most_three_conditions(four_segments):
    frame, segments = four_segments
    described = SegmentRules(FEATURES, max_depth=3).fit(frame, segments).describe()
    assert [entry["segment"] for entry in described] == [0, 1, 2, 3]
    for entry in described:
        assert 1 <= len(entry["conditions"]) <= 3 and entry["rule"]
        assert entry["rule"] == " and ".join(condition["text"] for condition in entry["conditions"])
        assert 0 < entry["recall"] <= 1 and 0 < entry["precision"] <= 1
    assert all(len(e["conditions"]) == 1 for e in SegmentRules(FEATURES, max_depth=1).fit(frame, segments).describe())


def test_a_segment_no_rule_isolates_gets_its_best_rule_marked_weak(four_segments):
    frame, segments = four_segments
    scattered = SegmentRules(FEATURES).fit(frame, segments).describe()[3]
    assert scattered["conditions"] and scattered["strength"] == "weak"
    assert min(scattered["recall"], scattered["precision"]) < WEAK_BELOW
    assert scattered["note"] == (
        f"weak rule: catches {scattered['recall']:.0%} of the segment, "
        f"{scattered['precision']:.0%} of those caught belong to it"
    )


def test_reported_precision_and_recall_are_those_of_the_rule_as_written(four_segments):
    frame, segments = four_segments
    rules = SegmentRules(FEATURES).fit(frame, segments)
    for entry in rules.describe():
        caught = _by_hand(frame, rules.fill_, rules.columns_, entry["conditions"])
        members = segments == entry["segment"]
        assert entry["customers"] == members.sum()
        assert entry["recall"] == (caught & members).sum() / members.sum()
        assert entry["precision"] == (caught & members).sum() / caught.sum()


def test_thresholds_are_round_at_little_cost(four_segments):
    frame, segments = four_segments
    described = SegmentRules(FEATURES).fit(frame, segments).describe()
    values = [condition["value"] for entry in described for condition in entry["conditions"]]
    assert all(_significant_digits(value) <= 3 for value in values), values
    # Planted at 137.2 (customers spend in cents), written rounder, and still nearly all of
    # the segment and nobody else.
    spend = [c for c in described[2]["conditions"] if c["feature"] == "spend_90d"]
    assert spend[0]["op"] == ">=" and _significant_digits(spend[0]["value"]) < 4
    assert described[2]["precision"] > 0.9 and described[2]["recall"] > 0.9


@pytest.mark.parametrize(
    ("feature", "op", "value", "text"),
    [
        ("recency_days", "<", 30, "last bought less than 30 days ago"),
        ("orders_90d", ">=", 3, "3 or more orders in the last 90 days"),
        ("orders_90d", "<", 1, "no orders in the last 90 days"),
        ("spend_365d", ">=", 420, "spent 420 or more in the last year"),
        ("discount_share", ">=", 0.4, "40% or more of items bought on discount"),
        ("return_rate", "<", 0.125, "less than 12.5% of items returned"),
        ("active_weeks", "<", 10, "active in fewer than 10 of the last 52 weeks"),
        # Columns outside the defaults: by their feature family, else by name.
        ("orders_30d", ">=", 2, "2 or more orders in the last 30 days"),
        ("days_since_email_open", "<", 7, "last email open less than 7 days ago"),
        ("search_count", "<", 1, "no search events"),
        ("category_share_home", ">=", 0.25, "25% or more of spend on home"),
        (
            "order_trend_90d",
            "<",
            -0.5,
            "order trend below -0.5 (last 90 days against the 90 before, -1 stopped, +1 new)",
        ),
        ("r_score", ">=", 4, "r score of 4 or more"),
    ],
)
def test_conditions_read_in_plain_words_and_units(feature, op, value, text):
    assert _condition_text(feature, op, value) == text


@pytest.mark.parametrize("op", [">=", "<"])
def test_every_default_feature_reads_without_column_names(op):
    for feature in DEFAULT_FEATURES:
        text = _condition_text(feature, op, 2.5)
        assert "_" not in text and ("2.5" in text or "250%" in text), text


def test_predict_takes_the_most_precise_matching_rule_and_minus_one_for_none(planted):
    frame, segments = planted
    rules = SegmentRules(FEATURES).fit(frame, segments)
    predicted = rules.predict(frame)
    assert predicted.dtype == np.int32
    assert rules.fidelity_ == (predicted == segments).mean()
    # Rules: 1 = recent and 3+ orders; 0 = not recent. Recent with 2 orders matches neither.
    new = pd.DataFrame({"orders_90d": [3, 2, 8, 5], "recency_days": [29.9, 1.0, 30.0, 0.0], "spend_90d": [1.0] * 4})
    assert rules.predict(new).tolist() == [1, -1, 0, 1]
    # Segment 0 widened to everyone, less precise than segment 1: the overlap goes to 1.
    document = rules.to_dict()
    document["report_"][0].update(conditions=[], precision=0.9)
    assert SegmentRules.from_dict(document).predict(new).tolist() == [1, 0, 0, 1]


def test_missing_values_are_filled_by_meaning(planted):
    frame, segments = planted
    with_gaps = frame.astype({"orders_90d": "float64"})
    # Customers who never bought (no recency) are outside segment 1, as planted.
    with_gaps.loc[np.flatnonzero(segments == 0)[:20], "recency_days"] = np.nan
    with_gaps.loc[::7, "spend_90d"] = np.nan
    rules = SegmentRules(FEATURES).fit(with_gaps, segments)
    # Never bought = as long ago as anyone: a missing recency fills with the sample maximum.
    assert rules.fill_[1] == pytest.approx(with_gaps["recency_days"].max())
    assert rules.describe()[1]["recall"] == rules.describe()[1]["precision"] == 1.0
    for entry in rules.describe():
        caught = _by_hand(with_gaps, rules.fill_, rules.columns_, entry["conditions"])
        assert entry["precision"] == (caught & (segments == entry["segment"])).sum() / caught.sum()
    new = pd.DataFrame({"orders_90d": [6.0], "recency_days": [np.nan], "spend_90d": [np.nan]})
    assert rules.predict(new).tolist() == [0]


def test_round_trip_through_json_keeps_rules_and_predictions(four_segments):
    frame, segments = four_segments
    rules = SegmentRules(FEATURES, max_depth=2).fit(frame, segments)
    loaded = SegmentRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    np.testing.assert_array_equal(loaded.predict(frame), rules.predict(frame))
    assert loaded.describe() == rules.describe() and loaded.fidelity_ == rules.fidelity_
    assert all(len(entry["conditions"]) <= 2 for entry in loaded.describe())


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
    for depth in (0, 4):
        with pytest.raises(UsageError, match="rules_depth must be 1 to 3 conditions"):
            SegmentRules(FEATURES, max_depth=depth).fit(frame, segments)
    rules = SegmentRules(FEATURES).fit(frame, segments)
    with pytest.raises(UsageError, match="lacks the rule columns"):
        rules.predict(frame.drop(columns="spend_90d"))
