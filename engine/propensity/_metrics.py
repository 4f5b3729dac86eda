"""Honest metrics of a propensity score on customers the model never saw (the test split).

Ranking (ROC-AUC, PR-AUC), probability quality (log loss, Brier, a 10-bin calibration table and
its expected calibration error), what a campaign gets from targeting by score (lift and
cumulative gains by decile), and which inputs the model relies on (permutation importance: the
drop in test AUC when one input column is shuffled).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["calibration_table", "classification_metrics", "lift_table", "permutation_importance"]


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[list[dict], float]:
    """Equal-width bins of the predicted probability: customers, mean prediction, observed rate.

    Returns the table and the expected calibration error: the customer-weighted mean of
    ``|observed rate - mean prediction|`` over the bins.
    """
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    index = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        predicted = float(p[inside].mean()) if count else None
        observed = float(y[inside].mean()) if count else None
        if count:
            ece += count / len(y) * abs(observed - predicted)
        table.append(
            {"bin": b, "low": b / bins, "high": (b + 1) / bins, "customers": count,
             "mean_predicted": predicted, "observed_rate": observed}
        )  # fmt: skip
    return table, float(ece)


def lift_table(y: np.ndarray, p: np.ndarray, groups: int = 10) -> list[dict]:
    """Deciles by descending score: response rate, lift over the base rate, cumulative gains.

    Customers are ordered by score, ties broken by position, and cut into ``groups`` groups of
    (nearly) equal size; decile 1 holds the highest scores.
    """
    y = np.asarray(y, dtype="float64")
    order = np.argsort(-np.asarray(p, dtype="float64"), kind="stable")
    base = y.mean()
    total = y.sum()
    rows, cumulative = [], 0.0
    for decile, members in enumerate(np.array_split(order, groups), start=1):
        positives = float(y[members].sum())
        cumulative += positives
        rate = positives / len(members) if len(members) else 0.0
        rows.append(
            {"decile": decile, "customers": int(len(members)), "positives": int(positives), "rate": rate,
             "lift": rate / base if base > 0 else None,
             "cumulative_gain": cumulative / total if total > 0 else None}
        )  # fmt: skip
    return rows


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """ROC-AUC, PR-AUC, log loss, Brier score, calibration table and ECE, lift by decile."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)
    both = 0 < y.sum() < len(y)
    table, ece = calibration_table(y, p)
    return {
        "customers": int(len(y)),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])) if len(y) else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "ece": ece,
        "calibration": table,
        "lift": lift_table(y, p),
    }


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y: np.ndarray,
    features,
    *,
    repeats: int = 3,
    seed: int = 0,
    rows_per_call: int = 200_000,
) -> list[dict]:
    """Mean and spread of the test AUC lost when each input column is shuffled, largest first.

    Columns are shuffled whole (a categorical's one-hot columns and a number's missing flag
    move together), so the importance is of the input a user recognises. The shuffled copies
    are scored in batches of about ``rows_per_call`` rows: a forest's per-call overhead (its
    thread pool) cost more than the scoring itself when each copy was a call of its own.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    if not 0 < y.sum() < len(y):
        return []
    rng = np.random.default_rng(seed)
    reference = roc_auc_score(y, predict(frame))
    jobs = [(name, rng.permutation(len(frame))) for name in features for _ in range(repeats)]
    per_call = max(1, rows_per_call // max(len(frame), 1))
    drops: dict[str, list[float]] = {name: [] for name in features}
    for start in range(0, len(jobs), per_call):
        batch = jobs[start : start + per_call]
        copies = []
        for name, order in batch:
            shuffled = frame.copy()
            # .array keeps the column's dtype (a nullable boolean stays boolean).
            shuffled[name] = frame[name].array.take(order)
            copies.append(shuffled)
        scores = predict(pd.concat(copies, ignore_index=True)).reshape(len(batch), len(frame))
        for (name, _), score in zip(batch, scores):
            drops[name].append(reference - roc_auc_score(y, score))
    rows = [
        {"feature": name, "auc_drop": float(np.mean(drops[name])), "auc_drop_std": float(np.std(drops[name]))}
        for name in features
    ]
    return sorted(rows, key=lambda row: -row["auc_drop"])
