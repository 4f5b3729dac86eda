"""Propensity scores (DESIGN 2): point-in-time labels, random forest / logistic / gradient
boosting models, calibrated probabilities with percentiles, bands and reasons, honest test
metrics, a fairness audit, scoring of any feature table, and training on a user's own table.
"""

from ._fairness import FOUR_FIFTHS, fairness_audit, flagged_groups
from ._labels import LABEL, ORIGIN, TARGETS, label_customers, labelled_features, training_origin, training_origins
from ._metrics import calibration_table, classification_metrics, lift_table, permutation_importance
from ._monitor import MonitorLimits, monitor_scores
from ._models import MODELS, SPLITS, PropensityFit, make_estimator, split_customers
from ._pipeline import SCORE_COLUMNS, ScoreSummary, TrainSummary, score_propensity, train_propensity
from ._prepare import ModelInputs, frame_from_table
from ._reasons import REASON_COLUMNS, ReasonTable
from ._scores import BANDS, Bands, Calibrator, percentile_rank, reference_quantiles
from ._table import coerce_columns, parse_labels, read_customer_table, train_table
from ._train import Trained, fit_and_evaluate, load_model, read_model_document, write_model

__all__ = [
    # the stage
    "TrainSummary",
    "ScoreSummary",
    "train_propensity",
    "score_propensity",
    "SCORE_COLUMNS",
    "train_table",
    "read_customer_table",
    "coerce_columns",
    "parse_labels",
    # labels
    "LABEL",
    "TARGETS",
    "label_customers",
    "labelled_features",
    "training_origin",
    "training_origins",
    "ORIGIN",
    # the model
    "MODELS",
    "SPLITS",
    "ModelInputs",
    "frame_from_table",
    "PropensityFit",
    "make_estimator",
    "split_customers",
    "Trained",
    "fit_and_evaluate",
    "load_model",
    "read_model_document",
    "write_model",
    # scores
    "BANDS",
    "Bands",
    "Calibrator",
    "percentile_rank",
    "reference_quantiles",
    "REASON_COLUMNS",
    "ReasonTable",
    # measurement
    "calibration_table",
    "classification_metrics",
    "lift_table",
    "permutation_importance",
    "MonitorLimits",
    "monitor_scores",
    "FOUR_FIFTHS",
    "fairness_audit",
    "flagged_groups",
]
