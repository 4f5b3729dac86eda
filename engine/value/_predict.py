"""Per-customer predictions from fitted purchase and spend models, and their holdout check.

Everything here is a pure function of one partition's summaries (a pandas frame from
``_summaries``) on an array namespace ``xp``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..backend import to_host_array
from ._bgnbd import waiting_time_quantile
from ._gamma_gamma import conditional_expected_spend
from ._purchase import conditional_expected_purchases, p_alive, p_no_purchase_given_alive

__all__ = [
    "FREQUENCY_BINS", "INTERVALS", "PREDICTION_COLUMNS", "discounted_purchases", "holdout_sums", "naive_purchases",
    "predict",
]  # fmt: skip

PREDICTION_COLUMNS = (
    "p_alive", "expected_purchases", "p_purchase", "expected_spend", "clv", "next_purchase_date",
)  # fmt: skip
# Central intervals of the waiting time checked against the actual next purchase.
INTERVALS = (0.5, 0.8)
# Calibration repeat purchases 0, 1, ..., 6 and 7 or more: the conditional-expectation bins.
FREQUENCY_BINS = 8
_SLICE_DAYS = 30
_YEAR_DAYS = 365.25


def discounted_purchases(purchase, spend_params, horizon_days, discount_rate_yearly, x, tx, T, xp, model):
    """Expected purchases over the horizon, each 30-day slice discounted from its end.

    Returns (undiscounted expected purchases, discounted expected purchases); a last slice
    shorter than 30 days is discounted from the horizon's end.
    """
    ends = list(range(_SLICE_DAYS, horizon_days, _SLICE_DAYS)) + [horizon_days]
    before = xp.zeros_like(T)
    discounted = xp.zeros_like(T)
    for end in ends:
        cumulative = conditional_expected_purchases(purchase, float(end), x, tx, T, xp, model)
        discounted = discounted + (cumulative - before) * (1.0 + discount_rate_yearly) ** (-end / _YEAR_DAYS)
        before = cumulative
    return before, discounted


def predict(summaries: pd.DataFrame, purchase, spend, *, as_of_day, horizon_days, discount_rate_yearly, xp, model):
    """Predictions for each row of ``summaries`` (see :data:`PREDICTION_COLUMNS`).

    ``expected_spend`` is the expected value of one purchase (Gamma-Gamma, conditional on
    the customer's repeat purchases); ``clv`` the discounted expected purchases in the
    horizon times it; ``next_purchase_date`` as-of plus the median wait to the next purchase
    given the customer is alive (read it beside ``p_alive``), as days since 1970-01-01.
    """
    x, tx, T, m = (
        xp.asarray(summaries[c].to_numpy(dtype="float64")) for c in ("frequency", "recency", "T", "monetary")
    )
    alive = p_alive(purchase, x, tx, T, xp, model)
    expected, discounted = discounted_purchases(
        purchase, spend, horizon_days, discount_rate_yearly, x, tx, T, xp, model
    )
    per_purchase = conditional_expected_spend(spend, x, m, xp)
    no_wait = p_no_purchase_given_alive(purchase, float(horizon_days), x, T, xp, model)
    median_wait = waiting_time_quantile(purchase, 0.5, x, T, xp)
    columns = {
        "p_alive": alive,
        "expected_purchases": expected,
        "p_purchase": alive * (1.0 - no_wait),
        "expected_spend": per_purchase,
        "clv": discounted * per_purchase,
        "next_purchase_date": as_of_day + xp.floor(median_wait),
    }
    return {name: to_host_array(values) for name, values in columns.items()}


def naive_purchases(frequency: np.ndarray, T: np.ndarray, days: float) -> np.ndarray:
    """The naive forecast every model has to beat: each customer buying on at their
    calibration rate (repeat purchases over T) for ``days``; 0 for T = 0."""
    return np.divide(frequency, T, out=np.zeros_like(frequency), where=T > 0) * days


def holdout_sums(summaries: pd.DataFrame, predicted: dict, purchase, *, horizon_days, xp) -> dict:
    """Sums over one partition that the holdout evaluation adds up across partitions.

    The interval check: for customers whose next purchase came within the horizon, the
    central ``level`` interval of the wait given alive and given a purchase within the
    horizon, against the actual wait (``holdout_wait``). Beside the model, the naive forecast
    (:func:`naive_purchases`).
    """
    actual = summaries["holdout_purchases"].to_numpy(dtype="float64")
    frequency, T = (summaries[c].to_numpy(dtype="float64") for c in ("frequency", "T"))
    bins = np.minimum(frequency, FREQUENCY_BINS - 1).astype(np.int64)
    naive = naive_purchases(frequency, T, horizon_days)
    actual_spend = summaries["holdout_spend"].to_numpy(dtype="float64")
    expected = predicted["expected_purchases"]
    expected_spend = expected * predicted["expected_spend"]
    purchase_error, spend_error = expected - actual, expected_spend - actual_spend
    sums = {
        "customers": len(summaries),
        "predicted_purchases": float(expected.sum()),
        "actual_purchases": float(actual.sum()),
        "predicted_spend": float(expected_spend.sum()),
        "actual_spend": float(actual_spend.sum()),
        "predicted_buyers": float(predicted["p_purchase"].sum()),
        "actual_buyers": int(np.count_nonzero(actual > 0)),
        "purchases_abs_error": float(np.abs(purchase_error).sum()),
        "naive_purchases": float(naive.sum()),
        "naive_abs_error": float(np.abs(naive - actual).sum()),
        # The conditional-expectation check: by calibration repeat purchases (the last bin
        # holds that many or more), customers and their summed holdout purchases.
        **{
            f"by_frequency_{name}": np.bincount(bins, weights=values, minlength=FREQUENCY_BINS)
            for name, values in (("customers", None), ("actual", actual), ("predicted", to_host_array(expected)),
                                 ("naive", naive))
        },
        "purchases_sq_error": float((purchase_error**2).sum()),
        "spend_abs_error": float(np.abs(spend_error).sum()),
        "spend_sq_error": float((spend_error**2).sum()),
    }
    bought = summaries["holdout_wait"].notna().to_numpy()
    wait = summaries["holdout_wait"].to_numpy(dtype="float64")[bought]
    x, T = (xp.asarray(summaries[c].to_numpy(dtype="float64")[bought]) for c in ("frequency", "T"))
    for level in INTERVALS:
        low = to_host_array(waiting_time_quantile(purchase, (1 - level) / 2, x, T, xp, within=horizon_days))
        high = to_host_array(waiting_time_quantile(purchase, (1 + level) / 2, x, T, xp, within=horizon_days))
        sums[f"inside_{round(level * 100)}"] = int(np.count_nonzero((wait >= low) & (wait <= high)))
    return sums
