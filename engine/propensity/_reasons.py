"""Reasons: for each scored customer, the three features that push the score up the most.

Measured once at training with partial dependence on a sample of customers: for each input
feature, the mean calibrated score when every sampled customer is given the same value of
that feature, at a grid of values (deciles of a number, plus "missing" where training had
gaps; every encoded level of a category). A customer's contribution from a feature is the
curve at their value minus the curve at the median customer's value (the training median, or
the most frequent level). It is an additive reading of the model (interactions are averaged
out), cheap at scoring time (one table lookup per customer and feature), and says only what
the model does, not what causes a purchase.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._prepare import ModelInputs, _numbers, _text

__all__ = ["REASON_COLUMNS", "ReasonTable"]

REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
_GRID = np.linspace(0.05, 0.95, 10)
# Rows scored per call when measuring the curves.
_ROWS_PER_CALL = 200_000


@dataclass
class ReasonTable:
    """Partial dependence curves per input feature, and the top-3 lookup (scikit-learn style).

    Attributes (after ``fit``)
    ----------
    curves_ : dict of str to dict
        Per feature: ``kind``, ``grid`` (values, or levels), ``effect`` (mean score at each),
        ``missing`` (mean score with the value missing, or None), ``baseline`` (mean score at
        the median customer's value).
    """

    curves_: dict[str, dict] = field(default_factory=dict)

    def fit(self, predict: Callable[[pd.DataFrame], np.ndarray], sample: pd.DataFrame, preparation: ModelInputs,
            features=None):  # fmt: skip
        """Measure the curves of ``features`` (default: every input of ``preparation``)."""
        chosen = preparation.features if features is None else set(features)
        plans = []
        for name in (name for name in preparation.features if name in chosen):
            kind = preparation.kinds_[name]
            if kind == "numeric":
                values = _numbers(sample[name])
                present = values[~np.isnan(values)]
                grid = np.unique(np.quantile(present, _GRID)) if present.size else np.array([0.0])
                settings = list(grid) + ([np.nan] if name in preparation.flagged_ else [])
                settings.append(preparation.fill_[name])
            else:
                levels = preparation.levels_[name]
                counts = pd.Series(_text(sample[name])).value_counts()
                common = next((level for level in counts.index if level in levels), levels[0] if levels else "")
                grid = np.asarray(levels, dtype=object)
                settings = list(levels) + [common]
            plans.append((name, kind, grid, settings))
        means = self._dependence(predict, sample, [(name, kind, settings) for name, kind, _, settings in plans])
        for (name, kind, grid, _), curve in zip(plans, means):
            flagged = kind == "numeric" and name in preparation.flagged_
            self.curves_[name] = {
                "kind": kind,
                "grid": grid.tolist(),
                "effect": curve[: len(grid)].tolist(),
                "missing": float(curve[len(grid)]) if flagged else None,
                "baseline": float(curve[-1]),
            }
        return self

    @staticmethod
    def _dependence(predict, sample: pd.DataFrame, plans: list) -> list[np.ndarray]:
        """Per ``(name, kind, settings)`` plan, the mean prediction over ``sample`` with
        ``name`` set to each setting in turn.

        The copies of every plan are scored together, in calls of about ``_ROWS_PER_CALL``
        rows: each call costs a model's fixed overhead (a boosted model walks its trees once
        per call), which one call per feature paid 50 times over.
        """
        settings = [(plan, value) for plan, (_, _, values) in enumerate(plans) for value in values]
        # Every copy holds each column in one dtype (float64 numbers, string levels), the one
        # its settings are written in, so that concatenating them keeps the columns' kinds (a
        # nullable boolean beside a float64 would become object).
        sample = sample.assign(**{
            name: _numbers(sample[name]) if kind == "numeric" else sample[name].astype("string") for name, kind, _ in plans
        })  # fmt: skip
        per_call = max(1, _ROWS_PER_CALL // max(len(sample), 1))
        means = np.empty(len(settings))
        for start in range(0, len(settings), per_call):
            batch = settings[start : start + per_call]
            copies = []
            for plan, value in batch:
                name, kind, _ = plans[plan]
                copy = sample.copy()
                copy[name] = float(value) if kind == "numeric" else pd.array([value] * len(sample), dtype="string")
                copies.append(copy)
            scores = predict(pd.concat(copies, ignore_index=True)).reshape(len(batch), len(sample))
            means[start : start + len(batch)] = scores.mean(axis=1)
        plan_of = np.array([plan for plan, _ in settings], dtype=int)
        return [means[plan_of == plan] for plan in range(len(plans))]

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """``(rows, features)`` contribution of each feature to each customer's score."""
        columns = []
        for name, curve in self.curves_.items():
            if curve["kind"] == "categorical":
                effect = dict(zip(curve["grid"], curve["effect"]))
                text = _text(frame[name])
                values = np.array([effect.get(level, curve["baseline"]) for level in text], dtype="float64")
            else:
                values = _numbers(frame[name])
                missing = np.isnan(values)
                values = np.interp(np.where(missing, 0.0, values), curve["grid"], curve["effect"])
                values = np.where(missing, curve["baseline"] if curve["missing"] is None else curve["missing"], values)
            columns.append(values - curve["baseline"])
        return np.column_stack(columns) if columns else np.zeros((len(frame), 0))

    def top(self, frame: pd.DataFrame, count: int = 3) -> dict[str, np.ndarray]:
        """``reason_1..count``: the features raising each score most; None where fewer raise it."""
        names = np.asarray(list(self.curves_), dtype=object)
        contributions = self.contributions(frame)
        if contributions.shape[1] == 0:
            return {f"reason_{i + 1}": np.full(len(frame), None, dtype=object) for i in range(count)}
        # The largest, then the next...: the first ``count`` of a stable sort by contribution,
        # descending (ties to the earlier feature), without sorting every row's features.
        left = np.where(np.isnan(contributions), -np.inf, contributions)
        rows = np.arange(len(frame))
        reasons = {}
        for i in range(count):
            if i >= left.shape[1]:
                reasons[f"reason_{i + 1}"] = np.full(len(frame), None, dtype=object)
                continue
            picked = left.argmax(axis=1)
            raises = left[rows, picked] > 0
            reasons[f"reason_{i + 1}"] = np.where(raises, names[picked], None)
            left[rows, picked] = -np.inf
        return reasons

    def to_dict(self) -> dict:
        return self.curves_

    @classmethod
    def from_dict(cls, document: dict) -> ReasonTable:
        return cls(curves_=dict(document))
