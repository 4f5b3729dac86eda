"""Point-in-time behavioural features: one row per customer as of a date (DESIGN 2).

Computed per partition of the customer-clustered store, with no shuffle, from rows strictly
before the as-of instant. ``docs/features.md`` defines every feature.
"""

from ._definitions import FEATURE_GROUPS, RFM_SCORES, FeatureParams
from ._partition import partition_features
from ._pipeline import RFM_SAMPLE, FeatureSummary, build_features, read_features_meta

__all__ = [
    "FEATURE_GROUPS",
    "RFM_SAMPLE",
    "RFM_SCORES",
    "FeatureParams",
    "FeatureSummary",
    "build_features",
    "partition_features",
    "read_features_meta",
]
