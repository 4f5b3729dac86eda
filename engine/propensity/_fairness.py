"""Fairness audit of a score across groups of a sensitive column (never a model input).

Per group: customers, positives, AUC within the group, the share placed in the high band (the
selection rate of a campaign that targets it), and that share over the best-treated group's.
A ratio under 0.8 is flagged (the four-fifths rule of US employment practice, a common first
screen for adverse impact; it says where to look, not that a score is unfair).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["FOUR_FIFTHS", "fairness_audit", "flagged_groups"]

FOUR_FIFTHS = 0.8


def fairness_audit(scored: pd.DataFrame, sensitive: pd.DataFrame, columns, *, label: str = "label") -> dict:
    """Audit ``scored`` (``customer_key``, ``score``, ``band``, ``label``) by each sensitive column.

    Parameters
    ----------
    scored : pandas.DataFrame
        Scored customers with their outcome (the test split).
    sensitive : pandas.DataFrame
        ``customer_key`` and the sensitive columns (from ``<run>/ingest/sensitive/customers``,
        or the user's table).
    columns : iterable of str
        Sensitive columns to audit; absent ones are skipped. Missing values form their own
        group, ``"(missing)"``.

    Returns
    -------
    dict
        Column -> list of per-group rows (``group``, ``customers``, ``positives``, ``auc``,
        ``high_share``, ``selection_ratio``, ``flagged``), largest group first.
    """
    from sklearn.metrics import roc_auc_score

    present = [c for c in columns if c in sensitive.columns]
    joined = scored.merge(sensitive[["customer_key", *present]].drop_duplicates("customer_key"), on="customer_key",
                          how="left")  # fmt: skip
    audit = {}
    for column in present:
        groups = joined[column].astype("string").fillna("(missing)")
        rows = []
        for group, members in joined.groupby(groups.to_numpy(), sort=True):
            y = members[label].to_numpy().astype(int)
            both = 0 < y.sum() < len(y)
            rows.append(
                {
                    "group": str(group),
                    "customers": int(len(members)),
                    "positives": int(y.sum()),
                    "auc": float(roc_auc_score(y, members["score"].to_numpy())) if both else None,
                    "high_share": float((members["band"] == "high").mean()),
                }
            )
        best = max((row["high_share"] for row in rows), default=0.0)
        for row in rows:
            row["selection_ratio"] = row["high_share"] / best if best > 0 else None
            row["flagged"] = bool(row["selection_ratio"] is not None and row["selection_ratio"] < FOUR_FIFTHS)
        audit[column] = sorted(rows, key=lambda row: (-row["customers"], row["group"]))
    return audit


def flagged_groups(audit: dict) -> list[str]:
    """``column=group`` for every flagged group, for summaries."""
    return [f"{column}={row['group']}" for column, rows in audit.items() for row in rows if row["flagged"]]
