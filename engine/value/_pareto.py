"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987; Fader & Hardie 2005, "A note on deriving
the Pareto/NBD model and related expressions").

While alive a customer buys at a Poisson rate ``lambda ~ Gamma(r, alpha)``; their lifetime is
exponential with rate ``mu ~ Gamma(s, beta)``, so they may drop out at any time, not only
right after a purchase as in BG/NBD. Summaries as in ``_bgnbd`` (x, t_x, T in days).

Everything rests on one integral, the chance of x repeat purchases and a dropout between t_x
and T (up to the Gamma normalisers)::

    I(lower, upper) = integral from lower to upper of (alpha + tau)^-(r+x) (beta + tau)^-(s+1) dtau

whose antiderivative is a Gauss hypergeometric function (the note's A_0): with
``m = max(alpha, beta)``, ``d = |alpha - beta|`` and ``c = r + s + x``,
``integral from u to infinity = 2F1(c, k; c + 1; d / (m + u)) / (c (m + u)^c)``, k being
``s + 1`` when alpha >= beta and ``r + x`` otherwise. ``cupyx.scipy.special`` documents no
``hyp2f1``, so these run on the host with SciPy whatever the backend (as BG/NBD's conditional
expectation does); the fit evaluates them on the distinct summaries only.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from ..backend import to_host_array
from ._fitting import ModelFit, fit_summaries

__all__ = [
    "PARETO_NBD_PARAMETERS",
    "conditional_expected_purchases",
    "expected_purchases_given_alive",
    "expected_repeat_purchases",
    "fit_pareto_nbd",
    "p_alive",
    "p_no_purchase_given_alive",
    "pareto_nbd_log_likelihood",
]

PARETO_NBD_PARAMETERS = ("r", "alpha", "s", "beta")


def _log_hyp2f1_next(a, b, z):
    """log 2F1(a, b; a + 1; z) for a, b > 0 and 0 <= z < 1.

    For b > 1 the series grows like (1 - z)^(1 - b) as z nears 1 (frequent buyers, alpha far
    from beta); Euler's transformation ``(1 - z)^(1 - b) 2F1(1, a + 1 - b; a + 1; z)`` keeps
    the hypergeometric factor bounded there (it tends to a / (b - 1)).
    """
    a, b, z = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, z)))
    out = np.empty(a.shape)
    euler = b > 1
    plain = ~euler
    out[plain] = np.log(scipy.special.hyp2f1(a[plain], b[plain], a[plain] + 1, z[plain]))
    out[euler] = (1 - b[euler]) * np.log1p(-z[euler]) + np.log(
        scipy.special.hyp2f1(1.0, a[euler] + 1 - b[euler], a[euler] + 1, z[euler])
    )
    return out


def _log_tail(params, frequency, u):
    """log of the integral from ``u`` to infinity (host arrays; see the module docstring)."""
    r, alpha, s, beta = (params[k] for k in PARETO_NBD_PARAMETERS)
    c = r + s + frequency
    if alpha >= beta:
        larger, k = alpha, np.full_like(c, s + 1)
    else:
        larger, k = beta, r + frequency
    return _log_hyp2f1_next(c, k, abs(alpha - beta) / (larger + u)) - c * np.log(larger + u) - np.log(c)


def _log_between(head, tail):
    """log I(lower, upper) from the log tails at its ends; -inf where they are equal."""
    with np.errstate(divide="ignore"):
        return head + np.log1p(-np.exp(np.minimum(tail - head, 0.0)))


def _log_integral(params, frequency, lower, upper):
    """log I(lower, upper) (host arrays); -inf where lower == upper. Customers share their
    (x, end) pairs (whole days) many to one: each tail is evaluated once per distinct pair."""
    frequency, lower, upper = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (frequency, lower, upper)))
    tails = []
    for end in (lower, upper):
        distinct_x, distinct_end, pair = _distinct_pairs(frequency.ravel(), end.ravel())
        tails.append(_log_tail(params, distinct_x, distinct_end)[pair].reshape(end.shape))
    return _log_between(*tails)


def _distinct_pairs(frequency, moment):
    """The distinct (frequency, moment) rows and where each row's pair is among them (as one
    complex number each: a one-dimensional unique, several times faster than rows')."""
    distinct, inverse = np.unique(frequency + 1j * moment, return_inverse=True)
    return distinct.real, distinct.imag, inverse.ravel()


def _likelihood_of(frequency, recency, T, weights, xp=np):
    """The total log-likelihood (Fader & Hardie 2005, eq. 19) as a function of the parameters::

        Gamma(r+x) alpha^r beta^s / Gamma(r) * [(alpha+T)^-(r+x) (beta+T)^-s + s I(t_x, T)]

    each row counted ``weights`` times. The integral's ends depend on (x, t_x) and (x, T)
    alone, far fewer distinct pairs than rows: the hypergeometric function runs on those, on
    the host (see the module docstring; ``xp`` arrays are brought there).
    """
    x, tx, T, weights = (to_host_array(v).astype(np.float64) for v in (frequency, recency, T, weights))
    at_tx, at_T = _distinct_pairs(x, tx), _distinct_pairs(x, T)

    def log_likelihood(params) -> float:
        r, alpha, s, beta = (float(v) for v in params)
        named = dict(zip(PARETO_NBD_PARAMETERS, (r, alpha, s, beta)))
        head = _log_tail(named, at_tx[0], at_tx[1])[at_tx[2]]
        tail = _log_tail(named, at_T[0], at_T[1])[at_T[2]]
        alive_at_T = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        dropped_between = np.log(s) + _log_between(head, tail)
        per_row = (
            scipy.special.gammaln(r + x) - scipy.special.gammaln(r) + r * np.log(alpha) + s * np.log(beta)
            + np.logaddexp(alive_at_T, dropped_between)
        )  # fmt: skip
        return float(weights @ per_row)

    return log_likelihood


def pareto_nbd_log_likelihood(params, frequency, recency, T, weights, xp=np):
    """Total log-likelihood, each row counted ``weights`` times (see :func:`_likelihood_of`)."""
    return _likelihood_of(frequency, recency, T, weights, xp)(params)


def fit_pareto_nbd(
    frequency, recency, T, *, weights=None, xp=np, min_repeat_customers: int = 100, **options
) -> ModelFit:
    """Maximum-likelihood Pareto/NBD on customer summaries (host arrays, recency and T in
    days; ``options``: ``start``, ``with_errors``, see ``_fitting.fit_summaries``)."""
    return fit_summaries(
        _likelihood_of, PARETO_NBD_PARAMETERS, ("alpha", "beta"), frequency, recency, T, weights=weights, xp=np,
        min_repeat_customers=min_repeat_customers, label="Pareto/NBD", **options,
    )  # fmt: skip


def p_alive(params, frequency, recency, T, xp=np):
    """P(alive at the end of calibration | x, t_x, T) (Fader & Hardie 2005, eq. 18):
    ``1 / (1 + s (alpha+T)^(r+x) (beta+T)^s I(t_x, T))``."""
    r, alpha, s, beta = (params[k] for k in PARETO_NBD_PARAMETERS)
    x, tx, T_host = (to_host_array(v).astype(np.float64) for v in (frequency, recency, T))
    log_odds = np.log(s) + (r + x) * np.log(alpha + T_host) + s * np.log(beta + T_host) + _log_integral(params, x, tx, T_host)
    return xp.asarray(1.0 / (1.0 + np.exp(np.minimum(log_odds, 700.0))))


def _one_minus_power_over(exponent, log_base, xp):
    """``(1 - exp(-exponent * log_base)) / exponent``, its limit ``log_base`` at exponent 0."""
    if abs(exponent) < 1e-10:
        return log_base
    return -xp.expm1(-exponent * log_base) / exponent


def expected_purchases_given_alive(params, t, frequency, T, xp=np):
    """Expected purchases in the ``t`` days after the calibration period of a customer alive
    at its end: ``(r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)]``."""
    r, alpha, s, beta = (params[k] for k in PARETO_NBD_PARAMETERS)
    growth = _one_minus_power_over(s - 1, xp.log1p(t / (beta + T)), xp)
    return (r + frequency) * (beta + T) / (alpha + T) * growth


def conditional_expected_purchases(params, t, frequency, recency, T, xp=np):
    """Expected purchases in the ``t`` days after the calibration period (Fader & Hardie 2005,
    eq. 22): P(alive) times :func:`expected_purchases_given_alive`."""
    return p_alive(params, frequency, recency, T, xp) * expected_purchases_given_alive(params, t, frequency, T, xp)


def expected_repeat_purchases(params, t) -> np.ndarray:
    """E[X(t)] for a new customer: ``r beta / (alpha (s-1)) [1 - (beta/(beta+t))^(s-1)]``
    (host arrays; ``t <= 0`` gives 0)."""
    r, alpha, s, beta = (params[k] for k in PARETO_NBD_PARAMETERS)
    t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
    return r * beta / alpha * _one_minus_power_over(s - 1, np.log1p(t / beta), np)


def p_no_purchase_given_alive(params, t, frequency, T, xp=np):
    """P(no purchase in the ``t`` days after calibration | alive at its end).

    Given alive, the rate and the dropout rate have posteriors ``Gamma(r + x, alpha + T)`` and
    ``Gamma(s, beta + T)``; no purchase means either staying alive through ``t`` without one, or
    dropping out at some u < t before one::

        ((alpha+T)/(alpha+T+t))^(r+x) ((beta+T)/(beta+T+t))^s
        + s (alpha+T)^(r+x) (beta+T)^s I(T, T + t)
    """
    r, alpha, s, beta = (params[k] for k in PARETO_NBD_PARAMETERS)
    x, T_host = (to_host_array(v).astype(np.float64) for v in (frequency, T))
    scale = (r + x) * np.log(alpha + T_host) + s * np.log(beta + T_host)
    through = scale - (r + x) * np.log(alpha + T_host + t) - s * np.log(beta + T_host + t)
    dropped = np.log(s) + scale + _log_integral(params, x, T_host, T_host + t)
    return xp.asarray(np.exp(np.logaddexp(through, dropped)))
