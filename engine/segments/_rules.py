"""Readable rules for segments: a shallow decision tree that mimics the k-means labels.

k-means places customers by distance in a scaled space nobody can read. A surrogate tree
fitted on the raw features (days, counts, money) against the segment labels says the same
thing in conditions a person can check and a database can run ("orders_90d >= 3 and
recency_days < 30"), and how faithfully: recall and precision per segment, and accuracy
overall (fidelity).

Each threshold is replaced by the roundest number that splits the fitting customers exactly
as the tree's own threshold did, so the rules as written, the rules as saved and the rules
as applied to new customers are the same rules, and on the fitting sample they reproduce
the tree's predictions.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import to_host
from ..exceptions import UsageError
from ._prepare import Preparation

__all__ = ["NO_RULE", "SegmentRules"]

NO_RULE = "no rule isolates this segment"
_EVERY_CUSTOMER = "every customer"


def _roundest(low: float, high: float) -> float:
    """The number with fewest significant digits in (low, high], trying steps of 10^p and
    5 x 10^(p-1) from coarse to fine."""
    p = math.floor(math.log10(max(abs(low), abs(high), 1e-12))) + 1
    while 10.0**p > (high - low) * 1e-6:
        for step, digits in ((10.0**p, -p), (5 * 10.0 ** (p - 1), 1 - p)):
            candidate = round(math.floor(high / step) * step, max(0, digits)) + 0.0
            if low < candidate <= high:
                return candidate
        p -= 1
    return high


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.10g}"


def _filled(frame, columns, fill) -> np.ndarray:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise UsageError(f"feature table lacks the rule columns {', '.join(absent)}")
    values = to_host(frame[list(columns)])
    raw = values.to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isnan(raw), np.asarray(fill, dtype="float64"), raw)


class SegmentRules:
    """A shallow decision tree over raw features that restates segment labels as rules.

    Parameters
    ----------
    features : sequence of str
        Raw feature columns the rules may use (at least 2).
    max_depth : int, default 3
        At most this many conditions per rule.
    min_leaf_share : float, default 0.01
        Each rule covers at least this share of the fitting customers.
    seed : int, default 0

    Attributes (after ``fit``)
    ----------
    columns_ : list of str
    fill_ : list of float
        Value put in place of a missing one per column, chosen by meaning as
        :class:`Preparation` does (the sample maximum for "days since", 0 for trends, else
        the median).
    segments_ : list of int
        The segments seen in the labels.
    nodes_ : dict of list
        The tree: ``feature`` (column index, -1 at a leaf), ``threshold`` (rows with a value
        below it go left), ``left``, ``right`` and ``segment`` (predicted at a leaf, else -1).
    depth_ : int
    fidelity_ : float
        Share of the fitting customers the rules put in their own segment.
    report_ : list of dict
        Per segment, as :meth:`describe` returns it.
    estimator_ : sklearn.tree.DecisionTreeClassifier
        The fitted tree (not saved by :meth:`to_dict`).
    """

    def __init__(self, features, max_depth: int = 3, min_leaf_share: float = 0.01, seed: int = 0):
        self.features = features
        self.max_depth = max_depth
        self.min_leaf_share = min_leaf_share
        self.seed = seed

    def fit(self, frame, segments) -> SegmentRules:
        """Fit the tree on a host sample's raw ``features`` against its ``segments``."""
        from sklearn.tree import DecisionTreeClassifier

        if self.max_depth < 1:
            raise UsageError(f"rule depth must be at least 1, got {self.max_depth}")
        if not 0 < self.min_leaf_share < 0.5:
            raise UsageError(f"min_leaf_share must be between 0 and 0.5, got {self.min_leaf_share}")
        labels = np.asarray(segments)
        if labels.shape != (len(frame),) or not np.issubdtype(labels.dtype, np.integer):
            raise UsageError(
                f"segments must be one integer label per row ({len(frame)}), got {labels.dtype} {labels.shape}"
            )
        preparation = Preparation(features=tuple(self.features)).fit(frame)
        self.columns_, self.fill_ = list(preparation.columns_), list(preparation.fill_)
        values = _filled(frame, self.columns_, self.fill_)
        tree = DecisionTreeClassifier(
            max_depth=self.max_depth,
            min_samples_leaf=max(1, math.ceil(self.min_leaf_share * len(frame))),
            class_weight="balanced",
            random_state=self.seed,
        )
        # The tree compares in float32; fitting on float32 values keeps its sides exact here.
        self.estimator_ = tree.fit(values.astype("float32"), labels)
        self.segments_ = [int(s) for s in tree.classes_]
        self.nodes_ = self._nodes(tree, values)
        self.depth_ = int(tree.get_depth())
        predicted = self.predict(frame)
        self.fidelity_ = float((predicted == labels).mean())
        self.report_ = self._report(labels, predicted)
        return self

    def _nodes(self, tree, values) -> dict:
        """The tree with each threshold made round, from the values that reached its node."""
        structure = tree.tree_
        reached = tree.decision_path(values.astype("float32")).tocsc()
        thresholds = []
        for node in range(structure.node_count):
            feature = int(structure.feature[node])
            if structure.children_left[node] < 0:
                thresholds.append(None)
                continue
            column = values[reached[:, node].nonzero()[0], feature]
            left = column.astype("float32") <= structure.threshold[node]
            thresholds.append(_roundest(float(column[left].max()), float(column[~left].min())))
        leaf_segment = np.asarray(tree.classes_)[structure.value[:, 0, :].argmax(axis=1)]
        nodes: dict[str, list] = {"feature": [], "threshold": [], "left": [], "right": [], "segment": []}

        def add(feature, threshold, left, right, segment) -> int:
            for key, value in zip(nodes, (feature, threshold, left, right, segment)):
                nodes[key].append(value)
            return len(nodes["feature"]) - 1

        def copy(node) -> tuple[int, int | None]:
            """Copy the subtree under ``node``; returns its new index and its segment when
            every leaf under it predicts the same one (else None)."""
            if structure.children_left[node] < 0:
                segment = int(leaf_segment[node])
                return add(-1, None, -1, -1, segment), segment
            index = add(int(structure.feature[node]), thresholds[node], -1, -1, -1)
            left, left_segment = copy(structure.children_left[node])
            right, right_segment = copy(structure.children_right[node])
            if left_segment is not None and left_segment == right_segment:
                # A split whose sides predict the same segment says nothing: drop it.
                for key in nodes:
                    del nodes[key][index:]
                return add(-1, None, -1, -1, left_segment), left_segment
            nodes["left"][index], nodes["right"][index] = left, right
            return index, None

        copy(0)
        return nodes

    def predict(self, frame) -> np.ndarray:
        """The segment the rules give each row of a pandas (or cuDF) frame, int32."""
        if not hasattr(self, "nodes_"):
            raise RuntimeError("SegmentRules.predict before fit")
        values = _filled(frame, self.columns_, self.fill_)
        feature = np.asarray(self.nodes_["feature"])
        threshold = np.asarray([np.nan if t is None else t for t in self.nodes_["threshold"]])
        left, right = np.asarray(self.nodes_["left"]), np.asarray(self.nodes_["right"])
        node = np.zeros(len(values), dtype=np.int64)
        rows = np.arange(len(values))
        for _ in range(self.depth_):
            inner = feature[node] >= 0
            below = values[rows, np.maximum(feature[node], 0)] < threshold[node]
            node = np.where(inner, np.where(below, left[node], right[node]), node)
        return np.asarray(self.nodes_["segment"])[node].astype(np.int32)

    def _leaf_rules(self) -> dict[int, list[str]]:
        """Each leaf's conditions, one per feature, in the order of ``columns_``."""
        rules: dict[int, list[str]] = {}
        stack = [(0, {})]
        nodes = self.nodes_
        while stack:
            node, bounds = stack.pop()
            feature = nodes["feature"][node]
            if feature < 0:
                rules[node] = [self._condition(j, *bounds[j]) for j in sorted(bounds)] or [_EVERY_CUSTOMER]
                continue
            low, high = bounds.get(feature, (None, None))
            cut = nodes["threshold"][node]
            below = {**bounds, feature: (low, cut if high is None else min(high, cut))}
            above = {**bounds, feature: (cut if low is None else max(low, cut), high)}
            stack += [(nodes["right"][node], above), (nodes["left"][node], below)]
        return dict(sorted(rules.items()))

    def _condition(self, column: int, low, high) -> str:
        name = self.columns_[column]
        if low is not None and high is not None:
            return f"{_number(low)} <= {name} < {_number(high)}"
        return f"{name} >= {_number(low)}" if low is not None else f"{name} < {_number(high)}"

    def _report(self, labels, predicted) -> list[dict]:
        leaves = self._leaf_rules()
        report = []
        for segment in self.segments_:
            mine, placed = labels == segment, predicted == segment
            rules = [" and ".join(leaves[n]) for n in leaves if self.nodes_["segment"][n] == segment]
            hits = int((mine & placed).sum())
            report.append(
                {
                    "segment": segment,
                    "customers": int(mine.sum()),
                    "rules": rules,
                    "recall": hits / int(mine.sum()),
                    "precision": hits / int(placed.sum()) if placed.any() else None,
                    "note": None if rules else NO_RULE,
                }
            )
        return report

    def describe(self) -> list[dict]:
        """Per segment: ``segment``, ``customers`` (in the fitting sample), ``rules`` (one
        string per leaf that predicts it), ``recall``, ``precision`` (None when no customer is
        placed there) and ``note`` (:data:`NO_RULE` when no leaf predicts it, else None)."""
        if not hasattr(self, "report_"):
            raise RuntimeError("SegmentRules.describe before fit")
        return [{**entry, "rules": list(entry["rules"])} for entry in self.report_]

    def to_dict(self) -> dict:
        """Parameters and learned rules as plain JSON values (no pickles)."""
        return {
            "features": list(self.features),
            "max_depth": self.max_depth,
            "min_leaf_share": self.min_leaf_share,
            "seed": self.seed,
            "columns_": self.columns_,
            "fill_": self.fill_,
            "segments_": self.segments_,
            "nodes_": self.nodes_,
            "depth_": self.depth_,
            "fidelity_": self.fidelity_,
            "report_": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SegmentRules:
        """Rules saved by :meth:`to_dict`, ready to ``predict`` and ``describe``."""
        rules = cls(tuple(data["features"]), data["max_depth"], data["min_leaf_share"], data["seed"])
        for name in ("columns_", "fill_", "segments_", "nodes_", "depth_", "fidelity_", "report_"):
            setattr(rules, name, data[name])
        return rules
