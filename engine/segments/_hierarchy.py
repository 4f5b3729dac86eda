"""Micro-segments under the macro segments, joined by a Ward tree.

Campaigns target either level: a macro segment (the k-means segments) or one of its
micro-segments (k-means with k in the tens, fitted on the same sample). Every micro-segment
has exactly one parent: the macro segment most of its sample members belong to, and a
customer's micro-segment is the nearest micro centre among the children of the customer's own
macro segment, so the two levels never disagree.

The tree is Ward's minimum-variance agglomeration of the micro centres, weighted by their
sizes and constrained to merge within a parent first: it reaches the macro segments after
``micro_k - k`` merges, then joins the macro segments up to one root, so how close two macro
segments are can be read off the same tree. It is returned in SciPy's linkage format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_host_array
from ._kmeans import _fit, assign

__all__ = ["MicroSegments", "assign_micro", "cut_linkage", "fit_micro_segments", "ward_linkage"]


@dataclass
class MicroSegments:
    """Micro centres (in prepared units), their parent macro segment, sample sizes and the tree.

    Micro ids are ordered by parent, then by centre, so they read as nested blocks.
    """

    centres: list[list[float]]
    parent: list[int]
    sizes: list[int]
    linkage: list[list[float]]

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, document: dict) -> MicroSegments:
        return cls(**document)


def ward_linkage(centres, sizes, groups=None) -> np.ndarray:
    """Weighted Ward agglomeration of cluster centres, in SciPy's linkage format.

    Merging clusters a and b costs ``2 n_a n_b / (n_a + n_b) |c_a - c_b|^2``; the linkage
    height is its square root, as in ``scipy.cluster.hierarchy.linkage(points, "ward")``,
    which this reproduces when every size is 1.

    Parameters
    ----------
    centres : ndarray (m x dimensions)
    sizes : ndarray (m,)
        Points behind each centre (the weights).
    groups : ndarray (m,), optional
        Only centres of the same group merge while a group has more than one cluster left;
        then the groups' clusters merge freely.

    Returns
    -------
    ndarray ((m - 1) x 4)
        Rows ``[cluster a, cluster b, height, points]``; cluster ids past ``m - 1`` are the
        merges, numbered in order.
    """
    centres = np.array(centres, dtype=np.float64)
    weights = np.asarray(sizes, dtype=np.float64)
    count = len(centres)
    group = np.zeros(count, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64).copy()
    ids = np.arange(count)
    alive = np.ones(count, dtype=bool)

    def costs(row: int) -> np.ndarray:
        squared = ((centres - centres[row]) ** 2).sum(axis=1)
        merged = 2 * weights * weights[row] / (weights + weights[row])
        cost = merged * squared
        cost[~alive] = np.inf
        cost[row] = np.inf
        return cost

    matrix = np.vstack([costs(row) for row in range(count)]) if count else np.zeros((0, 0))
    linkage = np.zeros((max(count - 1, 0), 4))
    for step in range(count - 1):
        constrained = np.where(group[:, None] == group[None, :], matrix, np.inf)
        # Once every group is a single cluster, any two clusters may merge.
        candidates = constrained if np.isfinite(constrained).any() else matrix
        first, second = np.unravel_index(np.argmin(candidates), candidates.shape)
        first, second = min(first, second), max(first, second)
        linkage[step] = [min(ids[first], ids[second]), max(ids[first], ids[second]),
                         np.sqrt(matrix[first, second]), weights[first] + weights[second]]  # fmt: skip
        total = weights[first] + weights[second]
        centres[first] = (weights[first] * centres[first] + weights[second] * centres[second]) / total
        weights[first] = total
        ids[first] = count + step
        alive[second] = False
        matrix[second, :] = np.inf
        matrix[:, second] = np.inf
        matrix[first, :] = costs(first)
        matrix[:, first] = matrix[first, :]
    return linkage


def cut_linkage(linkage, count: int, clusters: int) -> np.ndarray:
    """The cluster (0..clusters-1) of each of the ``count`` leaves of a linkage (SciPy's
    format) stopped with ``clusters`` left: after its first ``count - clusters`` merges."""
    root = np.arange(2 * count - 1)
    for step, (first, second) in enumerate(np.asarray(linkage)[: max(0, count - clusters), :2].astype(np.int64)):
        root[first] = root[second] = count + step
    leaf_root = np.arange(count)
    # Follow each leaf up to the last merge it took part in; merged ids only ever grow.
    while True:
        above = root[leaf_root]
        if (above == leaf_root).all():
            break
        leaf_root = above
    return np.unique(leaf_root, return_inverse=True)[1].ravel()


def fit_micro_segments(
    sample, segments, k: int, micro_k: int, *, seed: int, backend_name: str, n_init: int
) -> MicroSegments:
    """Fit ``micro_k`` micro centres on the prepared sample and hang each under a macro segment.

    Parameters
    ----------
    sample : ndarray (rows x dimensions), NumPy or CuPy
    segments : ndarray (rows,)
        The macro segment of each sample row (0..k-1).
    """
    host = to_host_array(sample)
    segments = to_host_array(segments).astype(np.int64)
    model = _fit(sample, micro_k, seed, backend_name, n_init, 300, 1e-4)
    centres = to_host_array(model.cluster_centers_).astype(np.float64)
    micro, _ = assign(host, centres)
    votes = np.zeros((micro_k, k), dtype=np.int64)
    np.add.at(votes, (micro, segments), 1)
    parent = votes.argmax(axis=1)
    # A macro segment that no micro cell mostly belongs to keeps its members in one child.
    orphans = np.setdiff1d(np.arange(k), parent)
    if orphans.size:
        means = np.vstack([host[segments == segment].mean(axis=0) for segment in orphans])
        centres, parent = np.vstack([centres, means]), np.concatenate([parent, orphans])
    order = np.lexsort(np.vstack([centres.T[::-1], parent[None, :]]))
    centres, parent = centres[order], parent[order]
    micro = assign_micro(host, segments, centres, parent)
    sizes = np.bincount(micro, minlength=len(centres))
    linkage = ward_linkage(centres, np.maximum(sizes, 1), groups=parent)
    return MicroSegments(
        centres=centres.tolist(), parent=parent.tolist(), sizes=sizes.tolist(), linkage=linkage.tolist()
    )


def assign_micro(prepared, segments, centres, parent, xp=np):
    """The nearest micro centre among the children of each row's macro segment (int32, in ``xp``)."""
    centres, parent = xp.asarray(centres), xp.asarray(parent)
    squared = (prepared**2).sum(axis=1)[:, None] - 2 * prepared @ centres.T + (centres**2).sum(axis=1)[None, :]
    squared = xp.where(parent[None, :] == segments[:, None], squared, xp.inf)
    return squared.argmin(axis=1).astype("int32")
