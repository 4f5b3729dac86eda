"""The ``[segments]`` section."""

from dataclasses import dataclass, field
from typing import Literal

from ._fields import _MINIMUM


@dataclass(frozen=True)
class SegmentOptions:
    """The ``[segments]`` section: how customers are grouped.

    Attributes
    ----------
    features : tuple of str or None
        Feature columns to cluster on; None uses ``engine.segments.DEFAULT_FEATURES``.
    k : int or None
        A fixed number of segments; None chooses k in ``k_min..k_max`` (see ``k_by``).
    k_min, k_max : int, default 3 and 10
    k_by : {"stability", "silhouette"}, default "stability"
        Stability: the largest k whose segments all come back on bootstrap resamples and each
        hold at least ``min_segment_share`` of the sample (needs ``stability_resamples``;
        without it, silhouette). Silhouette: the best silhouette, ties to the smaller k.
    min_segment_share : float, default 0.02
    scaler : {"robust", "standard"}, default "standard"
        Standard scaling of the log-compressed, clipped features separated next-period
        behaviour better than robust scaling on the demo world and Online Retail
        (benchmarks/RESULTS.md).
    pca_components : int or None
    sample : int, default 50000
        Customers the preparation and k-means are fitted on.
    kmeans_fit : {"sample", "all"}, default "sample"
        Where the k-means centres come from: the sample, or every customer, by a k-means
        distributed over the feature parts (k is still chosen on the sample).
    n_init : int, default 4
        k-means restarts per candidate k.
    micro_k : int or None, default 40
        Micro-segments under the segments (a Ward tree joins them); None for none.
    niches : bool, default True
        Look for niche groups and outliers with DBSCAN.
    niche_points : int, default 20000
        Sample customers DBSCAN runs on (its cost is quadratic in them).
    niche_eps : float or None
        DBSCAN radius in prepared units; None takes the knee of the k-distance curve.
    niche_min_samples : int or None
        DBSCAN core-point neighbours; None uses twice the number of prepared dimensions.
    niche_max_share : float, default 0.05
        A dense group smaller than this share of the DBSCAN subset is a niche.
    stability_resamples : int, default 10
        Bootstrap refits behind each segment's stability (0 skips it).
    stability_points : int, default 10000
        Sample customers each refit sees.
    rules_depth : int, default 3
        Conditions each segment's rule may have (at most 3: a rule to type into a CRM).
    outcome_days : int, default 90
        Days after as-of in which the segments and the classic RFM grid are compared on what
        customers did next (next-period spend, churn), when the store holds those days.
    outcome_customers : int, default 500000
        Customers that comparison is made on at most: those whose key is below a bound (keys
        are keyed hashes, so a uniform sample), so it never gathers every customer.
    outcome_resamples : int, default 200
        Bootstrap resamples behind that comparison's confidence intervals.
    """

    features: tuple[str, ...] | None = None
    k: int | None = field(default=None, metadata={_MINIMUM: 2})
    k_min: int = field(default=3, metadata={_MINIMUM: 2})
    k_max: int = field(default=10, metadata={_MINIMUM: 2})
    k_by: Literal["stability", "silhouette"] = "stability"
    min_segment_share: float = field(default=0.02, metadata={_MINIMUM: 0})
    scaler: Literal["robust", "standard"] = "standard"
    pca_components: int | None = field(default=None, metadata={_MINIMUM: 1})
    sample: int = field(default=50_000, metadata={_MINIMUM: 100})
    kmeans_fit: Literal["sample", "all"] = "sample"
    n_init: int = field(default=4, metadata={_MINIMUM: 1})
    micro_k: int | None = field(default=40, metadata={_MINIMUM: 2})
    niches: bool = True
    niche_points: int = field(default=20_000, metadata={_MINIMUM: 100})
    niche_eps: float | None = field(default=None, metadata={_MINIMUM: 0})
    niche_min_samples: int | None = field(default=None, metadata={_MINIMUM: 2})
    niche_max_share: float = field(default=0.05, metadata={_MINIMUM: 0})
    stability_resamples: int = field(default=10, metadata={_MINIMUM: 0})
    stability_points: int = field(default=10_000, metadata={_MINIMUM: 100})
    rules_depth: int = field(default=3, metadata={_MINIMUM: 1})
    outcome_days: int = field(default=90, metadata={_MINIMUM: 1})
    outcome_customers: int = field(default=500_000, metadata={_MINIMUM: 1000})
    outcome_resamples: int = field(default=200, metadata={_MINIMUM: 0})
