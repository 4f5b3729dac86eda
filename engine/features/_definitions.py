"""What the feature stage computes: groups, parameters and column names.

``docs/features.md`` documents every feature (definition, unit, missing-value rule); the
names here are the contract between this stage and the ones after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..exceptions import UsageError

__all__ = [
    "DAY_US",
    "FEATURE_GROUPS",
    "RFM_SCORES",
    "FeatureParams",
    "check_groups",
    "column_names",
]

# Timestamps travel as int64 microseconds since the Unix epoch (UTC).
DAY_US = 86_400_000_000

# Each group can be switched on or off in [features] groups; all are on by default.
FEATURE_GROUPS = (
    "rfm",  # recency, frequency, monetary, AOV, tenure and the 1-5 RFM scores
    "windows",  # orders and spend in trailing windows
    "gaps",  # inter-purchase gap statistics
    "trend",  # recent vs previous window, and the monthly order slope
    "basket",  # return rate, discount share, distinct categories
    "categories",  # spend share of the globally top-ranked categories
    "channels",  # spend share of the globally top-ranked channels
    "events",  # per event type counts and days since last, conversion, email engagement
    "activity",  # active weeks in the last year
    "profile",  # non-sensitive profile attributes, passed through
)

RFM_SCORES = ("r_score", "f_score", "m_score")

# Weeks looked back for active_weeks.
ACTIVE_WEEKS = 52


@dataclass(frozen=True)
class FeatureParams:
    """Everything a partition needs to compute its features; the same for every partition.

    Attributes
    ----------
    as_of_us : int
        The as-of instant in microseconds since the epoch (UTC); only rows strictly before it
        count.
    windows : tuple of int
        Trailing window lengths in days for ``orders_<w>d`` and ``spend_<w>d``.
    trend_days : int
        Length of the two windows compared by the trend features.
    value_spend : tuple of str
        Columns (``category``, ``channel``) whose spend per customer and value a partition
        reports in long form, for share columns once the values are ranked globally.
    groups : frozenset of str
        The feature groups to compute.
    profile_timestamps : tuple of str
        Profile columns holding timestamps, turned into ``days_since_<name>``.
    amounts : bool, default True
        Whether transactions carry amounts. Without them (a counts-only store) no feature
        derived from spend is computed: an unknown amount is not 0.
    """

    as_of_us: int
    windows: tuple[int, ...] = (30, 90, 365)
    trend_days: int = 90
    value_spend: tuple[str, ...] = ()
    groups: frozenset[str] = field(default_factory=lambda: frozenset(FEATURE_GROUPS))
    profile_timestamps: tuple[str, ...] = ()
    amounts: bool = True


def check_groups(groups: Iterable[str]) -> frozenset[str]:
    """The groups as a set, after checking each is known."""
    groups = frozenset(groups)
    unknown = sorted(groups - set(FEATURE_GROUPS))
    if unknown:
        raise UsageError(f"unknown feature group(s) {', '.join(unknown)}: use any of {', '.join(FEATURE_GROUPS)}")
    if not groups:
        raise UsageError(f"no feature groups chosen: use any of {', '.join(FEATURE_GROUPS)}")
    return groups


def column_names(prefix: str, values: Iterable[str]) -> tuple[str, ...]:
    """Column names ``<prefix>_<value>`` that are lower-case identifiers and unique.

    Values that clean to the same name (``"Home "`` and ``"home"``) get a numeric suffix in
    rank order, so the mapping is deterministic.
    """
    names: list[str] = []
    for value in values:
        stem = re.sub(r"[^0-9a-z]+", "_", str(value).strip().lower()).strip("_") or "blank"
        name, suffix = f"{prefix}_{stem}", 2
        while name in names:
            name, suffix = f"{prefix}_{stem}_{suffix}", suffix + 1
        names.append(name)
    return tuple(names)
