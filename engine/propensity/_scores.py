"""Scores users can act on: a calibrated probability, its percentile rank and a band.

The calibrator is fitted on the validation split, which the model never trained on, so the
probabilities mean what they say whatever class weighting the model trained with. Percentile
ranks are against a reference: the calibrated scores of every labelled customer at training,
kept as 1001 quantiles, so that each partition is scored on its own and a customer's rank
does not depend on who else is scored in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..exceptions import UsageError

__all__ = ["BANDS", "Bands", "Calibrator", "percentile_rank", "reference_quantiles"]

BANDS = ("low", "medium", "high")
_EPSILON = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), _EPSILON, 1 - _EPSILON)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """Maps the model's raw scores to probabilities (scikit-learn style).

    Parameters
    ----------
    method : {"isotonic", "sigmoid"}
        Isotonic: a monotone step function, linearly interpolated between its knots (needs a
        few thousand validation rows to be smooth). Sigmoid (Platt): a logistic curve of the
        raw score's logit, two parameters.
    """

    method: str = "isotonic"
    knots_x_: list[float] = field(default_factory=list)
    knots_y_: list[float] = field(default_factory=list)
    slope_: float = 1.0
    intercept_: float = 0.0

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        raw, y = np.asarray(raw, dtype="float64"), np.asarray(y, dtype="float64")
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            fitted = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            self.knots_x_ = fitted.X_thresholds_.tolist()
            self.knots_y_ = fitted.y_thresholds_.tolist()
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            fitted = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y.astype(int))
            self.slope_, self.intercept_ = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
        else:
            raise UsageError(f"propensity: unknown calibration {self.method!r}: use isotonic or sigmoid")
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype="float64")
        if self.method == "isotonic":
            return np.interp(raw, self.knots_x_, self.knots_y_)
        return 1.0 / (1.0 + np.exp(-(self.slope_ * _logit(raw) + self.intercept_)))

    def to_dict(self) -> dict:
        if self.method == "isotonic":
            return {"method": self.method, "knots_x": self.knots_x_, "knots_y": self.knots_y_}
        return {"method": self.method, "slope": self.slope_, "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, document: dict) -> Calibrator:
        return cls(
            method=document["method"],
            knots_x_=list(document.get("knots_x", [])),
            knots_y_=list(document.get("knots_y", [])),
            slope_=float(document.get("slope", 1.0)),
            intercept_=float(document.get("intercept", 0.0)),
        )


def reference_quantiles(scores: np.ndarray) -> list[float]:
    """1001 quantiles (0, 0.1, ..., 100 %) of the reference population's scores."""
    return np.quantile(np.asarray(scores, dtype="float64"), np.linspace(0, 1, 1001)).tolist()


def percentile_rank(scores: np.ndarray, reference: list[float]) -> np.ndarray:
    """Percent (0..100) of the reference population scoring at or below each score."""
    ref = np.asarray(reference, dtype="float64")
    # Ties in the reference (many customers at one isotonic step) share the middle rank.
    below = np.searchsorted(ref, scores, side="left")
    at_or_below = np.searchsorted(ref, scores, side="right")
    return (100.0 * (below + at_or_below) / 2 / len(ref)).astype("float32")


@dataclass
class Bands:
    """High, medium and low by probability cuts, or by percentile of the reference.

    Parameters
    ----------
    by : {"quantile", "probability"}
    cuts : tuple of two floats
        ``(medium, high)``. By quantile, shares of the reference below each band (default
        0.6 and 0.9: the top 10 % is high, the next 30 % medium); by probability, the score
        at which each band starts.
    """

    by: str = "quantile"
    cuts: tuple[float, float] = (0.6, 0.9)
    thresholds_: tuple[float, float] = (0.0, 0.0)

    def fit(self, reference: list[float]) -> Bands:
        medium, high = self.cuts
        if not 0 <= medium <= high <= 1 or len(self.cuts) != 2:
            raise UsageError(f"propensity: bands must be two cuts 0 <= medium <= high <= 1, got {list(self.cuts)}")
        if self.by == "quantile":
            ref = np.asarray(reference, dtype="float64")
            self.thresholds_ = (float(np.quantile(ref, medium)), float(np.quantile(ref, high)))
        elif self.by == "probability":
            self.thresholds_ = (float(medium), float(high))
        else:
            raise UsageError(f"propensity: bands by {self.by!r}: use quantile or probability")
        return self

    def assign(self, scores: np.ndarray) -> np.ndarray:
        """Band names, one per score (a score at a threshold is in the band above it)."""
        index = np.searchsorted(np.asarray(self.thresholds_), scores, side="right")
        return np.asarray(BANDS, dtype=object)[index]

    def to_dict(self) -> dict:
        return {"by": self.by, "cuts": list(self.cuts), "thresholds": list(self.thresholds_)}

    @classmethod
    def from_dict(cls, document: dict) -> Bands:
        return cls(by=document["by"], cuts=tuple(document["cuts"]), thresholds_=tuple(document["thresholds"]))
