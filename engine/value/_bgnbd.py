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
(numpy or cupy) with the special functions of :func:`special_functions`. The Gauss
hypergeometric function of the conditional expectation runs on the host with SciPy:
``cupyx.scipy.special`` does not document a ``hyp2f1``, and it is one call per customer.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import scipy.special
from scipy.optimize import minimize

from ..backend import to_host_array
from ..exceptions import InputDataError, UsageError

__all__ = [
    "BGNBD_PARAMETERS",
    "MODELS",
    "ModelFit",
    "at_bound",
    "bgnbd_log_likelihood",
    "collapse_rows",
    "standard_errors",
    "conditional_expected_purchases",
    "degeneracies",
    "expected_repeat_purchases",
    "fit_bgnbd",
    "format_params",
    "p_alive",
    "special_functions",
    "waiting_time_quantile",
]

BGNBD_PARAMETERS = ("r", "alpha", "a", "b")
# Model name -> extra dropout chances survived by an alive customer (the first purchase's).
MODELS = {"bgnbd": 0, "mbgnbd": 1}
# The optimiser works on log parameters; these bounds only keep it out of overflow.
_LOG_BOUNDS = (-12.0, 12.0)
# A standard error this many times its estimate: the data say next to nothing about it
# (Online Retail gave b = 924 with a standard error of 7,132).
_UNPINNED = 5.0


def special_functions(xp):
    """``scipy.special`` for numpy, ``cupyx.scipy.special`` for cupy (``gammaln`` is all we use)."""
    if xp is np:
        return scipy.special
    return importlib.import_module("cupyx.scipy.special")


@dataclass(frozen=True)
class ModelFit:
    """A fitted model: parameters, the maximised log-likelihood and how the optimiser ended.

    ``params`` maps parameter names to values in the data's time unit (days);
    ``standard_errors`` holds each one's asymptotic standard error (None when the data do
    not pin the parameters down: the observed information is not positive definite);
    ``log_likelihood`` is the total over customers; ``customers`` the rows fitted and
    ``distinct_rows`` how many distinct summaries the likelihood was evaluated on;
    ``at_bound`` the parameters the optimiser left at one of its bounds.
    """

    params: dict[str, float]
    standard_errors: dict[str, float | None]
    log_likelihood: float
    success: bool
    iterations: int
    message: str
    customers: int
    distinct_rows: int
    at_bound: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "standard_errors": self.standard_errors,
            "log_likelihood": self.log_likelihood,
            "converged": self.success,
            "iterations": self.iterations,
            "message": self.message,
            "customers": self.customers,
            "distinct_rows": self.distinct_rows,
            "degenerate": degeneracies(self),
        }


def at_bound(log_params: np.ndarray, names) -> tuple[str, ...]:
    """The parameters whose log the optimiser left at one of :data:`_LOG_BOUNDS`."""
    low, high = _LOG_BOUNDS
    return tuple(name for name, value in zip(names, log_params) if min(value - low, high - value) < 1e-3)


def degeneracies(fit: ModelFit) -> list[str]:
    """Why a fit, converged or not, should not be trusted, in plain words; empty when nothing
    is wrong: a parameter at the optimiser's bound, an information matrix that pins nothing
    down, or a standard error over :data:`_UNPINNED` times its estimate."""
    reasons = [f"{name} sits at the optimiser's bound ({fit.params[name]:.3g})" for name in fit.at_bound]
    errors = fit.standard_errors
    if errors and all(error is None for error in errors.values()):
        reasons.append("the data do not pin the parameters down (the information matrix is not positive definite)")
    reasons += [
        f"{name} = {fit.params[name]:.4g} has a standard error of {error:,.4g}, {error / abs(fit.params[name]):,.0f}x the estimate"
        for name, error in errors.items()
        if error is not None and error > _UNPINNED * abs(fit.params[name])
    ]
    return reasons


def format_params(fit: dict) -> str:
    """``r=0.68±0.011, alpha=...`` from a fit's ``to_dict()`` (no ± where there is no error)."""
    errors = fit.get("standard_errors") or {}
    return ", ".join(
        f"{name}={value:.4g}" + ("" if errors.get(name) is None else f"±{errors[name]:.2g}")
        for name, value in fit["params"].items()
    )


def collapse_rows(*columns: np.ndarray, weights=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of the given equal-length host columns and their total weight.

    Each row weighs 1 unless ``weights`` says otherwise (rows already collapsed elsewhere).
    """
    stacked = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    distinct, inverse = np.unique(stacked, axis=0, return_inverse=True)
    totals = np.bincount(inverse.ravel(), weights=weights, minlength=len(distinct)).astype(np.float64)
    return [distinct[:, i] for i in range(distinct.shape[1])], totals


def standard_errors(objective, log_params: np.ndarray, customers: float, params: dict) -> dict:
    """Asymptotic standard errors of ``params`` from the observed information.

    ``objective`` is the mean negative log-likelihood over log parameters and ``log_params``
    its minimum. Its Hessian there (central differences) times ``customers`` is the
    information of the log parameters; their standard errors are the parameters' relative
    ones (delta method). All None when the information is not positive definite.
    """
    step = 1e-4
    size = len(log_params)
    unit = np.eye(size) * step
    hessian = np.empty((size, size))
    for i in range(size):
        for j in range(i, size):
            corners = (objective(log_params + unit[i] + unit[j]) - objective(log_params + unit[i] - unit[j])
                       - objective(log_params - unit[i] + unit[j]) + objective(log_params - unit[i] - unit[j]))  # fmt: skip
            hessian[i, j] = hessian[j, i] = corners / (4 * step**2)
    information = hessian * customers
    if not np.all(np.isfinite(information)) or np.linalg.eigvalsh(information).min() <= 0:
        return dict.fromkeys(params)
    relative = np.sqrt(np.diag(np.linalg.inv(information)))
    return {name: float(value * error) for (name, value), error in zip(params.items(), relative)}


def _surviving_b(model, b, frequency):
    """Second Beta parameter of dropout given alive after ``frequency`` repeat purchases."""
    return b + frequency + MODELS[model]


def _may_have_dropped(model, frequency):
    """Whether the customer can have dropped out right after their last purchase."""
    return frequency > 0 if MODELS[model] == 0 else frequency >= 0


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


def _check_summaries(frequency, recency, T, weights, min_repeat_customers):
    customers = int(round(weights.sum()))
    if customers == 0:
        raise InputDataError("cannot fit BG/NBD: no customers with a purchase before as-of")
    if np.any(frequency < 0) or np.any(recency < 0) or np.any(recency > T) or np.any(T <= 0):
        raise InputDataError("cannot fit BG/NBD: summaries need frequency >= 0 and 0 <= recency <= T, T > 0")
    if np.any((frequency == 0) & (recency != 0)):
        raise InputDataError("cannot fit BG/NBD: a customer without repeat purchases has recency > 0")
    repeaters = int(round(weights[frequency > 0].sum()))
    if repeaters < min_repeat_customers:
        raise InputDataError(
            f"cannot fit BG/NBD: {repeaters} of {customers} customers bought again before as-of, "
            f"fewer than the {min_repeat_customers} needed to estimate purchase and dropout rates"
        )
    if repeaters == customers:
        raise InputDataError(
            "cannot fit BG/NBD: every customer bought again, so nothing tells dropout from "
            "a low purchase rate (choose an earlier as-of or include one-time buyers)"
        )


def fit_bgnbd(
    frequency, recency, T, *, weights=None, model="bgnbd", xp=np, min_repeat_customers: int = 100
) -> ModelFit:
    """Maximum-likelihood BG/NBD (or MBG/NBD) on customer summaries.

    Identical (frequency, recency, T) rows are collapsed first and weighted by their count;
    L-BFGS-B minimises the mean negative log-likelihood over log parameters, with time
    rescaled by the mean ``T`` so that every parameter starts near 1.

    Parameters
    ----------
    frequency, recency, T : array-like of shape (n,)
        Host arrays; recency and T in days.
    weights : array-like of shape (n,), optional
        Customers each row stands for (default 1 each).
    model : {"bgnbd", "mbgnbd"}, default "bgnbd"
    xp : module, default numpy
        Array namespace the likelihood runs on.
    min_repeat_customers : int, default 100
        Refuse to fit with fewer customers who bought again.

    Raises
    ------
    UsageError
        An unknown ``model``.
    InputDataError
        Too few repeat buyers, none without repeats, or inconsistent summaries.
    """
    if model not in MODELS:
        raise UsageError(f"unknown purchase model {model!r}; choose one of {', '.join(MODELS)}")
    frequency, recency, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    weights = np.ones_like(T) if weights is None else np.asarray(weights, dtype=np.float64)
    _check_summaries(frequency, recency, T, weights, min_repeat_customers)
    scale = float(np.average(T, weights=weights))
    (x, tx, t_end), counts = collapse_rows(frequency, recency / scale, T / scale, weights=weights)
    x, tx, t_end, collapsed_weights = (xp.asarray(v) for v in (x, tx, t_end, counts))
    total = float(counts.sum())

    def objective(log_params):
        return -bgnbd_log_likelihood(np.exp(log_params), x, tx, t_end, collapsed_weights, xp, model) / total

    result = minimize(objective, np.zeros(4), method="L-BFGS-B", bounds=[_LOG_BOUNDS] * 4)
    r, alpha, a, b = np.exp(result.x)
    params = {"r": float(r), "alpha": float(alpha * scale), "a": float(a), "b": float(b)}
    unscaled = (xp.asarray(v) for v in (frequency, recency, T, weights))
    return ModelFit(
        params=params,
        standard_errors=standard_errors(objective, result.x, total, params),
        log_likelihood=bgnbd_log_likelihood(tuple(params.values()), *unscaled, xp, model),
        success=bool(result.success),
        iterations=int(result.nit),
        message=str(result.message),
        customers=int(round(total)),
        distinct_rows=len(counts),
        at_bound=at_bound(result.x, params),
    )


def expected_repeat_purchases(params, t, model="bgnbd") -> np.ndarray:
    """E[X(t)]: repeat purchases a new customer is expected to make in their first ``t`` days
    (host arrays; ``t <= 0`` gives 0). BG/NBD: Fader, Hardie & Lee (2005) eq. 9,
    ``(a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]``; MBG/NBD:
    Batislam et al. (2007), ``b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]``.
    """
    r, alpha, a, b = (params[name] for name in BGNBD_PARAMETERS)
    t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
    k = MODELS[model]
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


def conditional_expected_purchases(params, t, frequency, recency, T, xp=np, model="bgnbd"):
    """Expected purchases in the ``t`` days after the calibration period (FHL 2005, eq. 10).

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
    given_alive = (a + b_alive - 1) / (a - 1) * (1.0 - decay * hypergeometric)
    return p_alive(params, x, recency, T, xp, model) * given_alive


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
