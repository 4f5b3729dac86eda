"""The ``[features]`` section."""

from dataclasses import dataclass, field

from ._fields import _MINIMUM


@dataclass(frozen=True)
class FeatureOptions:
    """The ``[features]`` section: which behavioural features, over which windows.

    The as-of date is ``[run] as_of``. ``docs/features.md`` defines every feature.

    Attributes
    ----------
    groups : tuple of str
        Feature groups to compute (default: all of them; see ``engine.features.FEATURE_GROUPS``).
    windows : tuple of int, default (30, 90, 365)
        Trailing windows in days for orders_<w>d and spend_<w>d.
    trend_days : int, default 90
        The trend features compare the last ``trend_days`` with the ``trend_days`` before.
    top_categories, top_channels : int, default 5
        How many of the globally most frequent categories / channels get a share column.
    """

    groups: tuple[str, ...] = (
        "rfm", "windows", "gaps", "trend", "basket", "categories", "channels", "events", "activity", "profile",
    )  # fmt: skip
    windows: tuple[int, ...] = (30, 90, 365)
    trend_days: int = field(default=90, metadata={_MINIMUM: 1})
    top_categories: int = field(default=5, metadata={_MINIMUM: 0})
    top_channels: int = field(default=5, metadata={_MINIMUM: 0})
