"""Customer lifetime value: BG/NBD, MBG/NBD or Pareto/NBD purchases and Gamma-Gamma spend (DESIGN 2)."""

from ._bgnbd import BGNBD_PARAMETERS, bgnbd_log_likelihood, fit_bgnbd, waiting_time_quantile
from ._fitting import TIME_UNITS, ModelFit, degeneracies, format_params
from ._gamma_gamma import (
    GAMMA_GAMMA_PARAMETERS,
    conditional_expected_spend,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)
from ._pareto import PARETO_NBD_PARAMETERS, fit_pareto_nbd, pareto_nbd_log_likelihood
from ._pipeline import ValueSummary, estimate_value
from ._purchase import (
    MODEL_LABELS,
    MODELS,
    conditional_expected_purchases,
    expected_repeat_purchases,
    fit_purchase_model,
    p_alive,
    p_no_purchase_given_alive,
)
from ._rescore import rescore_value, summaries_writer
from ._summaries import purchase_days, summarise

__all__ = [
    # pipeline
    "estimate_value",
    "rescore_value",
    "summaries_writer",
    "ValueSummary",
    # summaries
    "purchase_days",
    "summarise",
    # fits
    "ModelFit",
    "TIME_UNITS",
    "degeneracies",
    "format_params",
    # purchase models
    "MODELS",
    "MODEL_LABELS",
    "fit_purchase_model",
    "p_alive",
    "p_no_purchase_given_alive",
    "conditional_expected_purchases",
    "expected_repeat_purchases",
    "waiting_time_quantile",
    "BGNBD_PARAMETERS",
    "bgnbd_log_likelihood",
    "fit_bgnbd",
    "PARETO_NBD_PARAMETERS",
    "pareto_nbd_log_likelihood",
    "fit_pareto_nbd",
    # spend model
    "GAMMA_GAMMA_PARAMETERS",
    "gamma_gamma_log_likelihood",
    "fit_gamma_gamma",
    "conditional_expected_spend",
]
