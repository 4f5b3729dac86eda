"""The classic RFM grid, and how well any grouping of customers separates what they did next.

The grid is what most teams use before clustering: a lookup from RFM scores to a name. It is
the baseline a segmentation has to beat, and :func:`outcome_separation` is the yardstick: of
the differences in next-period spend and churn between customers, how much does knowing the
group explain? More groups explain more by construction, so a fair comparison holds the
number of groups equal: :func:`rfm_groups` gives the RFM grid with any number of groups,
cut in each of the standard ways (:data:`RFM_CUTS`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import UsageError
from ._hierarchy import cut_linkage, ward_linkage

__all__ = ["NO_PURCHASES", "RFM_CUTS", "RFM_GRID", "UNSCORED_CELL", "outcome_separation", "rfm_cells", "rfm_grid", "rfm_groups"]

NO_PURCHASES = "No purchases"
_CHAMPIONS, _LOYAL, _POTENTIAL, _NEW = "Champions", "Loyal customers", "Potential loyalists", "New customers"
_PROMISING, _ATTENTION, _SLEEP, _RISK = "Promising", "Need attention", "About to sleep", "At risk"
_CANNOT_LOSE, _HIBERNATING, _LOST = "Cannot lose them", "Hibernating", "Lost"

# The recency x frequency-monetary grid in common use (10 names), with its low-low corner
# split so that the least recent customers are "Lost" rather than merely "Hibernating".
# Rows: r_score 5 (most recent) down to 1; columns: the frequency-monetary score 1 to 5.
RFM_GRID = (
    (_NEW, _POTENTIAL, _POTENTIAL, _CHAMPIONS, _CHAMPIONS),  # R = 5
    (_PROMISING, _POTENTIAL, _POTENTIAL, _LOYAL, _LOYAL),  # R = 4
    (_SLEEP, _SLEEP, _ATTENTION, _LOYAL, _LOYAL),  # R = 3
    (_HIBERNATING, _HIBERNATING, _RISK, _RISK, _CANNOT_LOSE),  # R = 2
    (_LOST, _LOST, _RISK, _RISK, _CANNOT_LOSE),  # R = 1
)
_SCORES = ("r_score", "f_score", "m_score")


def rfm_grid(frame) -> pd.Series:
    r"""The classic RFM segment name of each customer, from the feature table's scores.

    ``r_score``, ``f_score`` and ``m_score`` are 1-5 quintile scores, 5 the best (most
    recent, most orders, most spend) and 0 for customers without orders
    (``docs/features.md``). The frequency-monetary score FM is the mean of F and M rounded
    half up, and the name is read from this recency x FM grid:

    ====== ============== =================== =================== =============== ================
    R \ FM 1              2                   3                   4               5
    ====== ============== =================== =================== =============== ================
    5      New customers  Potential loyalists Potential loyalists Champions       Champions
    4      Promising      Potential loyalists Potential loyalists Loyal customers Loyal customers
    3      About to sleep About to sleep      Need attention      Loyal customers Loyal customers
    2      Hibernating    Hibernating         At risk             At risk         Cannot lose them
    1      Lost           Lost                At risk             At risk         Cannot lose them
    ====== ============== =================== =================== =============== ================

    Each of the 25 cells has one name, so every scored customer gets exactly one; a customer
    with a missing or 0 score (no purchase before as-of) is "No purchases".

    Parameters
    ----------
    frame : pandas.DataFrame
        Holds ``r_score``, ``f_score`` and ``m_score``.

    Returns
    -------
    pandas.Series of str, named ``rfm_segment``, with ``frame``'s index.
    """
    recency, frequency, monetary, scored = _scores(frame)
    r = np.where(scored, recency, 1).astype(np.int64)
    fm = np.where(scored, (frequency + monetary + 1) // 2, 1).astype(np.int64)
    names = np.asarray(RFM_GRID, dtype=object)[5 - r, fm - 1]
    return pd.Series(np.where(scored, names, NO_PURCHASES), index=frame.index, name="rfm_segment", dtype=object)


# Cells of the R x F x M score cube are 0..124; customers without a purchase have no scores.
UNSCORED_CELL = 125


def _scores(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    absent = [c for c in _SCORES if c not in frame.columns]
    if absent:
        raise UsageError(f"the RFM grid needs the feature columns {', '.join(absent)} (feature group rfm)")
    recency, frequency, monetary = (frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in _SCORES)
    scored = np.isin(recency, range(1, 6)) & np.isin(frequency, range(1, 6)) & np.isin(monetary, range(1, 6))
    return recency, frequency, monetary, scored


def rfm_cells(frame) -> np.ndarray:
    """Each customer's cell of the R x F x M score cube: ``25 (R-1) + 5 (F-1) + (M-1)``, or
    :data:`UNSCORED_CELL` without scores (no purchase before as-of). int16."""
    recency, frequency, monetary, scored = _scores(frame)
    cells = 25 * (recency - 1) + 5 * (frequency - 1) + (monetary - 1)
    return np.where(scored, cells, UNSCORED_CELL).astype(np.int16)


def _cell_scores() -> np.ndarray:
    """(R, F, M) of each cell of the score cube, 1-5."""
    cells = np.arange(UNSCORED_CELL)
    return np.column_stack([cells // 25, cells // 5 % 5, cells % 5]).astype(np.float64) + 1


def _ward_cut(points: np.ndarray, customers: np.ndarray, groups: int) -> np.ndarray:
    """Occupied cells merged by Ward's criterion on ``points``, weighted by their customers,
    until ``groups`` remain; an empty cell joins the group of the nearest occupied one."""
    occupied = np.flatnonzero(customers)
    group_of_occupied = cut_linkage(ward_linkage(points[occupied], customers[occupied]), len(occupied), groups)
    nearest = ((points[:, None, :] - points[None, occupied, :]) ** 2).sum(axis=2).argmin(axis=1)
    nearest[occupied] = np.arange(len(occupied))
    return group_of_occupied[nearest]


def _score_sum_cut(scores: np.ndarray, customers: np.ndarray, groups: int) -> np.ndarray:
    """R + F + M (3..15) cut into ``groups`` runs of about equal customers, lowest first."""
    total = scores.sum(axis=1).astype(np.int64)
    per_level = np.bincount(total, weights=customers, minlength=16)[3:16]
    share_below = (np.cumsum(per_level) - per_level) / per_level.sum()
    group_of_level = np.minimum((share_below * groups).astype(np.int64), groups - 1)
    return np.unique(group_of_level, return_inverse=True)[1].ravel()[total - 3]


# The standard ways to cut the score cube into a given number of groups. None reads what
# customers did next; which cuts best depends on the data, so the segments are measured
# against the best of them (engine.segments._backtest).
RFM_CUTS = {
    # Ward merges of the cells on their R, F and M scores.
    "ward R, F, M": lambda scores, customers, groups: _ward_cut(scores, customers, groups),
    # The same on the named grid's two axes: recency, and FM = (F + M) / 2 rounded half up.
    "ward R, FM": lambda scores, customers, groups: _ward_cut(
        np.column_stack([scores[:, 0], (scores[:, 1] + scores[:, 2] + 1) // 2]), customers, groups
    ),
    # The RFM score R + F + M, in bands of about equal customers.
    "score sum": _score_sum_cut,
}


def rfm_groups(cells, groups: int, cut: str = "ward R, F, M") -> list[int]:
    """The RFM grid with ``groups`` groups: a group id (0..groups-1) for each of the 126 cells.

    ``cut`` is one of :data:`RFM_CUTS`, fitted to how many of ``cells`` (customers' cells, from
    :func:`rfm_cells`) fall in each cell; unscored customers, when there are any, are a group of
    their own (the last), so the scored cells make ``groups - 1``. Reads nothing but scores,
    so, like the segments, it never sees what customers did next; the named grid is one fixed
    way to cut the same cube into eleven groups.
    """
    if cut not in RFM_CUTS:
        raise UsageError(f"unknown RFM cut {cut!r}: use one of {', '.join(RFM_CUTS)}")
    customers = np.bincount(np.asarray(cells), minlength=UNSCORED_CELL + 1).astype(np.float64)
    has_unscored = customers[UNSCORED_CELL] > 0
    lookup = np.zeros(UNSCORED_CELL + 1, dtype=np.int64)
    if customers[:UNSCORED_CELL].any():
        scored_groups = max(1, groups - int(has_unscored))
        lookup[:UNSCORED_CELL] = RFM_CUTS[cut](_cell_scores(), customers[:UNSCORED_CELL], scored_groups)
        lookup[UNSCORED_CELL] = lookup[:UNSCORED_CELL].max() + 1
    return lookup.tolist()


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """sign(v) x log1p(|v|): heavy-tailed spend on a scale where a few big spenders do not
    decide a comparison."""
    return np.sign(values) * np.log1p(np.abs(values))


def eta_squared(values: np.ndarray, codes: np.ndarray, sizes: np.ndarray, weights=None) -> float | None:
    """Between-group sum of squares over the total: the share of variance the grouping
    explains; None when ``values`` do not vary.

    ``sizes`` are the groups' customers, each counted ``weights`` times (a bootstrap draw's
    counts) when given, else once.
    """
    weights = np.ones_like(values) if weights is None else weights
    centred = values - (weights * values).sum() / sizes.sum()
    total = float((weights * centred**2).sum())
    if total == 0:
        return None
    present = sizes > 0
    group_sums = np.bincount(codes, weights=weights * centred, minlength=len(sizes))[present]
    return float((group_sums**2 / sizes[present]).sum() / total)


def outcome_separation(labels, outcomes: pd.DataFrame) -> dict:
    """How differently the groups of ``labels`` behaved in the outcome window.

    Parameters
    ----------
    labels : array-like of length n
        A group per customer (segment ids, or names such as :func:`rfm_grid` gives).
    outcomes : pandas.DataFrame of n rows
        ``orders_next`` and ``spend_next`` row for row with ``labels``, 0 for customers who
        did nothing (see :func:`engine.outcomes.align_outcomes`).

    Returns
    -------
    dict
        ``customers``; ``purchase_rate`` and ``churn_rate`` overall (share with an order in
        the window, and without); ``spend_eta_squared`` (share of the variance of spend_next
        the grouping explains: between-group over total sum of squares, None when spend does
        not vary) and ``log_spend_eta_squared`` (the same for sign(s) x log1p(|s|), which
        heavy-tailed spend needs, so a few big spenders do not decide it);
        ``churn_rate_range`` (max - min over groups) and ``churn_rate_std``
        (customer-weighted standard deviation of the groups' churn rates); and ``groups``, one
        dict per group in label order: ``group``, ``customers``, ``share``,
        ``purchase_rate``, ``churn_rate``, ``mean_spend``, ``mean_log_spend``.
    """
    labels = np.asarray(labels)
    missing = [c for c in ("orders_next", "spend_next") if c not in outcomes.columns]
    if missing:
        raise UsageError(f"outcomes lack {', '.join(missing)}")
    if len(outcomes) != len(labels) or len(labels) == 0:
        raise UsageError(f"labels ({len(labels)}) and outcomes ({len(outcomes)}) must be non-empty and row for row")
    if pd.isna(labels).any():
        raise UsageError("every customer needs a label")
    orders = outcomes["orders_next"].to_numpy(dtype="float64", na_value=np.nan)
    spend = outcomes["spend_next"].to_numpy(dtype="float64", na_value=np.nan)
    if np.isnan(orders).any() or np.isnan(spend).any():
        raise UsageError("outcomes hold missing values: fill customers without activity with 0 (align_outcomes)")
    groups, codes = np.unique(labels, return_inverse=True)
    sizes = np.bincount(codes).astype("float64")
    churned = (orders <= 0).astype("float64")
    log_spend = signed_log1p(spend)
    churn = np.bincount(codes, weights=churned) / sizes
    overall_churn = float(churned.mean())
    mean_spend = np.bincount(codes, weights=spend) / sizes
    mean_log_spend = np.bincount(codes, weights=log_spend) / sizes
    return {
        "customers": len(labels),
        "purchase_rate": 1.0 - overall_churn,
        "churn_rate": overall_churn,
        "spend_eta_squared": eta_squared(spend, codes, sizes),
        "log_spend_eta_squared": eta_squared(log_spend, codes, sizes),
        "churn_rate_range": float(churn.max() - churn.min()),
        "churn_rate_std": float(np.sqrt((sizes * (churn - overall_churn) ** 2).sum() / sizes.sum())),
        "groups": [
            {
                "group": group.item() if hasattr(group, "item") else group,
                "customers": int(sizes[i]),
                "share": float(sizes[i] / sizes.sum()),
                "purchase_rate": float(1.0 - churn[i]),
                "churn_rate": float(churn[i]),
                "mean_spend": float(mean_spend[i]),
                "mean_log_spend": float(mean_log_spend[i]),
            }
            for i, group in enumerate(groups)
        ],
    }
