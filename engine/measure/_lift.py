"""Lift of treated against control, with 95% confidence intervals (issue 32).

Per audience, from each customer's group (treated or control) and outcomes:

- a **rate** outcome (converted, unsubscribed, complained: 0 or 1): each group's rate, the
  absolute lift (difference of rates) with a Wald interval from the two binomial variances, the
  relative lift (ratio - 1) with a delta-method interval on the log ratio, and the two-sided
  p-value of the pooled two-proportion z-test;
- a **mean** outcome (revenue per customer): each group's mean, the difference with a Welch
  interval, the relative lift, and the Welch t-test's p-value (normal approximation: the
  groups of a campaign are hundreds of customers or more);
- incremental conversions and revenue: the absolute lift times the treated customers;
- the **minimum detectable effect** (absolute, at 5% two-sided and 80% power) for the
  control's rate and the groups' sizes; a test whose interval straddles 0 with an observed
  lift below it is underpowered.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["LEVEL", "POWER", "mean_lift", "minimum_detectable_effect", "rate_lift"]

LEVEL = 0.95
POWER = 0.8
_Z = stats.norm.ppf(0.5 + LEVEL / 2)


def _interval(estimate: float, error: float) -> tuple[float, float]:
    return (estimate - _Z * error, estimate + _Z * error) if math.isfinite(error) else (math.nan, math.nan)


def minimum_detectable_effect(rate: float, treated: int, control: int) -> float:
    """The smallest absolute lift of a rate near ``rate`` a test of these group sizes detects
    with :data:`POWER` at the 5% level (two-sided)."""
    if treated == 0 or control == 0:
        return math.nan
    spread = math.sqrt(max(rate * (1 - rate), 1e-12) * (1 / treated + 1 / control))
    return float((_Z + stats.norm.ppf(POWER)) * spread)


def rate_lift(treated: np.ndarray, control: np.ndarray) -> dict:
    """Lift of a 0/1 outcome, treated against control (see the module docstring)."""
    n_t, n_c = len(treated), len(control)
    p_t = float(np.mean(treated)) if n_t else math.nan
    p_c = float(np.mean(control)) if n_c else math.nan
    difference = p_t - p_c
    error = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c) if n_t and n_c else math.nan
    pooled = (p_t * n_t + p_c * n_c) / (n_t + n_c) if n_t and n_c else math.nan
    pooled_error = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c)) if n_t and n_c else math.nan
    p_value = float(2 * stats.norm.sf(abs(difference) / pooled_error)) if pooled_error and pooled_error > 0 else math.nan
    relative = relative_low = relative_high = math.nan
    if p_t > 0 and p_c > 0:
        relative = p_t / p_c - 1
        log_error = math.sqrt((1 - p_t) / (p_t * n_t) + (1 - p_c) / (p_c * n_c))
        relative_low, relative_high = (math.exp(bound) - 1 for bound in _interval(math.log(p_t / p_c), log_error))
    low, high = _interval(difference, error)
    mde = minimum_detectable_effect(p_c, n_t, n_c)
    return {
        "treated": n_t, "control": n_c, "treated_rate": p_t, "control_rate": p_c,
        "absolute_lift": difference, "absolute_low": low, "absolute_high": high,
        "relative_lift": relative, "relative_low": relative_low, "relative_high": relative_high,
        "p_value": p_value, "incremental": difference * n_t if n_t else math.nan,
        "minimum_detectable_effect": mde,
        "underpowered": bool(low <= 0 <= high and abs(difference) < mde) if math.isfinite(low) else True,
    }  # fmt: skip


def mean_lift(treated: np.ndarray, control: np.ndarray) -> dict:
    """Lift of a per-customer amount (revenue), treated against control (Welch)."""
    n_t, n_c = len(treated), len(control)
    m_t = float(np.mean(treated)) if n_t else math.nan
    m_c = float(np.mean(control)) if n_c else math.nan
    v_t = float(np.var(treated, ddof=1)) if n_t > 1 else math.nan
    v_c = float(np.var(control, ddof=1)) if n_c > 1 else math.nan
    difference = m_t - m_c
    error = math.sqrt(v_t / n_t + v_c / n_c) if n_t > 1 and n_c > 1 else math.nan
    p_value = float(2 * stats.norm.sf(abs(difference) / error)) if error and error > 0 else math.nan
    low, high = _interval(difference, error)
    return {
        "treated": n_t, "control": n_c, "treated_mean": m_t, "control_mean": m_c,
        "absolute_lift": difference, "absolute_low": low, "absolute_high": high,
        "relative_lift": difference / m_c if m_c else math.nan, "p_value": p_value,
        "incremental": difference * n_t if n_t else math.nan,
    }  # fmt: skip
