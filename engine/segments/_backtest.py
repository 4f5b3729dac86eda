"""Segments against the RFM grid on what customers did next, at an equal number of groups.

A grouping with more groups explains more of anything, so the comparison is made where it is
fair: the segments against the RFM grid cut into as many groups (:func:`rfm_groups`), in
each standard way, the best of them on each measure, on measures that do not reward a group
for being small, each with a bootstrap interval:

- next-period log spend, adjusted eta squared: ``1 - (1 - eta^2) (n - 1) / (n - k)``, the
  share of its variance the grouping explains beyond what ``k`` random groups would;
- next-period purchase (bought at all), adjusted eta squared likewise;
- churn-rate spread: the churn rate of the group that churns most less that of the group that
  churns least.

The intervals come from one paired bootstrap over customers: each resample draws customers
with replacement and measures both groupings on the same draw, so the difference has an
interval of its own. Only the assignments and the outcome window are read; the segmentation
was fitted before, without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..exceptions import UsageError
from ..ingest import has_amounts, read_store_meta
from ..outcomes import (
    align_outcomes,
    next_period_outcomes,
    outcome_window,
    sample_key_bound,
)
from ._baseline import RFM_CUTS, eta_squared, outcome_separation, rfm_groups, signed_log1p

__all__ = ["MEASURES", "VERDICTS", "adjusted_eta_squared", "against_what_happened", "compare_at_equal_groups"]

# Measure key -> how the report labels it. Higher is better for every one.
MEASURES = {
    "log_spend_adjusted_eta_squared": "next-period log spend (adjusted η²)",
    "purchase_adjusted_eta_squared": "next-period purchase (adjusted η²)",
    "churn_rate_spread": "churn-rate spread (highest − lowest group)",
}
CONFIDENCE = 0.95
# What a measure's ``segments_win`` says, in words.
VERDICTS = {True: "segments ahead", False: "RFM grid ahead", None: "no clear winner"}


def adjusted_eta_squared(eta_squared: float, customers: float, groups: int) -> float:
    """Eta squared less what ``groups`` groups would explain by chance (as adjusted R²)."""
    return 1.0 - (1.0 - eta_squared) * (customers - 1) / (customers - groups)


def _measures(codes: np.ndarray, groups: int, weights: np.ndarray, outcomes: dict) -> dict:
    """Every measure of one grouping with customers counted ``weights`` times."""
    counts = np.bincount(codes, weights=weights, minlength=groups)
    present = counts > 0
    customers, occupied = float(counts.sum()), int(present.sum())
    measured = {
        f"{name}_adjusted_eta_squared": adjusted_eta_squared(
            eta_squared(outcomes[column], codes, counts, weights) or 0.0, customers, occupied
        )
        for name, column in (("log_spend", "log_spend"), ("purchase", "purchased"))
    }
    purchase_rate = np.bincount(codes, weights=weights * outcomes["purchased"], minlength=groups)[present] / counts[present]
    measured["churn_rate_spread"] = float(purchase_rate.max() - purchase_rate.min())
    return measured


def _interval(draws: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def compare_at_equal_groups(segments, rfm_grids: dict, outcomes: pd.DataFrame, *, resamples: int = 200,
                            seed: int = 0) -> dict:  # fmt: skip
    """The segments against the RFM grid with as many groups, on what customers did next.

    The grid can be cut into that many groups in several standard ways; on each measure the
    segments face the cut that does best on it, so a win is a win over every one of them.

    Parameters
    ----------
    segments : array-like of int, length n
        Each customer's segment, row for row with ``outcomes``.
    rfm_grids : dict of str -> array-like of int, length n
        Each cut's RFM group of each customer (:func:`rfm_groups`), by the cut's name.
    outcomes : pandas.DataFrame of n rows
        ``orders_next`` and ``spend_next`` (:func:`engine.outcomes.align_outcomes`).
    resamples : int
        Bootstrap resamples behind the intervals (0: none, estimates only).

    Returns
    -------
    dict
        ``customers``, ``groups`` (of the segments and of each cut), ``resamples``,
        ``confidence`` and ``measures``: one dict per measure of :data:`MEASURES` with
        ``measure``, ``label``, ``cut`` (the cut that does best on it), ``cuts`` (every cut's
        estimate), and ``segments``, ``rfm_grid`` (that best cut) and ``difference``
        (segments less grid), each ``{"value", "low", "high"}``, and ``segments_win``: True
        when the difference's interval lies above 0, False when below, None when it holds 0.
    """
    groupings = {"segments": np.asarray(segments, dtype=np.int64)}
    groupings |= {cut: np.asarray(codes, dtype=np.int64) for cut, codes in rfm_grids.items()}
    lengths = {name: len(codes) for name, codes in groupings.items()}
    if not rfm_grids or len({*lengths.values(), len(outcomes)}) != 1 or len(outcomes) < 2:
        raise UsageError(f"segments, RFM groups {lengths} and outcomes ({len(outcomes)}) must be row for row, at least 2")
    spend = outcomes["spend_next"].to_numpy(dtype="float64")
    values = {
        "log_spend": signed_log1p(spend),
        "purchased": (outcomes["orders_next"].to_numpy(dtype="float64") > 0).astype("float64"),
    }
    sizes = {name: int(codes.max()) + 1 for name, codes in groupings.items()}
    customers = len(outcomes)
    estimates = {name: _measures(codes, sizes[name], np.ones(customers), values) for name, codes in groupings.items()}
    draws = {name: {measure: np.empty(resamples) for measure in MEASURES} for name in groupings}
    rng = np.random.default_rng(seed)
    for resample in range(resamples):
        weights = np.bincount(rng.integers(0, customers, customers), minlength=customers).astype("float64")
        for name, codes in groupings.items():
            for measure, value in _measures(codes, sizes[name], weights, values).items():
                draws[name][measure][resample] = value
    measures = []
    for measure, label in MEASURES.items():
        best = max(rfm_grids, key=lambda cut: estimates[cut][measure])
        entry = {"measure": measure, "label": label, "cut": best,
                 "cuts": {cut: estimates[cut][measure] for cut in rfm_grids}}  # fmt: skip
        series = {"segments": draws["segments"][measure], "rfm_grid": draws[best][measure],
                  "difference": draws["segments"][measure] - draws[best][measure]}  # fmt: skip
        point = {"segments": estimates["segments"][measure], "rfm_grid": estimates[best][measure],
                 "difference": estimates["segments"][measure] - estimates[best][measure]}  # fmt: skip
        for name, draw in series.items():
            low, high = _interval(draw) if resamples else (None, None)
            entry[name] = {"value": point[name], "low": low, "high": high}
        low, high = entry["difference"]["low"], entry["difference"]["high"]
        entry["segments_win"] = None if low is None or low <= 0 <= high else bool(low > 0)
        measures.append(entry)
    return {
        "customers": customers,
        "groups": {name: len(np.unique(codes)) for name, codes in groupings.items()},
        "resamples": resamples,
        "confidence": CONFIDENCE,
        "measures": measures,
    }


def against_what_happened(assignments: Path, meta: dict, *, groups: int, days: int, customers: int, resamples: int,
                          seed: int, client=None, progress=None) -> dict:  # fmt: skip
    """How well the segments, and the RFM grid beside them, separate what customers did in the
    ``days`` after as-of: only when the store holds those days (a backtest).

    ``assignments`` is the segment stage's assignments directory (``segment``, ``rfm_cell``:
    the customer's cell of the RFM score cube, ``rfm_segment``: the named grid); ``meta`` the
    feature table's metadata (store, as-of); ``groups`` the number of segments, which each
    cut of the RFM grid (:data:`RFM_CUTS`) is given, fitted to the cells of the customers
    measured; a cut that cannot make that many groups (too few distinct scores) is left out.

    Measured on at most ``customers`` customers: those whose key is below a bound, which keys
    (keyed hashes) make a uniform sample. Gathered whole, the assignments and outcomes of
    every customer would be the one thing in this process that grows with the customers.

    Returns ``{"skipped": reason}`` outside a backtest or on a store without amounts (half
    the measures are of spend, and the RFM grid needs its M score), else the window, the
    customers measured, ``at_equal_groups`` (:func:`compare_at_equal_groups`) and, per
    grouping (``segments``, ``rfm_grid``: the named grid), :func:`outcome_separation`.
    """
    store, as_of = meta.get("store"), meta.get("as_of")
    if not store or not as_of or not Path(store).exists():
        return {"skipped": "the feature table does not name an existing store"}
    if not has_amounts(read_store_meta(store)):
        return {"skipped": "the store's transactions have no amounts, so next-period spend is unknown"}
    window = outcome_window(store, as_of, days)
    if not window.covered:
        ends = window.data_end.date().isoformat() if window.data_end is not None else "nowhere"
        return {"skipped": f"the store ends at {ends}, before as-of + {days} days ({window.end.date().isoformat()})"}
    present = set(pq.read_schema(next(assignments.glob("*.parquet"))).names)
    columns = [c for c in ("customer_key", "segment", "rfm_cell", "rfm_segment") if c in present]
    assigned = sum(pq.ParquetFile(part).metadata.num_rows for part in assignments.glob("*.parquet"))
    key_below = sample_key_bound(customers / assigned) if assigned > customers else None
    filters = None if key_below is None else [("customer_key", "<", key_below)]
    table = pq.read_table(assignments, columns=columns, filters=filters).to_pandas()
    outcomes = align_outcomes(
        table["customer_key"],
        next_period_outcomes(store, as_of, days, client=client, progress=progress, key_below=key_below),
    )
    evaluation = {
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "customers": len(table),
        "of_customers": assigned,
    }
    if "rfm_cell" in table:
        cells = table["rfm_cell"].to_numpy()
        grids = {cut: np.asarray(rfm_groups(cells, groups, cut))[cells] for cut in RFM_CUTS}
        grids = {cut: codes for cut, codes in grids.items() if len(np.unique(codes)) == groups}
        if grids:
            evaluation["at_equal_groups"] = compare_at_equal_groups(
                table["segment"].to_numpy(), grids, outcomes, resamples=resamples, seed=seed
            )
    evaluation["segments"] = outcome_separation(table["segment"].to_numpy(), outcomes)
    if "rfm_segment" in table:
        evaluation["rfm_grid"] = outcome_separation(table["rfm_segment"].to_numpy(), outcomes)
    return evaluation
