"""Which purchase model to use, chosen on evidence from inside the history (issue 31).

The last ``window`` days before as-of are held out: every candidate model is fitted on the
customers' history before them and scored on them by the per-customer mean absolute error of
its expected purchases, beside the naive forecast every model has to beat (each customer
buying on at their calibration rate). The model with the lowest error is used; when none
beats the naive forecast, the naive forecast makes the predictions (the best model is still
fitted, for its P(alive) and its diagnosis) and the stage says so. Nothing after as-of is
read, so the choice never sees the holdout the run is judged on.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InputDataError
from ._predict import naive_purchases
from ._purchase import MODELS, conditional_expected_purchases, fit_purchase_model

__all__ = ["CANDIDATES", "choose_model", "choice_window"]

CANDIDATES = tuple(MODELS)
# The inner holdout is at most this long, and never more than a third of the history, so
# the calibration window keeps most of it.
_LONGEST_WINDOW_DAYS = 90


def choice_window(horizon_days: int, history_days: int) -> int:
    """Days held out at the end of the history to choose the model on (0: too short a history)."""
    return max(0, min(horizon_days, _LONGEST_WINDOW_DAYS, history_days // 3))


def choose_model(
    rows: np.ndarray, window_days: int, *, min_repeat_customers: int, xp=np, unit_days=1.0
) -> tuple[dict, dict]:
    """Fit every candidate on the calibration summaries ``rows`` and score it on the window.

    Parameters
    ----------
    rows : ndarray (n x 5)
        frequency, recency, T (as of the window's start), purchases in the window, and how many
        customers share the row.

    unit_days : float, default 1
        Days in the time unit the parameters are reported in.

    Returns
    -------
    choice : dict
        ``chosen`` (the best model of :data:`CANDIDATES`), ``forecast`` (it, or ``"naive"``
        when ``every_model_loses``), ``window_days``, ``customers``, ``naive_mae``, ``scores``
        (per candidate: ``mae``, ``mae_vs_naive``, ``params``, or ``failed`` with the
        reason) and ``every_model_loses``.
    starts : dict
        Each fitted candidate's parameters in days: a start for fitting it on the whole
        history, which the window's customers nearly are.

    Raises
    ------
    InputDataError
        No candidate could be fitted on the calibration window.
    """
    x, tx, T, actual, weights = (rows[:, i] for i in range(5))
    customers = float(weights.sum())
    naive = naive_purchases(x, T, window_days)
    naive_mae = float((weights * np.abs(naive - actual)).sum() / customers)
    scores, starts = {}, {}
    for model in CANDIDATES:
        try:
            # Only the predictions are scored: no standard errors.
            fit = fit_purchase_model(x, tx, T, weights=weights, model=model, xp=xp,
                                     min_repeat_customers=min_repeat_customers, with_errors=False)  # fmt: skip
        except InputDataError as error:
            scores[model] = {"failed": str(error)}
            continue
        expected = np.asarray(conditional_expected_purchases(fit.params, window_days, x, tx, T, np, model))
        mae = float((weights * np.abs(expected - actual)).sum() / customers)
        scores[model] = {"mae": mae, "mae_vs_naive": mae / max(naive_mae, 1e-12), "params": fit.to_dict(unit_days)["params"]}
        starts[model] = fit.params
    fitted = [model for model in CANDIDATES if "mae" in scores[model]]
    if not fitted:
        raise InputDataError(
            "cannot choose a purchase model: " + "; ".join(f"{m}: {scores[m]['failed']}" for m in CANDIDATES)
        )
    chosen = min(fitted, key=lambda model: scores[model]["mae"])
    every_model_loses = scores[chosen]["mae"] > naive_mae
    choice = {
        "chosen": chosen,
        "forecast": "naive" if every_model_loses else chosen,
        "window_days": window_days,
        "customers": int(round(customers)),
        "naive_mae": naive_mae,
        "scores": scores,
        "every_model_loses": every_model_loses,
    }
    return choice, starts
