"""Preparation of features for clustering: choose, impute, log1p, scale, optionally PCA.

Fitted once on a sample (host, NumPy), applied to every partition in its array namespace
(NumPy or CuPy), and saved with the run as JSON so assignments can be reproduced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend import to_array
from ..exceptions import UsageError

__all__ = ["DEFAULT_FEATURES", "Preparation"]

# Behavioural features segments are built from by default: what customers did, never who
# they are (no profile attributes) and no derived scores (RFM scores restate R, F and M).
DEFAULT_FEATURES = (
    "recency_days", "frequency", "monetary_total", "aov", "tenure_days",
    "orders_90d", "spend_90d", "orders_365d", "spend_365d",
    "gap_median_days", "spend_trend_90d", "order_slope_12m",
    "return_rate", "discount_share", "distinct_categories",
    "view_count", "add_to_cart_count", "email_open_count", "email_click_count", "support_ticket_count",
    "cart_to_purchase", "email_engagement_rate", "days_since_last_event", "active_weeks",
)  # fmt: skip

# Missing "days since" means it never happened: as long ago as anyone in the sample.
_NEVER_PREFIXES = ("days_since_", "recency_days")
# A missing trend means nothing in either window: no change.
_NO_CHANGE = "_trend_"
# A non-negative column this skewed is compressed with log1p before scaling.
_SKEW_FOR_LOG = 1.0
# The interquartile range over this is a standard deviation for normal data.
_IQR_PER_SIGMA = 1.349
# A column whose middle half is nearly constant (most customers at one value) would be blown
# up by its tiny IQR: below this fraction of the standard deviation, the latter scales it.
_MIN_IQR_SHARE = 0.25
# Prepared values are clipped here, in scaled units, so a handful of extreme customers cannot
# pull a centre to themselves.
CLIP = 5.0


def _skew(values: np.ndarray) -> float:
    centred = values - values.mean()
    spread = centred.std()
    return float((centred**3).mean() / spread**3) if spread > 0 else 0.0


@dataclass
class Preparation:
    """Turns feature frames into the matrix k-means sees (scikit-learn style).

    Parameters
    ----------
    features : tuple of str, optional
        Columns to use; default :data:`DEFAULT_FEATURES` (those present).
    scaler : {"standard", "robust"}, default "standard"
        Standard: mean and standard deviation. Robust: centre on the median, divide by the
        interquartile range / 1.349 (outliers do not set the scale), or by the standard
        deviation where the IQR is under a quarter of it (a column with most customers at one
        value). Either way the result is clipped to +-5. Skewed columns are log-compressed
        first, so the few extreme customers robust scaling guards against are tamed already,
        and standard scaling gave segments that separate next-period spend and churn better
        (benchmarks/RESULTS.md).
    pca_components : int, optional
        Project onto this many principal components after scaling.

    Attributes (after ``fit``)
    ----------
    columns_ : list of str
    fill_ : list of float
        Value put in place of NaN per column: the sample maximum for "days since" columns
        (never = long ago), 0 for trends (no change), else the sample median.
    log_ : list of bool
        Whether the column goes through log1p (non-negative and skew above 1).
    centre_, scale_ : list of float
    components_ : list of list of float or None
        PCA rows (components x columns), when ``pca_components`` is set.
    """

    features: tuple[str, ...] | None = None
    scaler: str = "standard"
    pca_components: int | None = None
    columns_: list[str] = field(default_factory=list)
    fill_: list[float] = field(default_factory=list)
    log_: list[bool] = field(default_factory=list)
    centre_: list[float] = field(default_factory=list)
    scale_: list[float] = field(default_factory=list)
    mean_after_scaling_: list[float] | None = None
    components_: list[list[float]] | None = None

    def fit(self, frame) -> Preparation:
        """Learn fills, logs, centres, scales (and components) from a pandas sample."""
        if self.scaler not in ("robust", "standard"):
            raise UsageError(f"unknown scaler {self.scaler!r}: use robust or standard")
        wanted = self.features or DEFAULT_FEATURES
        missing = [c for c in (self.features or ()) if c not in frame.columns]
        if missing:
            raise UsageError(f"segment features not in the feature table: {', '.join(missing)}")
        self.columns_ = [c for c in wanted if c in frame.columns]
        if len(self.columns_) < 2:
            raise UsageError(f"segments need at least 2 features; found {self.columns_ or 'none'} of {list(wanted)}")
        raw = frame[self.columns_].to_numpy(dtype="float64", na_value=np.nan)
        self.fill_, self.log_, self.centre_, self.scale_ = [], [], [], []
        for j, name in enumerate(self.columns_):
            values = raw[:, j]
            present = values[~np.isnan(values)]
            if present.size == 0:
                fill = 0.0
            elif name.startswith(_NEVER_PREFIXES):
                fill = float(present.max())
            elif _NO_CHANGE in name:
                fill = 0.0
            else:
                fill = float(np.median(present))
            values = np.where(np.isnan(values), fill, values)
            log = bool(values.min() >= 0 and _skew(values) > _SKEW_FOR_LOG)
            values = np.log1p(values) if log else values
            if self.scaler == "robust":
                low, centre, high = np.percentile(values, [25, 50, 75])
                scale = (high - low) / _IQR_PER_SIGMA
                if scale < _MIN_IQR_SHARE * values.std():
                    scale = values.std()
            else:
                centre, scale = values.mean(), values.std()
            # A constant (or nearly all-equal) column keeps its centre and unit scale.
            self.fill_.append(fill)
            self.log_.append(log)
            self.centre_.append(float(centre))
            self.scale_.append(float(scale) if scale > 0 else 1.0)
        if self.pca_components is not None:
            if not 1 <= self.pca_components <= len(self.columns_):
                raise UsageError(f"pca_components must be between 1 and {len(self.columns_)}, got {self.pca_components}")
            scaled = self._scale(raw, np)
            mean = scaled.mean(axis=0)
            _, _, rows = np.linalg.svd(scaled - mean, full_matrices=False)
            # Deterministic signs: the largest loading of each component is positive.
            signs = np.sign(rows[np.arange(rows.shape[0]), np.abs(rows).argmax(axis=1)])
            self.mean_after_scaling_ = mean.tolist()
            self.components_ = (rows[: self.pca_components] * signs[: self.pca_components, None]).tolist()
        return self

    def _scale(self, raw, xp):
        fill = xp.asarray(self.fill_)
        values = xp.where(xp.isnan(raw), fill, raw)
        log = xp.asarray(self.log_)
        values = xp.where(log, xp.log1p(xp.maximum(values, 0)), values)
        return xp.clip((values - xp.asarray(self.centre_)) / xp.asarray(self.scale_), -CLIP, CLIP)

    def transform(self, frame, xp=np):
        """The prepared matrix (float64, rows x dimensions) of a pandas or cuDF frame."""
        if not self.columns_:
            raise RuntimeError("Preparation.transform before fit")
        absent = [c for c in self.columns_ if c not in frame.columns]
        if absent:
            raise UsageError(f"feature table lacks the fitted columns {', '.join(absent)}")
        raw = to_array(frame[self.columns_], "float64", na_value=np.nan)
        scaled = self._scale(raw, xp)
        if self.components_ is None:
            return scaled
        return (scaled - xp.asarray(self.mean_after_scaling_)) @ xp.asarray(self.components_).T

    def to_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> Preparation:
        data = dict(data)
        if data.get("features") is not None:
            data["features"] = tuple(data["features"])
        return cls(**data)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Preparation:
        return cls.from_dict(json.loads(Path(path).read_text()))
