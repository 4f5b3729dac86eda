"""The RFM grid's names, and outcome separation against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from engine.exceptions import UsageError
from engine.segments._baseline import (
    NO_PURCHASES, RFM_CUTS, UNSCORED_CELL, outcome_separation, rfm_cells, rfm_grid, rfm_groups,
)  # fmt: skip


def _scores(rows):
    return pd.DataFrame(rows, columns=["r_score", "f_score", "m_score"], dtype="float64")


@pytest.mark.parametrize(
    ("scores", "name"),
    [
        ((5, 5, 5), "Champions"),
        ((5, 3, 4), "Champions"),  # FM = (3 + 4) / 2 rounded half up = 4
        ((1, 1, 1), "Lost"),
        ((2, 1, 2), "Hibernating"),
        ((5, 1, 1), "New customers"),
        ((4, 1, 1), "Promising"),
        ((4, 2, 3), "Potential loyalists"),
        ((3, 5, 4), "Loyal customers"),
        ((3, 3, 3), "Need attention"),
        ((3, 1, 2), "About to sleep"),
        ((2, 3, 4), "At risk"),
        ((1, 5, 5), "Cannot lose them"),
        ((0, 0, 0), NO_PURCHASES),
        ((np.nan, np.nan, np.nan), NO_PURCHASES),
    ],
)
def test_grid_names(scores, name):
    assert rfm_grid(_scores([scores])).tolist() == [name]


def test_every_score_combination_gets_one_of_eleven_names():
    combos = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    frame = _scores(combos).set_index(pd.RangeIndex(100, 225))
    names = rfm_grid(frame)
    assert names.index.equals(frame.index) and names.name == "rfm_segment"
    assert names.nunique() == 11 and NO_PURCHASES not in set(names)


def test_grid_needs_the_score_columns():
    with pytest.raises(UsageError, match="r_score"):
        rfm_grid(pd.DataFrame({"f_score": [1], "m_score": [1]}))


def test_separation_by_hand():
    outcomes = pd.DataFrame({"orders_next": [0, 1, 1, 3], "spend_next": [0.0, 2.0, 4.0, 6.0]})
    result = outcome_separation([1, 1, 2, 2], outcomes)
    # Mean 3; total SS 9 + 1 + 1 + 9 = 20; group means 1 and 5, between SS 2 * 4 + 2 * 4 = 16.
    assert result["spend_eta_squared"] == pytest.approx(16 / 20)
    logs = np.log1p([0.0, 2.0, 4.0, 6.0])
    between = 2 * (logs[:2].mean() - logs.mean()) ** 2 + 2 * (logs[2:].mean() - logs.mean()) ** 2
    assert result["log_spend_eta_squared"] == pytest.approx(between / ((logs - logs.mean()) ** 2).sum())
    assert result["churn_rate"] == 0.25 and result["purchase_rate"] == 0.75
    assert result["churn_rate_range"] == 0.5
    # Groups churn at 0.5 and 0, overall 0.25: each is 0.25 away.
    assert result["churn_rate_std"] == pytest.approx(0.25)
    first, second = result["groups"]
    assert first == {
        "group": 1, "customers": 2, "share": 0.5, "purchase_rate": 0.5, "churn_rate": 0.5,
        "mean_spend": 1.0, "mean_log_spend": pytest.approx(math.log(3) / 2),
    }  # fmt: skip
    assert second["churn_rate"] == 0.0 and second["mean_spend"] == 5.0


def test_log_spend_keeps_the_sign_of_net_returns():
    e = math.e - 1
    outcomes = pd.DataFrame({"orders_next": [1, 1, 0, 0, 0], "spend_next": [e, e, -e, -e, -e]})
    result = outcome_separation(np.array(["b", "b", "a", "a", "a"]), outcomes)
    assert result["spend_eta_squared"] == pytest.approx(1) and result["log_spend_eta_squared"] == pytest.approx(1)
    assert [g["group"] for g in result["groups"]] == ["a", "b"]
    assert [g["mean_log_spend"] for g in result["groups"]] == pytest.approx([-1, 1])
    assert result["churn_rate_range"] == 1.0 and result["churn_rate_std"] == pytest.approx(math.sqrt(0.6 * 0.4))


def test_spend_that_does_not_vary_explains_nothing_to_explain():
    outcomes = pd.DataFrame({"orders_next": [0, 0, 0], "spend_next": [0.0, 0.0, 0.0]})
    result = outcome_separation([0, 1, 1], outcomes)
    assert result["spend_eta_squared"] is None and result["churn_rate_range"] == 0.0


def test_misaligned_or_unfilled_outcomes_are_refused():
    outcomes = pd.DataFrame({"orders_next": [0, 1], "spend_next": [0.0, np.nan]})
    with pytest.raises(UsageError, match="row for row"):
        outcome_separation([0, 1, 1], outcomes)
    with pytest.raises(UsageError, match="fill customers without activity"):
        outcome_separation([0, 1], outcomes)
    with pytest.raises(UsageError, match="lack spend_next"):
        outcome_separation([0, 1], outcomes[["orders_next"]])


def test_rfm_cells_number_the_score_cube():
    cells = rfm_cells(_scores([(1, 1, 1), (5, 5, 5), (2, 3, 4), (0, 0, 0), (np.nan, 1, 1)]))
    assert cells.tolist() == [0, 124, 25 + 10 + 3, UNSCORED_CELL, UNSCORED_CELL]


@pytest.mark.parametrize("cut", list(RFM_CUTS))
@pytest.mark.parametrize("groups", [2, 3, 5, 12, 40])
def test_the_rfm_grid_cut_into_any_number_of_groups(groups, cut):
    rng = np.random.default_rng(groups)
    cells = np.concatenate([rng.integers(0, 125, 5_000), np.full(300, UNSCORED_CELL)])
    lookup = np.asarray(rfm_groups(cells, groups, cut))
    # The score sum has 13 levels: it makes as many groups as it can, never more than asked.
    made = len(np.unique(lookup[cells]))
    assert made == groups if cut != "score sum" else 2 <= made <= min(groups, 14)
    # Customers without scores are a group of their own; every cell has a group, occupied or not.
    assert (lookup[cells] == lookup[UNSCORED_CELL]).sum() == 300 and lookup.shape == (UNSCORED_CELL + 1,)
    assert rfm_groups(cells, groups, cut) == lookup.tolist()  # deterministic


def test_the_score_sum_cut_bands_the_rfm_score():
    cube = np.arange(125)
    total = cube // 25 + cube // 5 % 5 + cube % 5 + 3
    lookup = np.asarray(rfm_groups(cube, 3, "score sum"))[:125]
    # Bands of the score, lowest first, each a run of totals.
    assert (np.diff(lookup[np.argsort(total, kind="stable")]) >= 0).all() and set(lookup) == {0, 1, 2}
    with pytest.raises(UsageError, match="unknown RFM cut"):
        rfm_groups(cube, 3, "nope")


def test_without_unscored_customers_every_group_is_cells():
    cells = np.random.default_rng(0).integers(0, 125, 2_000)
    lookup = np.asarray(rfm_groups(cells, 4))
    assert len(np.unique(lookup[cells])) == 4


def test_grid_groups_join_neighbouring_scores():
    """Two well-apart blocks of the cube, each its own group when cut in two."""
    low = [25 * r + 5 * f + m for r in range(2) for f in range(2) for m in range(2)]
    high = [124 - cell for cell in low]
    lookup = np.asarray(rfm_groups(np.repeat(low + high, 10), 2))
    assert len(set(lookup[low])) == len(set(lookup[high])) == 1 and lookup[low[0]] != lookup[high[0]]


def test_cut_linkage_agrees_with_scipy():
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import adjusted_rand_score

    from engine.segments._hierarchy import cut_linkage, ward_linkage

    points = np.random.default_rng(3).normal(size=(60, 3))
    for clusters in (1, 2, 5, 17, 60):
        ours = cut_linkage(ward_linkage(points, np.ones(60)), 60, clusters)
        theirs = fcluster(linkage(points, "ward"), clusters, criterion="maxclust")
        assert len(np.unique(ours)) == clusters and adjusted_rand_score(ours, theirs) == 1.0
