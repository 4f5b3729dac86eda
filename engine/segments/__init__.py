"""Segment discovery: prepared features, k-means with k chosen by silhouette, profiles and
behavioural names (DESIGN 2). Fitted on a sample, every customer assigned per partition.
"""

from ._kmeans import KMeansChoice, SegmentModel, assign, choose_k
from ._pipeline import SegmentSummary, build_segments
from ._prepare import DEFAULT_FEATURES, Preparation
from ._profiles import NAME_RULES, name_segments, partition_sums, profile_table

__all__ = [
    "DEFAULT_FEATURES",
    "NAME_RULES",
    "KMeansChoice",
    "Preparation",
    "SegmentModel",
    "SegmentSummary",
    "assign",
    "build_segments",
    "choose_k",
    "name_segments",
    "partition_sums",
    "profile_table",
]
