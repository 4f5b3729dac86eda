"""Niche groups and outliers by DBSCAN on a memory-bounded subset, joined back to everyone.

DBSCAN's cost grows with the square of the points, so it runs on a subset of the prepared
sample (``points``, default 20,000): scikit-learn's on the CPU, cuML's on the GPU with an
explicit batch memory budget and int64 labels. ``eps`` comes from the knee of the sorted
k-distance curve unless given. Dense groups holding less than ``niche_max_share`` of the
subset are *niches*; the large ones are the main body of customers and carry no flag.

Every customer is then placed like a new point in DBSCAN: within ``eps`` of a core point it
joins that core point's group, otherwise it is an *outlier*. The core points kept for this
(at most ``max_core_points``, an even thinning) travel with the model, so placing a partition
is a chunked nearest-neighbour search in its array namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import resolve_backend, to_host_array

__all__ = ["NicheModel", "fit_niches", "knee_eps", "place_niches"]

# Batch memory cuML DBSCAN may use for its pairwise distances, in MiB.
# Rows placed per matrix product, bounding the distance block to rows x core points.
_PLACE_ROWS = 4096


@dataclass
class NicheModel:
    """What placing customers needs: core points (prepared units), their group, and the rules."""

    eps: float
    min_samples: int
    core_points: list[list[float]]
    core_group: list[int]  # niche id, or -1 for a core point of a large group
    niche_sizes: list[int]  # subset points per niche
    subset_points: int
    subset_outlier_share: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, document: dict) -> NicheModel:
        return cls(**document)


def knee_eps(points: np.ndarray, min_samples: int) -> float:
    """``eps`` at the knee of the ascending k-distance curve (k = ``min_samples``).

    The knee is the point of the curve furthest below the chord from its first to its last
    point: past it, distances to the k-th neighbour shoot up, which is where points stop
    being in dense regions.
    """
    distances, _ = resolve_backend("cpu").nearest_neighbors(min_samples).fit(points).kneighbors(points)
    curve = np.sort(distances[:, -1])
    if curve[-1] <= curve[0]:
        return float(curve[-1]) or 1e-6
    position = np.linspace(0.0, 1.0, curve.size)
    height = (curve - curve[0]) / (curve[-1] - curve[0])
    return float(curve[np.argmax(position - height)])


def fit_niches(sample, *, eps: float | None = None, min_samples: int | None = None, points: int = 20_000,
               niche_max_share: float = 0.05, max_core_points: int = 5_000, seed: int = 0,
               backend_name: str = "cpu") -> NicheModel:  # fmt: skip
    """DBSCAN on at most ``points`` rows of the prepared sample.

    Parameters
    ----------
    sample : ndarray (rows x dimensions), NumPy or CuPy
    eps : float, optional
        Neighbourhood radius in prepared units; default from :func:`knee_eps`.
    min_samples : int, optional
        Neighbours (the point included) that make a core point; default twice the dimensions.
    """
    host = to_host_array(sample).astype(np.float64)
    rng = np.random.default_rng(seed)
    if host.shape[0] > points:
        host = host[np.sort(rng.choice(host.shape[0], size=points, replace=False))]
    min_samples = min_samples or 2 * host.shape[1]
    min_samples = max(2, min(min_samples, host.shape[0] - 1))
    eps = eps if eps is not None else knee_eps(host, min_samples)
    labels, core = _dbscan(host, eps, min_samples, backend_name)
    groups, sizes = np.unique(labels[labels >= 0], return_counts=True)
    niches = groups[sizes < niche_max_share * host.shape[0]]
    niche_id = np.full(int(labels.max()) + 2 if labels.size else 1, -1, dtype=np.int64)
    # Niches are numbered by size, largest first, so ids read the same on every backend.
    by_size = niches[np.lexsort((niches, -sizes[np.isin(groups, niches)]))]
    niche_id[by_size] = np.arange(by_size.size)
    core_points, core_group = host[core], niche_id[labels[core]]
    if core_points.shape[0] > max_core_points:
        keep = np.linspace(0, core_points.shape[0] - 1, max_core_points).astype(np.int64)
        core_points, core_group = core_points[keep], core_group[keep]
    return NicheModel(
        eps=float(eps), min_samples=int(min_samples), core_points=core_points.tolist(),
        core_group=core_group.astype(int).tolist(),
        niche_sizes=[int((niche_id[labels[labels >= 0]] == niche).sum()) for niche in range(by_size.size)],
        subset_points=int(host.shape[0]), subset_outlier_share=float((labels < 0).mean()),
    )  # fmt: skip


def _dbscan(points: np.ndarray, eps: float, min_samples: int, backend_name: str):
    """Labels (-1 noise) and a boolean core mask, on the backend's DBSCAN."""
    backend = resolve_backend(backend_name)
    model = backend.dbscan(eps=eps, min_samples=min_samples)
    model.fit(backend.xp.asarray(points))
    labels = to_host_array(model.labels_).astype(np.int64)
    core = np.zeros(points.shape[0], dtype=bool)
    core[to_host_array(model.core_sample_indices_).astype(np.int64)] = True
    return labels, core


def place_niches(prepared, model: NicheModel, xp=np):
    """Each row's niche id (-1: none) and outlier flag, in ``xp``.

    A row within ``eps`` of a core point takes that core point's group (a niche id, or -1
    for the main body); a row within ``eps`` of none is an outlier.
    """
    core = xp.asarray(model.core_points, dtype=xp.float64)
    group = xp.asarray(model.core_group, dtype=xp.int32)
    rows = prepared.shape[0]
    niche = xp.full(rows, -1, dtype=xp.int32)
    outlier = xp.ones(rows, dtype=bool)
    if core.shape[0] == 0:
        return niche, outlier
    core_norms = (core**2).sum(axis=1)
    for start in range(0, rows, _PLACE_ROWS):
        block = prepared[start : start + _PLACE_ROWS]
        squared = (block**2).sum(axis=1)[:, None] - 2 * block @ core.T + core_norms[None, :]
        nearest = squared.argmin(axis=1)
        within = xp.take_along_axis(squared, nearest[:, None], axis=1)[:, 0] <= model.eps**2
        niche[start : start + block.shape[0]] = xp.where(within, group[nearest], -1)
        outlier[start : start + block.shape[0]] = ~within
    return niche, outlier
