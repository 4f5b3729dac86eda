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
from ._purchase import expected_purchases_given_alive, p_alive, p_no_purchase_given_alive

__all__ = [
    "FREQUENCY_BINS", "INTERVALS", "PREDICTION_COLUMNS", "SPEND_COLUMNS", "discounted_purchases", "holdout_sums",
    "naive_purchases", "naive_wait_quantile", "predict",
]  # fmt: skip

PREDICTION_COLUMNS = (
    "p_alive", "expected_purchases", "p_purchase", "expected_spend", "clv", "next_purchase_date",
)  # fmt: skip
# The prediction columns that need a spend model (transaction amounts).
SPEND_COLUMNS = ("expected_spend", "clv")
# Central intervals of the waiting time checked against the actual next purchase.
INTERVALS = (0.5, 0.8)
# Calibration repeat purchases 0, 1, ..., 6 and 7 or more: the conditional-expectation bins.
FREQUENCY_BINS = 8
_SLICE_DAYS = 30
_YEAR_DAYS = 365.25


def discounted_purchases(cumulative, horizon_days, discount_rate_yearly, zeros):
    """Expected purchases over the horizon, each 30-day slice discounted from its end.

    ``cumulative(days)`` gives each customer's expected purchases in that many days. Returns
    (undiscounted expected purchases, discounted expected purchases); a last slice shorter
    than 30 days is discounted from the horizon's end.
    """
    ends = list(range(_SLICE_DAYS, horizon_days, _SLICE_DAYS)) + [horizon_days]
    before = discounted = zeros
    for end in ends:
        by_end = cumulative(float(end))
        discounted = discounted + (by_end - before) * (1.0 + discount_rate_yearly) ** (-end / _YEAR_DAYS)
        before = by_end
    return before, discounted


def _naive_rate(x, T, xp):
    """Repeat purchases per day at each customer's calibration rate (0 for T = 0)."""
    return xp.where(T > 0, x / xp.where(T > 0, T, 1.0), 0.0)


def naive_wait_quantile(q, x, T, xp=np, *, within=None):
    """Quantile ``q`` of the wait to the next purchase under the naive forecast: exponential at
    the calibration rate (infinite where the rate is 0); with ``within``, of the wait given a
    purchase within that many days."""
    rate = _naive_rate(x, T, xp)
    if within is not None:
        q = q * -xp.expm1(-rate * within)
    with np.errstate(divide="ignore", invalid="ignore"):
        return xp.where(rate > 0, -xp.log1p(-q) / xp.where(rate > 0, rate, 1.0), xp.inf)


def predict(
    summaries: pd.DataFrame, purchase, spend, *, as_of_day, horizon_days, discount_rate_yearly, xp, model,
    origin_lag=1, naive=False,
):  # fmt: skip
    """Predictions for each row of ``summaries`` (see :data:`PREDICTION_COLUMNS`), and P(alive)
    by the fitted purchase model.

    ``expected_spend`` is the expected value of one purchase (Gamma-Gamma, conditional on
    the customer's repeat purchases); ``clv`` the discounted expected purchases in the
    horizon times it; both are left out without a spend model (``spend`` None: no amounts).
    ``next_purchase_date`` is the day the median wait to the next purchase given the customer
    is alive (read it beside ``p_alive``) ends on, as days since 1970-01-01: measured from the
    origin ``origin_lag`` days before as-of (``_summaries``), a wait lands on the first day
    starting at or after it with ``origin_lag`` 1, and on the day it ends in with 0.

    With ``naive`` the purchases come from the naive forecast (each customer buying on at
    their calibration rate, Poisson): every model lost to it. It has no dropout, so
    ``p_alive`` is NaN.
    """
    x, tx, T = (xp.asarray(summaries[c].to_numpy(dtype="float64")) for c in ("frequency", "recency", "T"))
    alive = p_alive(purchase, x, tx, T, xp, model)
    if naive:
        rate = _naive_rate(x, T, xp)
        expected, discounted = discounted_purchases(lambda days: rate * days, horizon_days, discount_rate_yearly,
                                                    xp.zeros_like(T))  # fmt: skip
        buys = -xp.expm1(-expected)
        median_wait = naive_wait_quantile(0.5, x, T, xp)
        shown_alive = xp.full_like(T, xp.nan)
    else:
        # P(alive) does not change with the days ahead: once for every slice of the horizon.
        expected, discounted = discounted_purchases(
            lambda days: alive * expected_purchases_given_alive(purchase, days, x, T, xp, model), horizon_days,
            discount_rate_yearly, xp.zeros_like(T),
        )  # fmt: skip
        buys = alive * (1.0 - p_no_purchase_given_alive(purchase, float(horizon_days), x, T, xp, model))
        median_wait = waiting_time_quantile(purchase, 0.5, x, T, xp)
        shown_alive = alive
    origin = as_of_day - origin_lag
    columns = {
        "p_alive": shown_alive,
        "expected_purchases": expected,
        "p_purchase": buys,
        "next_purchase_date": origin + (xp.maximum(xp.ceil(median_wait), 1.0) if origin_lag else xp.floor(median_wait)),
    }
    if spend is not None:
        per_purchase = conditional_expected_spend(spend, x, xp.asarray(summaries["monetary"].to_numpy(dtype="float64")), xp)
        columns |= {"expected_spend": per_purchase, "clv": discounted * per_purchase}
    return {name: to_host_array(values) for name, values in columns.items()}, to_host_array(alive)


def naive_purchases(frequency: np.ndarray, T: np.ndarray, days: float) -> np.ndarray:
    """The naive forecast every model has to beat: each customer buying on at their
    calibration rate (repeat purchases over T) for ``days``; 0 for T = 0."""
    return _naive_rate(frequency, T, np) * days


def holdout_sums(summaries: pd.DataFrame, predicted: dict, purchase, *, horizon_days, xp, naive=False) -> dict:
    """Sums over one partition that the holdout evaluation adds up across partitions.

    The interval check: for customers whose next purchase came within the horizon, the
    central ``level`` interval of the wait given alive and given a purchase within the
    horizon (exponential at the calibration rate with ``naive``), against the actual wait
    (``holdout_wait``). Beside the model, the naive forecast (:func:`naive_purchases`). Spend
    sums only where ``predicted`` has spend.
    """
    actual = summaries["holdout_purchases"].to_numpy(dtype="float64")
    frequency, T = (summaries[c].to_numpy(dtype="float64") for c in ("frequency", "T"))
    bins = np.minimum(frequency, FREQUENCY_BINS - 1).astype(np.int64)
    naive_forecast = naive_purchases(frequency, T, horizon_days)
    expected = predicted["expected_purchases"]
    purchase_error = expected - actual
    sums = {
        "customers": len(summaries),
        "predicted_purchases": float(expected.sum()),
        "actual_purchases": float(actual.sum()),
        "predicted_buyers": float(predicted["p_purchase"].sum()),
        "actual_buyers": int(np.count_nonzero(actual > 0)),
        "purchases_abs_error": float(np.abs(purchase_error).sum()),
        "naive_purchases": float(naive_forecast.sum()),
        "naive_abs_error": float(np.abs(naive_forecast - actual).sum()),
        # The conditional-expectation check: by calibration repeat purchases (the last bin
        # holds that many or more), customers and their summed holdout purchases.
        **{
            f"by_frequency_{name}": np.bincount(bins, weights=values, minlength=FREQUENCY_BINS)
            for name, values in (("customers", None), ("actual", actual), ("predicted", to_host_array(expected)),
                                 ("naive", naive_forecast))
        },
        "purchases_sq_error": float((purchase_error**2).sum()),
    }
    if "expected_spend" in predicted:
        actual_spend = summaries["holdout_spend"].to_numpy(dtype="float64")
        expected_spend = expected * predicted["expected_spend"]
        spend_error = expected_spend - actual_spend
        sums |= {
            "predicted_spend": float(expected_spend.sum()),
            "actual_spend": float(actual_spend.sum()),
            "spend_abs_error": float(np.abs(spend_error).sum()),
            "spend_sq_error": float((spend_error**2).sum()),
        }
    bought = summaries["holdout_wait"].notna().to_numpy()
    wait = summaries["holdout_wait"].to_numpy(dtype="float64")[bought]
    x, T = (xp.asarray(summaries[c].to_numpy(dtype="float64")[bought]) for c in ("frequency", "T"))
    for level in INTERVALS:
        low, high = (
            to_host_array(
                naive_wait_quantile(q, x, T, xp, within=horizon_days)
                if naive
                else waiting_time_quantile(purchase, q, x, T, xp, within=horizon_days)
            )
            for q in ((1 - level) / 2, (1 + level) / 2)
        )
        sums[f"inside_{round(level * 100)}"] = int(np.count_nonzero((wait >= low) & (wait <= high)))
    return sums
