"""Segment profiles (sizes, value share, means, z-scores) and names earned by behaviour.

Profiles are built from per-partition sums, so every customer counts without bringing any of
them to one place: per segment and feature the count of present values, their sum and sum
of squares. z-scores compare a segment's mean with the population's, in population standard
deviations. Medians come from the fitting sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..backend import to_array, to_host_array

__all__ = ["NAME_RULES", "name_segments", "partition_sums", "profile_table"]


def partition_sums(frame, segment, columns, k: int, xp=np) -> dict:
    """Per segment: customers, revenue, and per feature present count, sum, sum of squares."""
    values = to_array(frame[list(columns)], "float64", na_value=np.nan)
    present = ~xp.isnan(values)
    filled = xp.where(present, values, 0.0)
    one_hot = (segment[:, None] == xp.arange(k)[None, :]).astype("float64")
    revenue = to_array(frame["monetary_total"], "float64", na_value=0.0) if "monetary_total" in frame.columns else None

    return {
        "customers": to_host_array(one_hot.sum(axis=0)),
        "revenue": to_host_array(one_hot.T @ revenue) if revenue is not None else np.zeros(k),
        "present": to_host_array(one_hot.T @ present.astype("float64")),
        "sum": to_host_array(one_hot.T @ filled),
        "squares": to_host_array(one_hot.T @ filled**2),
    }


def _add(total: dict | None, part: dict) -> dict:
    return part if total is None else {key: total[key] + part[key] for key in total}


def profile_table(sums: list[dict], columns, sample=None, sample_segments=None) -> pd.DataFrame:
    """One row per segment: size, shares, and ``mean_``/``z_``/``median_`` per feature.

    ``sample`` (pandas, the features of the fitting sample) and ``sample_segments`` give the
    medians; without them the median columns are left out.
    """
    total = None
    for part in sums:
        total = _add(total, part)
    columns = list(columns)
    customers, revenue = total["customers"], total["revenue"]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total["sum"] / total["present"]
        population_mean = total["sum"].sum(axis=0) / total["present"].sum(axis=0)
        population_var = total["squares"].sum(axis=0) / total["present"].sum(axis=0) - population_mean**2
        population_std = np.sqrt(np.maximum(population_var, 0))
        z = (means - population_mean) / np.where(population_std > 0, population_std, np.nan)
    columns_out = {
        "segment": np.arange(len(customers), dtype="int32"),
        "customers": customers.astype("int64"),
        "share_customers": customers / customers.sum(),
        "share_revenue": revenue / revenue.sum() if revenue.sum() else np.full(len(customers), np.nan),
    }
    for j, name in enumerate(columns):
        columns_out[f"mean_{name}"] = means[:, j]
        columns_out[f"z_{name}"] = z[:, j]
    if sample is not None:
        medians = sample[columns].groupby(np.asarray(sample_segments)).median()
        segments = np.arange(len(customers))
        for name in columns:
            columns_out[f"median_{name}"] = medians[name].reindex(segments).to_numpy()
    table = pd.DataFrame(columns_out)
    return table


# Each rule: a name, the z-score conditions a segment must meet, and how strongly it matches.
# Behaviour only: no demographic word can appear, since no demographic feature is used.
NAME_RULES = (
    ("High-value loyal", {"monetary_total": 0.5, "frequency": 0.3}, {"monetary_total": 1, "frequency": 1, "recency_days": -1}),
    ("Dormant", {"recency_days": 0.8, "frequency": -0.0}, {"recency_days": 1, "active_weeks": -1}),
    ("At-risk former actives", {"recency_days": 0.3, "frequency": 0.0}, {"recency_days": 1, "frequency": 1}),
    ("New customers", {"tenure_days": -0.6}, {"tenure_days": -1}),
    ("Discount-driven buyers", {"discount_share": 0.6}, {"discount_share": 1}),
    ("Browsers", {"view_count": 0.3, "frequency": -0.0}, {"view_count": 1, "frequency": -1}),
    ("Email-engaged", {"email_click_count": 0.8}, {"email_click_count": 1}),
    ("Frequent returners", {"return_rate": 0.8}, {"return_rate": 1}),
)


def _meets(z: dict, conditions: dict) -> bool:
    """A positive threshold asks for at least it; zero or negative asks for at most it."""
    for feature, threshold in conditions.items():
        value = z.get(feature)
        if value is None or np.isnan(value):
            return False
        if (threshold > 0 and value < threshold) or (threshold <= 0 and value > threshold):
            return False
    return True


def name_segments(profile: pd.DataFrame) -> list[dict]:
    """A unique behavioural name per segment, with the z-scores that earned it.

    Rules are matched greedily by strength (each name once, each segment once); a segment no
    rule fits is "Steady regulars" or "Occasional buyers" by its frequency, qualified by its
    most distinctive feature when that name is taken. Deterministic for a given profile.
    """
    zs = []
    for _, row in profile.iterrows():
        zs.append({column[2:]: float(row[column]) for column in profile.columns if column.startswith("z_")})
    candidates = []
    for segment, z in enumerate(zs):
        for name, conditions, weights in NAME_RULES:
            if _meets(z, conditions):
                strength = sum(weight * z.get(feature, 0.0) for feature, weight in weights.items() if not np.isnan(z.get(feature, np.nan)))
                candidates.append((-strength, segment, name, conditions))
    names: dict[int, dict] = {}
    for _, segment, name, conditions in sorted(candidates):
        if segment in names or any(n["name"] == name for n in names.values()):
            continue
        names[segment] = {"name": name, "because": {f: round(zs[segment][f], 2) for f in conditions}}
    taken = {n["name"] for n in names.values()}
    for segment, z in enumerate(zs):
        if segment in names:
            continue
        distinctive = sorted(((abs(v), f, v) for f, v in z.items() if not np.isnan(v)), reverse=True)[:3]
        base = "Steady regulars" if z.get("frequency", 0.0) > 0 else "Occasional buyers"
        name = base
        if name in taken and distinctive:
            _, feature, value = distinctive[0]
            name = f"{base}, {'high' if value > 0 else 'low'} {feature.replace('_', ' ')}"
        suffix = 2
        while name in taken:
            name, suffix = f"{base} {suffix}", suffix + 1
        taken.add(name)
        names[segment] = {"name": name, "because": {f: round(v, 2) for _, f, v in distinctive}}
    return [{"segment": segment, **names[segment]} for segment in range(len(zs))]
