"""BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") and MBG/NBD.

While alive a customer buys at a Poisson rate ``lambda ~ Gamma(r, alpha)`` and after every
repeat purchase drops out for good with probability ``p ~ Beta(a, b)``. MBG/NBD (Batislam,
Denizel & Filiztekin 2007) also lets customers drop out right after their first purchase, so
that one-time buyers need not be alive. A customer is summarised by ``frequency`` x (repeat
purchases), ``recency`` t_x (first to last purchase) and ``T`` (first purchase to the end of
the calibration period), all in days here.

Both models share one form: given alive after x repeats, ``p ~ Beta(a, b + x + k)`` with
k = 0 (BG/NBD) or 1 (MBG/NBD, one more dropout chance survived), and dropping out right after
the last purchase is ``a / (b + x + k - 1)`` times as likely as still being alive, at rates
seen up to t_x instead of T (BG/NBD: only when x > 0).

The log-likelihood and the per-customer predictions work on any array namespace ``xp``
(numpy or cupy) with the special functions of ``_fitting.special_functions``. The Gauss
hypergeometric function of the conditional expectation runs on the host with SciPy:
``cupyx.scipy.special`` does not document a ``hyp2f1``, and it is one call per customer.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from ..backend import to_host_array
from ._fitting import ModelFit, fit_summaries, special_functions

__all__ = [
    "BGNBD_MODELS",
    "BGNBD_PARAMETERS",
    "bgnbd_log_likelihood",
    "conditional_expected_purchases",
    "expected_purchases_given_alive",
    "expected_repeat_purchases",
    "fit_bgnbd",
    "p_alive",
    "p_no_purchase_given_alive",
    "waiting_time_quantile",
]

BGNBD_PARAMETERS = ("r", "alpha", "a", "b")
# Model name -> extra dropout chances survived by an alive customer (the first purchase's).
BGNBD_MODELS = {"bgnbd": 0, "mbgnbd": 1}


def _surviving_b(model, b, frequency):
    """Second Beta parameter of dropout given alive after ``frequency`` repeat purchases."""
    return b + frequency + BGNBD_MODELS[model]


def _may_have_dropped(model, frequency):
    """Whether the customer can have dropped out right after their last purchase."""
    return frequency > 0 if BGNBD_MODELS[model] == 0 else frequency >= 0


def bgnbd_log_likelihood(params, frequency, recency, T, weights, xp, model="bgnbd"):
    """Total log-likelihood, each row counted ``weights`` times.

    Parameters
    ----------
    params : sequence of 4 floats
        r, alpha, a, b.
    frequency, recency, T, weights : arrays of shape (n,) in namespace ``xp``
    xp : module
        numpy or cupy.
    model : {"bgnbd", "mbgnbd"}

    Returns
    -------
    float
    """
    r, alpha, a, b = (float(v) for v in params)
    gammaln = special_functions(xp).gammaln
    x = frequency
    b_alive = _surviving_b(model, b, x)
    common = (
        gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        + gammaln(a + b) - gammaln(b) + gammaln(b_alive) - gammaln(a + b_alive)
    )  # fmt: skip
    still_buying = -(r + x) * xp.log(alpha + T)
    may_have_dropped = _may_have_dropped(model, x)
    # b_alive - 1 > 0 exactly where dropping out is possible; elsewhere the value is unused.
    dropped = np.log(a) - xp.log(xp.where(may_have_dropped, b_alive - 1, 1.0)) - (r + x) * xp.log(alpha + recency)
    per_row = common + xp.where(may_have_dropped, xp.logaddexp(still_buying, dropped), still_buying)
    return float(xp.sum(weights * per_row))



def fit_bgnbd(
    frequency, recency, T, *, weights=None, model="bgnbd", xp=np, min_repeat_customers: int = 100, **options
) -> ModelFit:
    """Maximum-likelihood BG/NBD (or MBG/NBD, ``model="mbgnbd"``) on customer summaries (host
    arrays, recency and T in days; ``options``: ``start``, ``with_errors``, see
    ``_fitting.fit_summaries``)."""

    def likelihood_of(x, tx, T, weights, xp):
        return lambda params: bgnbd_log_likelihood(params, x, tx, T, weights, xp, model)

    return fit_summaries(
        likelihood_of, BGNBD_PARAMETERS, ("alpha",), frequency, recency, T, weights=weights, xp=xp,
        min_repeat_customers=min_repeat_customers, label="BG/NBD" if model == "bgnbd" else "MBG/NBD", **options,
    )  # fmt: skip

def expected_repeat_purchases(params, t, model="bgnbd") -> np.ndarray:
    """E[X(t)]: repeat purchases a new customer is expected to make in their first ``t`` days
    (host arrays; ``t <= 0`` gives 0). BG/NBD: Fader, Hardie & Lee (2005) eq. 9,
    ``(a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]``; MBG/NBD:
    Batislam et al. (2007), ``b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]``.
    """
    r, alpha, a, b = (params[name] for name in BGNBD_PARAMETERS)
    t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
    k = BGNBD_MODELS[model]
    scale = (a + b - 1 + k) / (a - 1) if k == 0 else b / (a - 1)
    hyper = scipy.special.hyp2f1(r, b + k, a + b - 1 + k, t / (alpha + t))
    return scale * (1 - (alpha / (alpha + t)) ** r * hyper)


def p_alive(params, frequency, recency, T, xp=np, model="bgnbd"):
    """P(still alive at the end of calibration | frequency, recency, T) (FHL 2005, eq. 13)."""
    r, alpha, a, b = (params[k] for k in BGNBD_PARAMETERS)
    b_alive = _surviving_b(model, b, frequency)
    may_have_dropped = _may_have_dropped(model, frequency)
    log_odds = (
        np.log(a) - xp.log(xp.where(may_have_dropped, b_alive - 1, 1.0))
        + (r + frequency) * (xp.log(alpha + T) - xp.log(alpha + recency))
    )  # fmt: skip
    dropped_odds = xp.where(may_have_dropped, xp.exp(xp.minimum(log_odds, 700.0)), 0.0)
    return 1.0 / (1.0 + dropped_odds)


def p_no_purchase_given_alive(params, t, frequency, T, xp=np):
    """P(no purchase in the ``t`` days after the calibration period | alive at its end): the
    rate's posterior is ``Gamma(r + x, alpha + T)`` and a customer alive now buys again."""
    r, alpha = params["r"], params["alpha"]
    return xp.exp(-(r + frequency) * xp.log1p(t / (alpha + T)))


def expected_purchases_given_alive(params, t, frequency, T, xp=np, model="bgnbd"):
    """Expected purchases in the ``t`` days after the calibration period of a customer alive
    at its end (FHL 2005, eq. 10 without P(alive)).

    ``params`` must have ``a != 1`` (the closed form divides by ``a - 1``).
    """
    r, alpha, a, b = (params[k] for k in BGNBD_PARAMETERS)
    x = frequency
    b_alive = _surviving_b(model, b, x)
    z = t / (alpha + T + t)
    # On the host: see the module docstring.
    host = [to_host_array(v) for v in (r + x, b_alive, a + b_alive - 1, z)]
    hypergeometric = xp.asarray(scipy.special.hyp2f1(*host))
    decay = xp.exp((r + x) * (xp.log(alpha + T) - xp.log(alpha + T + t)))
    return (a + b_alive - 1) / (a - 1) * (1.0 - decay * hypergeometric)


def conditional_expected_purchases(params, t, frequency, recency, T, xp=np, model="bgnbd"):
    """Expected purchases in the ``t`` days after the calibration period (FHL 2005, eq. 10):
    P(alive) times :func:`expected_purchases_given_alive`."""
    given_alive = expected_purchases_given_alive(params, t, frequency, T, xp, model)
    return p_alive(params, frequency, recency, T, xp, model) * given_alive


def waiting_time_quantile(params, q, frequency, T, xp=np, *, within=None):
    """Quantile ``q`` of the days from as-of to the next purchase, given the customer is alive.

    Given alive, the rate's posterior is ``Gamma(r + x, alpha + T)`` and the next purchase
    comes after an exponential wait, so ``P(W > w) = ((alpha + T) / (alpha + T + w)) ** (r + x)``
    (a Lomax law). With ``within`` (days), the quantile is of the wait given that the next
    purchase comes within that many days.
    """
    r, alpha = params["r"], params["alpha"]
    shape, scale = r + frequency, alpha + T
    if within is not None:
        q = q * -xp.expm1(-shape * xp.log1p(within / scale))
    return scale * xp.expm1(-xp.log1p(-q) / shape)
