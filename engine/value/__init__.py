"""Customer lifetime value: BG/NBD (or MBG/NBD) purchases and Gamma-Gamma spend (DESIGN 2)."""

from ._bgnbd import (
    BGNBD_PARAMETERS,
    MODELS,
    ModelFit,
    bgnbd_log_likelihood,
    conditional_expected_purchases,
    degeneracies,
    expected_repeat_purchases,
    fit_bgnbd,
    format_params,
    p_alive,
    waiting_time_quantile,
)
from ._gamma_gamma import (
    GAMMA_GAMMA_PARAMETERS,
    conditional_expected_spend,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)
from ._pipeline import ValueSummary, estimate_value
from ._summaries import purchase_days, summarise

__all__ = [
    # pipeline
    "estimate_value",
    "ValueSummary",
    # summaries
    "purchase_days",
    "summarise",
    # purchase model
    "BGNBD_PARAMETERS",
    "MODELS",
    "ModelFit",
    "bgnbd_log_likelihood",
    "degeneracies",
    "expected_repeat_purchases",
    "fit_bgnbd",
    "format_params",
    "p_alive",
    "conditional_expected_purchases",
    "waiting_time_quantile",
    # spend model
    "GAMMA_GAMMA_PARAMETERS",
    "gamma_gamma_log_likelihood",
    "fit_gamma_gamma",
    "conditional_expected_spend",
]
