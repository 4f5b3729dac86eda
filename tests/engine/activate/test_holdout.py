"""Holdout assignment (deterministic, partition-free, stratified in expectation) and the balance
between treated and control from per-partition sums."""

import itertools

import numpy as np
import pandas as pd
import pyarrow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.activate._holdout import (
    IMBALANCED,
    assign_holdout,
    balance_sums,
    balance_table,
    control_share_draws,
    imbalanced,
)
from engine.exceptions import UsageError


def _hex_keys(n: int, seed: int) -> list[str]:
    octets = np.random.default_rng(seed).integers(0, 256, size=(n, 16), dtype=np.uint8)
    return [row.tobytes().hex() for row in octets]


def test_a_draw_is_fixed_by_campaign_salt_and_key():
    # Pinned: a change of hash, key derivation or bit order would move every running campaign's
    # control group, so it must fail here first.
    draws = control_share_draws(["00112233445566778899aabbccddeeff", "k0123456789abcdef"], "spring-2027", "s1")
    assert draws.dtype == np.float64
    assert draws.tolist() == [0.7404828870557778, 0.9358720029757694]


def test_draws_are_the_same_from_every_container():
    keys = _hex_keys(50, seed=1)
    expected = control_share_draws(keys, "c", "s")
    for container in (np.array(keys), pd.Series(keys), pd.Series(keys, dtype="string[pyarrow]"), pyarrow.array(keys)):
        np.testing.assert_array_equal(control_share_draws(container, "c", "s"), expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60, unique=True),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    order_seed=st.integers(0, 2**32 - 1),
)
def test_draws_do_not_depend_on_partitioning_or_order(keys, cuts, order_seed):
    whole = control_share_draws(keys, "campaign", "salt")
    assert ((whole >= 0) & (whole < 1)).all()
    np.testing.assert_array_equal(control_share_draws(keys, "campaign", "salt"), whole)
    chunks = np.split(np.array(keys, dtype=object), sorted(min(cut, len(keys)) for cut in cuts))
    split = np.concatenate([control_share_draws(chunk, "campaign", "salt") for chunk in chunks])
    np.testing.assert_array_equal(split, whole)
    order = np.random.default_rng(order_seed).permutation(len(keys))
    np.testing.assert_array_equal(control_share_draws([keys[i] for i in order], "campaign", "salt"), whole[order])


@pytest.mark.parametrize(
    ("campaign", "salt"), [("summer", "s1"), ("spring", "s2"), ("springs", "1"), ("sprin", "gs1")]
)
def test_another_campaign_or_salt_draws_independently(campaign, salt):
    keys = _hex_keys(20_000, seed=2)
    base = assign_holdout(keys, np.zeros(len(keys)), "spring", "s1", 0.5)
    other = assign_holdout(keys, np.zeros(len(keys)), campaign, salt, 0.5)
    # Independent halves agree on half the customers, give or take 0.35 points (one sd).
    assert 0.48 < (base == other).mean() < 0.52


def test_every_stratum_gets_its_share_without_a_gather():
    n, share = 100_000, 0.1
    keys = _hex_keys(n, seed=3)
    # Unequal strata, the smallest of 8,000: 1 point is three sd of its control share at 10%.
    sizes = np.array([0.22, 0.18, 0.14, 0.11, 0.10, 0.09, 0.08, 0.08])
    strata = np.random.default_rng(4).choice(len(sizes), size=n, p=sizes)
    control = assign_holdout(keys, strata, "spring", "s1", share)
    assert control.dtype == bool
    assert abs(control.mean() - share) < 0.003
    by_stratum = pd.Series(control).groupby(strata).mean()
    assert len(by_stratum) == len(sizes)
    assert (by_stratum - share).abs().max() < 0.01


def test_the_assignment_is_the_draw_below_the_share():
    keys = _hex_keys(1_000, seed=5)
    draws = control_share_draws(keys, "c", "s")
    for share in (0.0, 0.25, 0.999):
        np.testing.assert_array_equal(assign_holdout(keys, keys, "c", "s", share), draws < share)
    assert not assign_holdout(keys, keys, "c", "s", 0).any()


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5, float("nan"), True, "0.1", None])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(UsageError, match="control share"):
        assign_holdout(["a", "b"], [0, 1], "c", "s", share)


def test_strata_and_keys_of_different_lengths_or_missing_keys_are_refused():
    with pytest.raises(UsageError, match="3 customer keys but 2 strata"):
        assign_holdout(["a", "b", "c"], [0, 1], "c", "s", 0.1)
    with pytest.raises(UsageError, match="non-text key"):
        control_share_draws(pd.Series(["a", None]), "c", "s")


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    control = rng.random(n) < 0.3
    frame = pd.DataFrame(
        {
            "spend": rng.gamma(2.0, 50.0, n),
            "visits": rng.poisson(4, n).astype("float64"),
            # Control customers buy far more often: an imbalance the table must show.
            "skewed": rng.normal(0, 1, n) + 1.5 * control,
            "flag": np.ones(n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "spend"] = np.nan
    return frame, control


def test_balance_adds_up_over_partitions_and_matches_a_direct_computation():
    frame, control = _frame(5_000, seed=6)
    columns = ["spend", "visits", "skewed", "flag"]
    whole = balance_table([balance_sums(frame, control, columns)])
    cuts = [0, 700, 701, 3_000, 5_000]
    parts = [balance_sums(frame.iloc[a:b], control[a:b], columns) for a, b in itertools.pairwise(cuts)]
    split = balance_table(parts)
    assert split["column"].tolist() == columns
    numeric = ["mean_treated", "mean_control", "standardised_difference"]
    assert np.allclose(split[numeric].to_numpy(), whole[numeric].to_numpy())
    assert (split[["treated", "control"]].to_numpy() == whole[["treated", "control"]].to_numpy()).all()

    treated, held = frame[~control], frame[control]
    expected = (treated.mean() - held.mean()) / np.sqrt((treated.var() + held.var()) / 2)
    expected["flag"] = 0.0  # constant in both groups
    assert np.allclose(split["standardised_difference"], expected[columns].to_numpy())
    assert split["treated"].tolist() == treated[columns].count().tolist()
    assert split["control"].tolist() == held[columns].count().tolist()
    assert np.allclose(split["mean_control"], held[columns].mean().to_numpy())
    assert imbalanced(split) == ["skewed"]
    assert split.set_index("column").loc["skewed", "standardised_difference"] < -IMBALANCED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=4, max_size=80
    ),
    flags=st.lists(st.booleans(), min_size=80, max_size=80),
    cut=st.integers(0, 80),
)
def test_balance_over_any_split_equals_the_whole(values, flags, cut):
    frame = pd.DataFrame({"x": values, "y": values[::-1]})
    control = np.array(flags[: len(values)])
    whole = balance_table([balance_sums(frame, control, ["x", "y"])])
    parts = [balance_sums(frame.iloc[:cut], control[:cut], ["x", "y"]),
             balance_sums(frame.iloc[cut:], control[cut:], ["x", "y"])]  # fmt: skip
    split = balance_table(parts)
    pd.testing.assert_frame_equal(split[["column", "treated", "control"]], whole[["column", "treated", "control"]])
    numeric = ["mean_treated", "mean_control", "standardised_difference"]
    assert np.allclose(split[numeric].to_numpy(), whole[numeric].to_numpy(), rtol=1e-6, atol=1e-9, equal_nan=True)


def test_groups_that_cannot_be_compared_are_not_flagged():
    frame = pd.DataFrame({"same": [2.1] * 6, "apart": [1.0, 1.0, 1.0, 5.0, 5.0, 5.0], "varies": [1.0] * 5 + [3.0]})
    control = np.array([False, False, False, True, True, True])
    table = balance_table([balance_sums(frame, control, ["same", "apart", "varies"])]).set_index("column")
    # Constant 2.1 in both groups (sums of squares round): balanced, not rounding over rounding.
    assert table.loc["same", "standardised_difference"] == 0
    # Constant in each group but not the same: as far apart as groups can be.
    assert table.loc["apart", "standardised_difference"] == -np.inf
    only_control = balance_table([balance_sums(frame, np.ones(6, dtype=bool), ["same"])])
    assert only_control["treated"].tolist() == [0]
    assert np.isnan(only_control["standardised_difference"]).all()
    assert imbalanced(table.reset_index()) == ["apart", "varies"]
