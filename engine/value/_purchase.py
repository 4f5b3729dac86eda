"""The purchase models by name: one place that knows which module answers for which model.

BG/NBD and MBG/NBD (``_bgnbd``) let customers drop out only right after a purchase; Pareto/NBD
(``_pareto``) at any time. All take summaries in days and parameters keyed by name, and share
the waiting time to the next purchase given alive (``_bgnbd.waiting_time_quantile``: only the
purchase rate's posterior, ``Gamma(r + x, alpha + T)`` in every model, enters it; for
Pareto/NBD it is the wait of a customer who stays alive until then).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import UsageError
from . import _bgnbd, _pareto
from ._fitting import ModelFit

__all__ = [
    "MODELS", "MODEL_LABELS", "conditional_expected_purchases", "expected_purchases_given_alive",
    "expected_repeat_purchases", "fit_purchase_model", "p_alive", "p_no_purchase_given_alive",
]  # fmt: skip

MODELS = ("bgnbd", "mbgnbd", "pareto_nbd")
MODEL_LABELS = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "pareto_nbd": "Pareto/NBD"}


def _known(model: str) -> str:
    if model not in MODELS:
        raise UsageError(f"unknown purchase model {model!r}; choose one of {', '.join(MODELS)}")
    return model


def fit_purchase_model(
    frequency, recency, T, *, weights=None, model="bgnbd", xp=np, min_repeat_customers: int = 100, **options
) -> ModelFit:
    """Maximum-likelihood fit of ``model`` on customer summaries (host arrays, recency and T
    in days; ``options``: ``start``, ``with_errors``, see ``_fitting.fit_summaries``).

    Raises
    ------
    UsageError
        An unknown ``model``.
    InputDataError
        Too few repeat buyers, none without repeats, or inconsistent summaries.
    """
    if _known(model) == "pareto_nbd":
        return _pareto.fit_pareto_nbd(
            frequency, recency, T, weights=weights, xp=xp, min_repeat_customers=min_repeat_customers, **options
        )
    return _bgnbd.fit_bgnbd(
        frequency, recency, T, weights=weights, model=model, xp=xp, min_repeat_customers=min_repeat_customers,
        **options,
    )  # fmt: skip


def p_alive(params, frequency, recency, T, xp=np, model="bgnbd"):
    """P(alive at the end of calibration | frequency, recency, T)."""
    if _known(model) == "pareto_nbd":
        return _pareto.p_alive(params, frequency, recency, T, xp)
    return _bgnbd.p_alive(params, frequency, recency, T, xp, model)


def conditional_expected_purchases(params, t, frequency, recency, T, xp=np, model="bgnbd"):
    """Expected purchases in the ``t`` days after the calibration period."""
    if _known(model) == "pareto_nbd":
        return _pareto.conditional_expected_purchases(params, t, frequency, recency, T, xp)
    return _bgnbd.conditional_expected_purchases(params, t, frequency, recency, T, xp, model)


def expected_purchases_given_alive(params, t, frequency, T, xp=np, model="bgnbd"):
    """Expected purchases in the ``t`` days after the calibration period of a customer alive
    at its end: :func:`conditional_expected_purchases` is P(alive) times it."""
    if _known(model) == "pareto_nbd":
        return _pareto.expected_purchases_given_alive(params, t, frequency, T, xp)
    return _bgnbd.expected_purchases_given_alive(params, t, frequency, T, xp, model)


def expected_repeat_purchases(params, t, model="bgnbd") -> np.ndarray:
    """E[X(t)]: repeat purchases a new customer makes in their first ``t`` days (host arrays)."""
    if _known(model) == "pareto_nbd":
        return _pareto.expected_repeat_purchases(params, t)
    return _bgnbd.expected_repeat_purchases(params, t, model)


def p_no_purchase_given_alive(params, t, frequency, T, xp=np, model="bgnbd"):
    """P(no purchase in the ``t`` days after calibration | alive at its end)."""
    if _known(model) == "pareto_nbd":
        return _pareto.p_no_purchase_given_alive(params, t, frequency, T, xp)
    return _bgnbd.p_no_purchase_given_alive(params, t, frequency, T, xp)
