"""Profiles from per-partition sums, and behavioural names."""

import numpy as np
import pandas as pd
import pytest

from engine.segments import name_segments, partition_sums, profile_table


def test_profiles_add_up_over_partitions_and_compare_with_the_population():
    frame = pd.DataFrame({"monetary_total": [10.0, 30.0, 100.0, np.nan], "frequency": [1.0, 3.0, 10.0, 0.0]})
    segment = np.array([0, 0, 1, 1])
    whole = profile_table([partition_sums(frame, segment, ["monetary_total", "frequency"], 2)], ["monetary_total", "frequency"])
    halves = [partition_sums(frame.iloc[:2], segment[:2], ["monetary_total", "frequency"], 2),
              partition_sums(frame.iloc[2:], segment[2:], ["monetary_total", "frequency"], 2)]  # fmt: skip
    split = profile_table(halves, ["monetary_total", "frequency"])
    pd.testing.assert_frame_equal(whole, split)
    assert whole["customers"].tolist() == [2, 2]
    assert whole["share_revenue"].tolist() == pytest.approx([40 / 140, 100 / 140])
    # Missing values are left out of means: segment 1's money is its one present value.
    assert whole["mean_monetary_total"].tolist() == pytest.approx([20, 100])
    values = np.array([10.0, 30.0, 100.0])
    assert whole.loc[1, "z_monetary_total"] == pytest.approx((100 - values.mean()) / values.std())


def _profile(zs):
    table = pd.DataFrame({"segment": range(len(zs))})
    for feature in sorted({f for z in zs for f in z}):
        table[f"z_{feature}"] = [z.get(feature, 0.0) for z in zs]
    return table


def test_names_follow_behaviour_and_are_unique():
    zs = [
        {"monetary_total": 1.5, "frequency": 1.2, "recency_days": -0.8},
        {"recency_days": 1.4, "frequency": -0.9, "active_weeks": -1.0},
        {"tenure_days": -1.3, "frequency": -0.2},
        {"discount_share": 1.1, "frequency": 0.1},
        {"frequency": 0.2},
        {"frequency": 0.4},
    ]
    names = name_segments(_profile(zs))
    assert [n["name"] for n in names[:4]] == ["High-value loyal", "Dormant", "New customers", "Discount-driven buyers"]
    assert names[0]["because"] == {"monetary_total": 1.5, "frequency": 1.2}
    assert len({n["name"] for n in names}) == len(names)
    assert names[4]["name"].startswith("Steady regulars") and names[5]["name"].startswith("Steady regulars")
    assert name_segments(_profile(zs)) == names


def test_two_segments_wanting_one_name_go_to_the_stronger():
    zs = [{"monetary_total": 0.6, "frequency": 0.4}, {"monetary_total": 2.0, "frequency": 1.5}]
    names = name_segments(_profile(zs))
    assert names[1]["name"] == "High-value loyal" and names[0]["name"] != "High-value loyal"


def test_no_demographic_words_in_any_name():
    from engine.segments import NAME_RULES

    words = " ".join(name for name, _, _ in NAME_RULES).lower()
    for demographic in ("male", "female", "women", "men", "young", "old", "senior", "age", "gender"):
        assert demographic not in words.split()
