"""Activation: campaign audiences from the run's outputs, with consent, suppressions, frequency
caps and control groups (DESIGN 2, issue 27)."""

from ._actions import NO_ACTION, Chosen, next_best_actions
from ._catalog import Catalog, condition_mask, read_catalog
from ._holdout import IMBALANCED, assign_holdout, balance_sums, balance_table, control_share_draws, imbalanced
from ._pipeline import ActivationSummary, Selected, activate, select_audiences

__all__ = [
    "activate",
    "next_best_actions",
    "Chosen",
    "NO_ACTION",
    "ActivationSummary",
    "Selected",
    "select_audiences",
    "Catalog",
    "read_catalog",
    "condition_mask",
    "IMBALANCED",
    "assign_holdout",
    "balance_sums",
    "balance_table",
    "control_share_draws",
    "imbalanced",
]
