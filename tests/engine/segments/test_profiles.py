"""Profiles from per-partition sums; names that are true of them, and plain sentences.

The property test draws random profiles (any feature missing, NaN, with or without medians,
segments alike) and checks every promise of a name: each word holds on its segment's row, no
two words contradict, at most four words, unique, no digit or feature code.
"""

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.segments import NAME_WORDS, name_segments, partition_sums, profile_table
from engine.segments._profiles import _ago, _every, _money, _rank_word, _trend_phrase


def test_profiles_add_up_over_partitions_and_compare_with_the_population():
    frame = pd.DataFrame({"monetary_total": [10.0, 30.0, 100.0, np.nan], "frequency": [1.0, 3.0, 10.0, 0.0]})
    segment = np.array([0, 0, 1, 1])
    columns = ["monetary_total", "frequency"]
    whole = profile_table([partition_sums(frame, segment, columns, 2)], columns)
    halves = [partition_sums(frame.iloc[:2], segment[:2], columns, 2),
              partition_sums(frame.iloc[2:], segment[2:], columns, 2)]  # fmt: skip
    split = profile_table(halves, columns)
    pd.testing.assert_frame_equal(whole, split)
    assert whole["customers"].tolist() == [2, 2]
    assert whole["share_revenue"].tolist() == pytest.approx([40 / 140, 100 / 140])
    # Missing values are left out of means: segment 1's money is its one present value.
    assert whole["mean_monetary_total"].tolist() == pytest.approx([20, 100])
    values = np.array([10.0, 30.0, 100.0])
    assert whole.loc[1, "z_monetary_total"] == pytest.approx((100 - values.mean()) / values.std())


def _profile(*segments, medians=True):
    """A profile as profile_table makes it: each segment maps a feature to (z, typical value),
    and may give its ``customers``. The typical value is the median and the mean, or only the
    mean with ``medians=False``."""
    table = pd.DataFrame({"segment": range(len(segments))})
    table["customers"] = [segment.get("customers", 100) for segment in segments]
    features = sorted({feature for segment in segments for feature in segment if feature != "customers"})
    for feature in features:
        z, typical = zip(*(segment.get(feature, (np.nan, np.nan)) for segment in segments))
        table[f"mean_{feature}"], table[f"z_{feature}"] = typical, z
        if medians:
            table[f"median_{feature}"] = typical
    return table


LOYAL_BUT_SPENDING_LESS = {
    "frequency": (1.5, 12), "recency_days": (-0.8, 10), "gap_median_days": (-0.4, 21), "tenure_days": (0.5, 700),
    "monetary_total": (1.2, 2400), "spend_365d": (0.9, 418), "spend_trend_90d": (-0.6, -0.25),
    "active_weeks": (1.0, 30),
}  # fmt: skip
LAPSED_FEW_BACK = {
    "frequency": (-0.2, 3), "recency_days": (1.4, 500), "gap_median_days": (0.3, 40), "tenure_days": (0.8, 900),
    "monetary_total": (-0.2, 150), "spend_365d": (-0.5, 0), "spend_trend_90d": (0.9, 0.8), "active_weeks": (-0.6, 2),
}  # fmt: skip


def test_a_loyal_segment_spending_less_is_called_both_and_told_in_plain_units():
    named = name_segments(_profile(LOYAL_BUT_SPENDING_LESS, LAPSED_FEW_BACK))
    assert named[0] == {
        "segment": 0,
        "name": "Declining loyal high-spenders",
        "because": {"spend_trend_90d": -0.6, "frequency": 1.5, "recency_days": -0.8, "monetary_total": 1.2},
        # (1 - 0.25) / (1 + 0.25) = 0.6: the last 90 days' spend is 40% below the 90 before.
        "sentence": "Buys about every 3 weeks, last bought 10 days ago, spent 420 in the last year, "
        "spending 40% less in the last 3 months than in the 3 months before.",
    }


def test_a_lapsed_segment_is_never_growing_and_its_trend_is_not_told():
    # The median trend is over the few who bought in the last 6 months: up, but not the segment.
    named = name_segments(_profile(LOYAL_BUT_SPENDING_LESS, LAPSED_FEW_BACK))[1]
    assert named["name"] == "Lapsed buyers"
    assert named["sentence"] == "Bought about every 6 weeks, last bought 16 months ago, spent nothing in the last year."


def test_means_stand_in_for_medians_and_missing_figures_are_left_out():
    without_medians = name_segments(_profile(LOYAL_BUT_SPENDING_LESS, LAPSED_FEW_BACK, medians=False))
    assert [n["name"] for n in without_medians] == ["Declining loyal high-spenders", "Lapsed buyers"]
    # Only z-scores: no word that needs a typical value, no clause, and still unique names.
    only_z = _profile(
        {"monetary_total": (1.0, np.nan)}, {"monetary_total": (-1.0, np.nan)}, {"recency_days": (2, np.nan)}
    )
    named = name_segments(only_z)
    assert [n["name"] for n in named] == ["High-spenders", "Low-spenders", "Customers"]
    assert [n["because"] for n in named] == [{"monetary_total": 1.0}, {"monetary_total": -1.0}, {}]
    assert {n["sentence"] for n in named} == {"Its purchase and activity figures are missing."}
    # No frequency: the cadence is told from the gaps, without the order count.
    no_orders = {k: v for k, v in LOYAL_BUT_SPENDING_LESS.items() if k not in ("frequency", "spend_trend_90d")}
    named = name_segments(_profile(no_orders, LAPSED_FEW_BACK))[0]
    assert named["name"] == "Active high-spenders"
    assert named["sentence"] == "Buys about every 3 weeks, last bought 10 days ago, spent 420 in the last year."


def test_a_segment_that_never_bought_says_so():
    prospects = {"frequency": (-1.0, 0), "days_since_last_event": (-0.3, 5), "email_click_count": (1.2, 6),
                 "recency_days": (np.nan, np.nan), "active_weeks": (0.2, 4)}  # fmt: skip
    named = name_segments(_profile(prospects, LOYAL_BUT_SPENDING_LESS))[0]
    assert named["name"] == "Email-engaged prospects"
    assert named["sentence"] == "Has not bought yet, last active 5 days ago, clicked 6 emails."


def test_namesakes_are_told_apart_by_a_true_word_then_by_size():
    lapsed = {**LAPSED_FEW_BACK, "customers": 500, "discount_share": (1.5, 0.8)}
    also_emailed = {**lapsed, "customers": 300, "email_click_count": (1.0, 4)}
    named = name_segments(_profile(also_emailed, lapsed))
    # The larger keeps the name; the other adds a word true of it and not of the larger.
    assert [n["name"] for n in named] == [
        "Lapsed discount-driven email-engaged buyers",
        "Lapsed discount-driven buyers",
    ]
    assert named[0]["sentence"].endswith(", bought 80% of items on discount, clicked 4 emails.")
    # Two alike: the first takes the word, and the second, with no other, is ranked with the keeper.
    named = name_segments(_profile(also_emailed, lapsed, {**also_emailed, "customers": 100}))
    assert [n["name"] for n in named] == [
        "Lapsed discount-driven email-engaged buyers", "Most-common lapsed discount-driven buyers",
        "Second-most-common lapsed discount-driven buyers",
    ]  # fmt: skip
    lapsed = {**LAPSED_FEW_BACK, "customers": 500}
    named = name_segments(_profile({**lapsed, "customers": 200}, lapsed, {**lapsed, "customers": 900}))
    assert [n["name"] for n in named] == [
        "Third-most-common lapsed buyers", "Second-most-common lapsed buyers", "Most-common lapsed buyers",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("say", "value", "expected"),
    [
        (_ago, 0.4, "less than a day ago"), (_ago, 1.2, "a day ago"), (_ago, 20, "3 weeks ago"),
        (_ago, 120, "4 months ago"), (_ago, 800, "2 years ago"),
        (_every, 0.5, "more than once a day"), (_every, 1, "about every day"), (_every, 45, "about every 6 weeks"),
        (_money, 3.14159, "3.1"), (_money, 418.3, "420"), (_money, 12_345, "12,000"),
    ],
)  # fmt: skip
def test_days_and_money_in_plain_units(say, value, expected):
    assert say(value) == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (0.5, "spending about 3 times as much in the last month as in the month before"),
        (0.2, "spending 50% more in the last month than in the month before"),
        (0.01, "spending about the same in the last month as in the month before"),
        (-1.0, "no spending in the last month after some in the month before"),
        (1.0, "spending in the last month after none in the month before"),
    ],
)
def test_the_trend_in_plain_units(change, expected):
    assert _trend_phrase(change, "month") == expected


def test_no_demographic_words_in_the_vocabulary():
    words = {part for word in NAME_WORDS for part in word.word.split("-")}
    assert not words & {"male", "female", "women", "men", "young", "old", "senior", "age", "gender"}


# Random profiles: plausible typical values per feature, in its units.
_TYPICAL = {
    "recency_days": st.one_of(st.floats(0, 100), st.floats(0, 900)),
    "frequency": st.sampled_from([0.0, 1.0, 1.5, 2.0, 4.0, 12.0, 60.0]), "monetary_total": st.floats(-50, 5000),
    "tenure_days": st.one_of(st.floats(0, 200), st.floats(0, 1500)), "active_weeks": st.floats(0, 52),
    "gap_median_days": st.floats(0.1, 400), "spend_365d": st.floats(0, 5000), "spend_30d": st.floats(0, 500),
    "spend_trend_90d": st.floats(-1, 1), "discount_share": st.floats(0, 1), "return_rate": st.floats(0, 1),
    "email_click_count": st.floats(0, 30), "support_ticket_count": st.floats(0, 5), "view_count": st.floats(0, 200),
    "distinct_categories": st.floats(0, 10), "days_since_last_event": st.floats(0, 900),
}  # fmt: skip


def _sometimes_missing(values):
    """About one value in five NaN."""
    return st.tuples(st.integers(1, 5), values).map(lambda drawn: np.nan if drawn[0] == 5 else drawn[1])


_Z = _sometimes_missing(st.floats(-3, 3))


@st.composite
def _profiles(draw):
    features = [feature for feature in _TYPICAL if draw(st.booleans()) or feature in ("frequency", "recency_days")]
    segments = []
    for _ in range(draw(st.integers(2, 8))):
        segment = {"customers": draw(st.integers(1, 5))}
        for feature in features:
            segment[feature] = (draw(_Z), draw(_sometimes_missing(_TYPICAL[feature])))
        segments.append(segment)
    # Some segments alike, so that names collide and must be told apart.
    for source, target in draw(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=3)):
        if source < len(segments) and target < len(segments):
            segments[target] = {**segments[source], "customers": segments[target]["customers"]}
    return _profile(*segments, medians=draw(st.booleans()))


def _typical(row, feature):
    median = row.get(f"median_{feature}", np.nan)
    return median if not math.isnan(median) else row.get(f"mean_{feature}", np.nan)


_VOCABULARY = {word.word: word for word in NAME_WORDS}
_CONTRADICTIONS = [
    {"growing", "lapsed"}, {"growing", "dormant"}, {"growing", "lapsing"}, {"growing", "declining"},
    {"loyal", "lapsed"}, {"loyal", "dormant"}, {"loyal", "one-time"}, {"loyal", "occasional"},
    {"new", "lapsed"}, {"frequent", "one-time"}, {"prospects", "loyal"}, {"prospects", "one-time"},
]  # fmt: skip
_RANKS = {_rank_word(rank).word: rank for rank in range(1, 9)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_profiles())
def test_every_word_of_every_name_is_true_and_names_are_plain_and_unique(profile):
    named = name_segments(profile)
    assert named == name_segments(profile)
    assert [n["segment"] for n in named] == list(range(len(profile)))
    assert len({n["name"] for n in named}) == len(named)
    features = {column.split("_", 1)[1] for column in profile.columns if column.startswith(("z_", "mean_"))}
    namesakes = {}
    for n, row in zip(named, profile.to_dict("records")):
        assert set(n) == {"segment", "name", "because", "sentence"}
        words = n["name"].lower().split()
        assert 1 <= len(words) <= 4 and not re.search(r"[\d_]", n["name"])
        assert not any(set(pair) <= set(words) for pair in _CONTRADICTIONS)
        ranks = [word for word in words if word in _RANKS]
        vocabulary = [_VOCABULARY[word] for word in words if word not in ranks]
        assert all(word.holds(row) for word in vocabulary), n["name"]
        assert vocabulary[-1].slot == "noun" and len({word.slot for word in vocabulary}) == len(vocabulary)
        assert not any(a.word in b.excludes for a in vocabulary for b in vocabulary)
        # What the words promise, in the profile's own terms.
        trend, recency = _typical(row, "spend_trend_90d"), _typical(row, "recency_days")
        assert "growing" not in words or trend > 0
        assert "declining" not in words or trend < 0
        assert "loyal" not in words or (row["z_frequency"] > 0 and recency < 180)
        assert "lapsed" not in words or recency >= 180
        assert "new" not in words or _typical(row, "tenure_days") < 365
        assert "prospects" not in words or _typical(row, "frequency") < 1
        assert all(math.isfinite(z) and f"z_{feature}" in row for feature, z in n["because"].items())
        sentence = n["sentence"]
        assert sentence[0].isupper() and sentence.endswith(".") and "_" not in sentence
        assert not set(re.findall(r"[a-z]+", sentence.lower())) & (features | {"z", "median", "mean"})
        if ranks:
            namesakes.setdefault(tuple(words[1:]), []).append((_RANKS[words[0]], row["customers"]))
    # Ranks count customers among the segments no word told apart: 1, 2, ... from the most.
    for ranked in namesakes.values():
        ranked.sort()
        assert [rank for rank, _ in ranked] == list(range(1, len(ranked) + 1))
        assert [customers for _, customers in ranked] == sorted((customers for _, customers in ranked), reverse=True)
