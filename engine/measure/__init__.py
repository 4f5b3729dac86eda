"""Measuring campaigns and runs: lift of treated against control with confidence intervals, and
the drift of features and scores between runs (DESIGN 2, issue 32)."""

from ._drift import SHIFTED, drift_sample, drift_sources, population_stability, run_drift
from ._lift import LEVEL, POWER, mean_lift, minimum_detectable_effect, rate_lift
from ._pipeline import GUARDRAILS, MeasureSummary, measure_lift, read_outcomes

__all__ = [
    "measure_lift",
    "MeasureSummary",
    "read_outcomes",
    "GUARDRAILS",
    "rate_lift",
    "mean_lift",
    "minimum_detectable_effect",
    "LEVEL",
    "POWER",
    "run_drift",
    "drift_sample",
    "drift_sources",
    "population_stability",
    "SHIFTED",
]
