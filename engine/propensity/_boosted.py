"""A scikit-learn HistGradientBoosting model's raw scores by leaf masks instead of tree walks.

scikit-learn walks each row down each tree, a branch per node that the CPU cannot predict:
about 56 ns a row and tree when scoring 1M customers with 100 trees of 31 leaves, on one core.
Here each tree's leaves are numbered left to right and a split node rules out its left
subtree's leaves for a row that goes right; the row's leaf is the leftmost leaf no node rules
out (QuickScorer: Lucchese et al., SIGIR 2015). Whether a row goes right at a node depends
only on how many of the model's thresholds on that feature lie below the row's value (its
bin, one ``searchsorted`` per feature for every tree), so for each tree and feature the
leaves ruled out for each bin are tabled once, and a tree's leaf for a block of rows is a few
table lookups and ANDs. Scoring a 24k-customer part: 88 ms against scikit-learn's 145 ms in
cache-sized blocks, 285 ms in one piece (2-core AMD EPYC, 100 trees, 89 columns).

The comparisons are scikit-learn's (``x <= threshold`` goes left, NaN goes where the node's
``missing_go_to_left`` says) and the leaves' values are added to the baseline in tree order,
as its ``_raw_predict`` adds them: the same bits. Models this cannot table (categorical
splits, trees of more than 64 leaves, several trees an iteration) are scored by scikit-learn.
A saved model keeps its tables beside the estimator, and scoring tasks load those: no
scikit-learn import in a worker that only scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LeafTables", "leaf_tables"]

# Masks of one word a tree, and the remainder that names a leaf by its bit: 2**k % 37 differs
# for every k < 36 and 2**k % 67 for every k < 66 (2 is a primitive root of both primes).
# 32-bit masks where every tree fits (the default 31 leaves): a part's lookups 55 ms against 62.
_WORDS = ((32, np.dtype("uint32"), 37), (64, np.dtype("uint64"), 67))
# Rows scored at a time: their bins (8 bytes a row and feature) stay in the core's cache.
_BLOCK_ROWS = 32_768


def _leaf_ranges(nodes) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """The leaves' node numbers left to right, and each node's leaves as a [first, end) range."""
    leaves, ranges = [], {}
    stack = [(0, False)]
    while stack:
        node, done = stack.pop()
        if nodes["is_leaf"][node]:
            ranges[node] = (len(leaves), len(leaves) + 1)
            leaves.append(node)
        elif done:
            ranges[node] = (ranges[nodes["left"][node]][0], ranges[nodes["right"][node]][1])
        else:
            stack.extend([(node, True), (nodes["right"][node], False), (nodes["left"][node], False)])
    return leaves, ranges


@dataclass(frozen=True)
class LeafTables:
    """A boosted model tabled for :meth:`raw_scores`.

    ``thresholds`` maps each feature a split uses to its distinct thresholds, sorted; a value's
    bin is the number of them below it, NaN's is one past the last. ``trees`` holds, per tree,
    (feature, leaves left for each bin) pairs as masks of ``word`` dtype, and its leaves'
    values by the remainder of their bit divided by ``modulus``.
    """

    word: np.dtype
    modulus: int
    baseline: float
    thresholds: dict[int, np.ndarray]
    trees: list[tuple[list[tuple[int, np.ndarray]], np.ndarray]]

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """The positive class's probability of each row of ``matrix``: the logistic of its raw
        score, as scikit-learn's binomial loss turns raw scores into probabilities (SciPy's
        ``expit``), so scoring needs no scikit-learn."""
        from scipy.special import expit

        return expit(self.raw_scores(matrix))

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """The model's raw score (log-odds) of each row of ``matrix``."""
        out = np.empty(len(matrix), dtype="float64")
        for start in range(0, len(matrix), _BLOCK_ROWS):
            block = matrix[start : start + _BLOCK_ROWS]
            columns = np.ascontiguousarray(block.T)
            bins = {}
            for feature, thresholds in self.thresholds.items():
                values = columns[feature]
                found = np.searchsorted(thresholds, values, side="left")
                found[np.isnan(values)] = len(thresholds) + 1
                bins[feature] = found
            raw = np.full(len(block), self.baseline)
            one, modulus = self.word.type(1), self.word.type(self.modulus)
            for tables, leaf_values in self.trees:
                left = np.full(len(block), ~self.word.type(0))
                for feature, table in tables:
                    left &= table[bins[feature]]
                raw += leaf_values[(left & (~left + one)) % modulus]
            out[start : start + len(block)] = raw
        return out


def _tree_tables(nodes, thresholds: dict[int, np.ndarray], word: np.dtype, modulus: int):
    """One tree's (feature, mask for each bin) pairs and leaf values (`LeafTables`)."""
    leaves, ranges = _leaf_ranges(nodes)
    leaf_values = np.zeros(modulus, dtype="float64")
    for number, node in enumerate(leaves):
        leaf_values[2**number % modulus] = nodes["value"][node]
    tables = {}
    for node in np.flatnonzero(nodes["is_leaf"] == 0):
        feature = int(nodes["feature_idx"][node])
        cuts = thresholds[feature]
        table = tables.setdefault(feature, np.full(len(cuts) + 2, ~word.type(0)))
        first, end = ranges[nodes["left"][node]]
        kept = ~word.type((2**end - 1) ^ (2**first - 1))
        # Bins above the threshold's rank hold values greater than it: they go right.
        table[np.searchsorted(cuts, nodes["num_threshold"][node]) + 1 : len(cuts) + 1] &= kept
        if not nodes["missing_go_to_left"][node]:
            table[len(cuts) + 1] &= kept
    return sorted(tables.items()), leaf_values


def leaf_tables(booster) -> LeafTables | None:
    """``booster`` (a fitted binary HistGradientBoostingClassifier) tabled, or None where it
    cannot be (or is no such model)."""
    if type(getattr(booster, "_loss", None)).__name__ != "HalfBinomialLoss":
        return None
    predictors = getattr(booster, "_predictors", None)
    baseline = np.asarray(getattr(booster, "_baseline_prediction", np.empty(0)), dtype="float64")
    if predictors is None or baseline.size != 1 or any(len(iteration) != 1 for iteration in predictors):
        return None
    trees = [iteration[0].nodes for iteration in predictors]
    leaves = max(int(nodes["is_leaf"].sum()) for nodes in trees)
    words = [(word, modulus) for bits, word, modulus in _WORDS if leaves <= bits]
    if not words or any(nodes["is_categorical"].any() for nodes in trees):
        return None
    word, modulus = words[0]
    split = np.concatenate([nodes[nodes["is_leaf"] == 0] for nodes in trees])
    thresholds = {
        int(feature): np.unique(split["num_threshold"][split["feature_idx"] == feature])
        for feature in np.unique(split["feature_idx"])
    }  # fmt: skip
    tables = [_tree_tables(nodes, thresholds, word, modulus) for nodes in trees]
    return LeafTables(word, modulus, float(baseline.ravel()[0]), thresholds, tables)
