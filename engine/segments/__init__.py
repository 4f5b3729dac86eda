"""Segment discovery (DESIGN 2): prepared features, k-means with k chosen by stability and
usefulness, micro-segments under a Ward tree, DBSCAN niches and outliers, bootstrap
stability, profiles, names and sentences in plain words, one rule per segment, the RFM grid
(named, and cut into as many groups) as the baseline measured against on what customers did
next, and comparison of two runs. Fitted on a sample, every customer placed per partition;
later features placed again with the saved model (``assign_segments``).
"""

from ._assign import assign_segments
from ._backtest import MEASURES, VERDICTS, adjusted_eta_squared, against_what_happened, compare_at_equal_groups
from ._baseline import NO_PURCHASES, RFM_CUTS, RFM_GRID, outcome_separation, rfm_cells, rfm_grid, rfm_groups
from ._compare import SegmentComparison, compare_runs
from ._distributed import fit_distributed_kmeans
from ._fit import SegmentFit, fit_segments
from ._hierarchy import MicroSegments, assign_micro, fit_micro_segments, ward_linkage
from ._kmeans import KMeansChoice, SegmentModel, assign, choose_k
from ._niches import NicheModel, fit_niches, knee_eps, place_niches
from ._pipeline import SegmentSummary, build_segments
from ._prepare import DEFAULT_FEATURES, Preparation
from ._profiles import NAME_WORDS, name_segments, partition_sums, profile_table
from ._rules import FEATURE_PHRASES, MAX_CONDITIONS, WEAK_BELOW, SegmentRules
from ._stability import STABLE_JACCARD, bootstrap_stability

__all__ = [
    # the stage
    "SegmentSummary",
    "build_segments",
    "assign_segments",
    "compare_runs",
    "SegmentComparison",
    # the model
    "DEFAULT_FEATURES",
    "Preparation",
    "SegmentFit",
    "fit_segments",
    "KMeansChoice",
    "SegmentModel",
    "assign",
    "choose_k",
    "fit_distributed_kmeans",
    "MicroSegments",
    "assign_micro",
    "fit_micro_segments",
    "ward_linkage",
    "NicheModel",
    "fit_niches",
    "knee_eps",
    "place_niches",
    "STABLE_JACCARD",
    "bootstrap_stability",
    # descriptions and baselines
    "NAME_WORDS",
    "name_segments",
    "partition_sums",
    "profile_table",
    "FEATURE_PHRASES",
    "MAX_CONDITIONS",
    "WEAK_BELOW",
    "SegmentRules",
    "NO_PURCHASES",
    "RFM_CUTS",
    "RFM_GRID",
    "outcome_separation",
    "rfm_cells",
    "rfm_grid",
    "rfm_groups",
    "MEASURES",
    "VERDICTS",
    "adjusted_eta_squared",
    "against_what_happened",
    "compare_at_equal_groups",
]
