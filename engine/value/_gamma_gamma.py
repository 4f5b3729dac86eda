"""Gamma-Gamma spend (Fader, Hardie & Lee 2005, "RFM and CLV", appendix).

Each purchase of a customer is worth ``z ~ Gamma(p, nu)`` and ``nu ~ Gamma(q, gamma)`` across
customers, independent of the purchase process. Fitted on customers with repeat purchases,
from x (repeat purchases) and m (the mean value of those repeat purchases).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ..exceptions import InputDataError
from ._fitting import ModelFit, at_bound, collapse_rows, special_functions, standard_errors

__all__ = ["GAMMA_GAMMA_PARAMETERS", "conditional_expected_spend", "fit_gamma_gamma", "gamma_gamma_log_likelihood"]

GAMMA_GAMMA_PARAMETERS = ("p", "q", "gamma")
_LOG_BOUNDS = (-12.0, 12.0)


def gamma_gamma_log_likelihood(params, frequency, monetary, weights, xp):
    """Total log-likelihood of the mean repeat spend ``monetary`` of ``frequency`` purchases.

    The mean of x purchases is ``Gamma(p x, nu x)``; integrating ``nu`` out gives
    ``Gamma(px+q) / (Gamma(px) Gamma(q)) * gamma^q x^(px) m^(px-1) / (gamma + x m)^(px+q)``.
    """
    p, q, gamma = (float(v) for v in params)
    gammaln = special_functions(xp).gammaln
    px = p * frequency
    per_row = (
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
        + (px - 1) * xp.log(monetary) + px * xp.log(frequency) - (px + q) * xp.log(gamma + frequency * monetary)
    )  # fmt: skip
    return float(xp.sum(weights * per_row))


def fit_gamma_gamma(frequency, monetary, *, xp=np, min_repeat_customers: int = 100) -> ModelFit:
    """Maximum-likelihood Gamma-Gamma on the customers with ``frequency > 0``.

    Spend is rescaled by its mean while fitting so that every parameter starts near 1.

    Raises
    ------
    InputDataError
        Fewer than ``min_repeat_customers`` repeat buyers, a non-positive mean spend, or
        every repeat buyer spending the same (no spread to fit).
    """
    frequency, monetary = (np.asarray(v, dtype=np.float64) for v in (frequency, monetary))
    repeat = frequency > 0
    frequency, monetary = frequency[repeat], monetary[repeat]
    if len(frequency) < min_repeat_customers:
        raise InputDataError(
            f"cannot fit Gamma-Gamma: {len(frequency)} customers bought again, fewer than {min_repeat_customers}"
        )
    if not np.all(np.isfinite(monetary)) or np.any(monetary <= 0):
        raise InputDataError(
            f"cannot fit Gamma-Gamma: {int(np.count_nonzero(~(monetary > 0)))} repeat buyers have a mean "
            "repeat spend that is not positive; it models positive purchase values only"
        )
    if np.ptp(monetary) == 0:
        raise InputDataError("cannot fit Gamma-Gamma: every repeat buyer spends the same per purchase")
    scale = float(monetary.mean())
    (x, m), counts = collapse_rows(frequency, monetary / scale)
    x, m, weights = (xp.asarray(v) for v in (x, m, counts))
    total = float(counts.sum())

    def objective(log_params):
        return -gamma_gamma_log_likelihood(np.exp(log_params), x, m, weights, xp) / total

    result = minimize(objective, np.zeros(3), method="L-BFGS-B", bounds=[_LOG_BOUNDS] * 3)
    p, q, gamma = np.exp(result.x)
    params = {"p": float(p), "q": float(q), "gamma": float(gamma * scale)}
    unscaled = (xp.asarray(v) for v in (frequency, monetary, np.ones_like(monetary)))
    return ModelFit(
        params=params,
        standard_errors=standard_errors(objective, result.x, total, params),
        log_likelihood=gamma_gamma_log_likelihood(tuple(params.values()), *unscaled, xp),
        success=bool(result.success),
        iterations=int(result.nit),
        message=str(result.message),
        customers=len(frequency),
        distinct_rows=len(counts),
        at_bound=at_bound(result.x, params),
    )


def conditional_expected_spend(params, frequency, monetary, xp=np):
    """Expected value of a customer's next purchase given x repeat purchases of mean m.

    ``p (gamma + x m) / (p x + q - 1)``; for x = 0 this is the population mean
    ``p gamma / (q - 1)`` (infinite when q <= 1, which the fit reports).
    """
    p, q, gamma = (params[k] for k in GAMMA_GAMMA_PARAMETERS)
    weighted = xp.where(frequency > 0, frequency * monetary, 0.0)
    return p * (gamma + weighted) / (p * frequency + q - 1)
