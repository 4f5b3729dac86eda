"""The classic RFM grid, and how well any grouping of customers separates what they did next.

The grid is what most teams use before clustering: a lookup from RFM scores to a name. It is
the baseline a segmentation has to beat, and :func:`outcome_separation` is the yardstick: of
the differences in next-period spend and churn between customers, how much does knowing the
group explain?
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import UsageError

__all__ = ["NO_PURCHASES", "RFM_GRID", "outcome_separation", "rfm_grid"]

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
    absent = [c for c in _SCORES if c not in frame.columns]
    if absent:
        raise UsageError(f"the RFM grid needs the feature columns {', '.join(absent)} (feature group rfm)")
    recency, frequency, monetary = (frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in _SCORES)
    scored = np.isin(recency, range(1, 6)) & np.isin(frequency, range(1, 6)) & np.isin(monetary, range(1, 6))
    r = np.where(scored, recency, 1).astype(np.int64)
    fm = np.where(scored, (frequency + monetary + 1) // 2, 1).astype(np.int64)
    names = np.asarray(RFM_GRID, dtype=object)[5 - r, fm - 1]
    return pd.Series(np.where(scored, names, NO_PURCHASES), index=frame.index, name="rfm_segment", dtype=object)


def _eta_squared(values: np.ndarray, codes: np.ndarray, sizes: np.ndarray) -> float | None:
    """Between-group sum of squares over the total: the share of variance the grouping explains."""
    centred = values - values.mean()
    total = float((centred**2).sum())
    if total == 0:
        return None
    group_means = np.bincount(codes, weights=centred) / sizes
    return float((sizes * group_means**2).sum() / total)


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
    log_spend = np.sign(spend) * np.log1p(np.abs(spend))
    churn = np.bincount(codes, weights=churned) / sizes
    overall_churn = float(churned.mean())
    mean_spend = np.bincount(codes, weights=spend) / sizes
    mean_log_spend = np.bincount(codes, weights=log_spend) / sizes
    return {
        "customers": int(len(labels)),
        "purchase_rate": 1.0 - overall_churn,
        "churn_rate": overall_churn,
        "spend_eta_squared": _eta_squared(spend, codes, sizes),
        "log_spend_eta_squared": _eta_squared(log_spend, codes, sizes),
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
