"""Segment discovery (DESIGN 2): prepared features, k-means with k chosen by silhouette,
micro-segments under a Ward tree, DBSCAN niches and outliers, bootstrap stability, profiles,
behavioural names, decision-tree rules, the classic RFM grid as a baseline, and comparison of
two runs. Fitted on a sample, every customer placed per partition.
"""

from ._baseline import NO_PURCHASES, RFM_GRID, outcome_separation, rfm_grid
from ._compare import SegmentComparison, compare_runs
from ._distributed import fit_distributed_kmeans
from ._fit import SegmentFit, fit_segments
from ._hierarchy import MicroSegments, assign_micro, fit_micro_segments, ward_linkage
from ._kmeans import KMeansChoice, SegmentModel, assign, choose_k
from ._niches import NicheModel, fit_niches, knee_eps, place_niches
from ._pipeline import SegmentSummary, build_segments
from ._prepare import DEFAULT_FEATURES, Preparation
from ._profiles import NAME_RULES, name_segments, partition_sums, profile_table
from ._rules import NO_RULE, SegmentRules
from ._stability import STABLE_JACCARD, bootstrap_stability

__all__ = [
    # the stage
    "SegmentSummary",
    "build_segments",
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
    "NAME_RULES",
    "name_segments",
    "partition_sums",
    "profile_table",
    "NO_RULE",
    "SegmentRules",
    "NO_PURCHASES",
    "RFM_GRID",
    "outcome_separation",
    "rfm_grid",
]
