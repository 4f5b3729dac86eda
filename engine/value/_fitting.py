"""What every purchase and spend model shares: maximum likelihood over log parameters, the
fit's record, its standard errors and the ways a fit can be degenerate.

A fit is kept in days; :meth:`ModelFit.to_dict` reports it in the configured time unit (the
BTYD literature publishes weeks): the time-scale parameters (BG/NBD's alpha, Pareto/NBD's
alpha and beta) divide by the days in a unit, their standard errors with them, and the
log-likelihood gains ``log(days per unit)`` for every repeat purchase (each purchase time's
density is per unit of time).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.special
from scipy.optimize import minimize

from ..exceptions import InputDataError

__all__ = [
    "ModelFit", "TIME_UNITS", "at_bound", "check_summaries", "collapse_rows", "degeneracies", "fit_summaries",
    "format_params", "special_functions", "standard_errors",
]  # fmt: skip

# Days in each time unit the fits can be reported in.
TIME_UNITS = {"days": 1.0, "weeks": 7.0}

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
    ``at_bound`` the parameters the optimiser left at one of its bounds;
    ``time_parameters`` those measured in time and ``repeat_purchases`` the weighted total of
    repeat purchases fitted (both for reporting in another time unit).
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
    time_parameters: tuple[str, ...] = ()
    repeat_purchases: float = 0.0

    def to_dict(self, unit_days: float = 1.0) -> dict:
        """The fit as reported, in a time unit of ``unit_days`` days (see the module docstring)."""
        per_unit = {name: unit_days if name in self.time_parameters else 1.0 for name in self.params}
        return {
            "params": {name: value / per_unit[name] for name, value in self.params.items()},
            "standard_errors": {
                name: None if error is None else error / per_unit[name] for name, error in self.standard_errors.items()
            },
            "log_likelihood": self.log_likelihood + self.repeat_purchases * math.log(unit_days),
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
    """Distinct rows of the given equal-length host columns, in lexicographic order, and their
    total weight.

    Each row weighs 1 unless ``weights`` says otherwise (rows already collapsed elsewhere).
    Grouped by pandas: ``np.unique(axis=0)`` sorts rows as records, about 5x slower.
    """
    frame = pd.DataFrame({i: np.asarray(c, dtype=np.float64) for i, c in enumerate(columns)})
    inverse = frame.groupby(list(frame.columns), sort=True, dropna=False).ngroup().to_numpy()
    groups = int(inverse.max()) + 1 if len(inverse) else 0
    distinct = np.empty((groups, len(columns)))
    distinct[inverse] = frame.to_numpy()
    totals = np.bincount(inverse, weights=weights, minlength=groups).astype(np.float64)
    return [distinct[:, i] for i in range(len(columns))], totals


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


def check_summaries(frequency, recency, T, weights, min_repeat_customers, label):
    """Refuse summaries no purchase model can be fitted on, saying why (``label`` names the model).

    T = 0 is allowed: with T measured to the last day of calibration, a customer who first
    bought on that day has had no time to buy again (and adds nothing to the likelihood).
    """
    customers = int(round(weights.sum()))
    if customers == 0:
        raise InputDataError(f"cannot fit {label}: no customers with a purchase before as-of")
    if np.any(frequency < 0) or np.any(recency < 0) or np.any(recency > T):
        raise InputDataError(f"cannot fit {label}: summaries need frequency >= 0 and 0 <= recency <= T")
    if np.any((frequency == 0) & (recency != 0)):
        raise InputDataError(f"cannot fit {label}: a customer without repeat purchases has recency > 0")
    repeaters = int(round(weights[frequency > 0].sum()))
    if repeaters < min_repeat_customers:
        raise InputDataError(
            f"cannot fit {label}: {repeaters} of {customers} customers bought again before as-of, "
            f"fewer than the {min_repeat_customers} needed to estimate purchase and dropout rates"
        )
    if repeaters == customers:
        raise InputDataError(
            f"cannot fit {label}: every customer bought again, so nothing tells dropout from "
            "a low purchase rate (choose an earlier as-of or include one-time buyers)"
        )


def fit_summaries(
    likelihood_of, names, time_parameters, frequency, recency, T, *, weights, xp, min_repeat_customers, label,
    start=None, with_errors=True,
) -> ModelFit:  # fmt: skip
    """Maximum likelihood of a purchase model on customer summaries.

    Identical (frequency, recency, T) rows are collapsed first and weighted by their count;
    L-BFGS-B minimises the mean negative log-likelihood over log parameters, with time
    rescaled by the mean ``T`` so that every parameter starts near 1.

    Parameters
    ----------
    likelihood_of : callable
        ``likelihood_of(frequency, recency, T, weights, xp)`` -> a function of the parameters
        giving the total log-likelihood of those rows (it may prepare what every evaluation
        shares once).
    names, time_parameters : tuple of str
        The parameters, in the likelihood's order, and those measured in time.
    frequency, recency, T : array-like of shape (n,)
        Host arrays; recency and T in days.
    weights : array-like of shape (n,) or None
        Customers each row stands for (default 1 each).
    xp : module
        Array namespace the likelihood runs on.
    min_repeat_customers : int
        Refuse to fit with fewer customers who bought again.
    label : str
        The model's name in messages.
    start : dict, optional
        Parameters (days) to start from, such as a fit to nearly the same customers; by
        default every parameter starts at 1 on the rescaled time.
    with_errors : bool, default True
        Compute the standard errors (a Hessian: about half as many likelihood evaluations
        again as the fit); without, they are all None.

    Raises
    ------
    InputDataError
        Too few repeat buyers, none without repeats, or inconsistent summaries.
    """
    frequency, recency, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    weights = np.ones_like(T) if weights is None else np.asarray(weights, dtype=np.float64)
    check_summaries(frequency, recency, T, weights, min_repeat_customers, label)
    scale = float(np.average(T, weights=weights)) or 1.0
    (x, tx, t_end), counts = collapse_rows(frequency, recency / scale, T / scale, weights=weights)
    x, tx, t_end, collapsed_weights = (xp.asarray(v) for v in (x, tx, t_end, counts))
    total = float(counts.sum())
    log_likelihood = likelihood_of(x, tx, t_end, collapsed_weights, xp)

    def objective(log_params):
        return -log_likelihood(np.exp(log_params)) / total

    initial = np.zeros(len(names))
    if start is not None:
        rescaled = [start[name] / scale if name in time_parameters else start[name] for name in names]
        initial = np.clip(np.log(rescaled), *_LOG_BOUNDS)
    result = minimize(objective, initial, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * len(names))
    params = {
        name: float(value * scale) if name in time_parameters else float(value)
        for name, value in zip(names, np.exp(result.x))
    }
    unscaled = (xp.asarray(v) for v in (frequency, recency, T, weights))
    return ModelFit(
        params=params,
        standard_errors=standard_errors(objective, result.x, total, params) if with_errors else dict.fromkeys(params),
        log_likelihood=likelihood_of(*unscaled, xp)(tuple(params.values())),
        success=bool(result.success),
        iterations=int(result.nit),
        message=str(result.message),
        customers=int(round(total)),
        distinct_rows=len(counts),
        at_bound=at_bound(result.x, params),
        time_parameters=tuple(time_parameters),
        repeat_purchases=float(weights @ frequency),
    )
