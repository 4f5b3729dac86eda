"""k-means over Dask partitions: a fit on more customers than one worker can hold.

The data stay where they are, one prepared matrix per partition (NumPy or CuPy), and only
small per-partition reductions travel: costs, a few sampled rows, per-centre sums and counts.

- Initialisation is k-means|| (Bahmani et al., "Scalable k-means++", VLDB 2012). It starts
  from one row drawn uniformly. Each of ``rounds`` passes then keeps every row with
  probability ``min(1, oversampling * d^2 / cost)``, where d is the row's distance to the
  nearest candidate so far and cost is the sum of d^2 over all rows. The candidates are
  weighted by the rows nearest to each, and a weighted k-means++ on them in the client
  gives the k starting centres.
- Lloyd iterations follow. Each partition sums its rows per nearest centre, the client adds
  the sums up and moves the centres. It stops when the squared centre shift is at most
  ``tol`` times the data's mean variance, scikit-learn's criterion, or after ``max_iter``
  passes. A centre that loses all its rows keeps its place.

Every random draw comes from a stream seeded by (seed, restart, round, partition), so the
fit does not depend on how tasks are scheduled or how many workers run them.
"""

from __future__ import annotations

import dask
import numpy as np

from .._tasks import compute_tasks
from ..backend import array_namespace, resolve_backend, to_host_array
from ._kmeans import SegmentModel, _ordered

__all__ = ["fit_distributed_kmeans"]

# k-means|| passes: Bahmani et al. find about 5 enough, whatever the data size.
_ROUNDS = 5


def _nearest(part, centres):
    """Nearest centre (int) and squared distance to it (clipped at 0) of each row."""
    xp = array_namespace(part)
    centres = xp.asarray(centres)
    squared = (part**2).sum(axis=1)[:, None] - 2 * part @ centres.T + (centres**2).sum(axis=1)[None, :]
    nearest = squared.argmin(axis=1)
    return nearest, xp.maximum(xp.take_along_axis(squared, nearest[:, None], axis=1)[:, 0], 0)


def _moments(part) -> tuple[int, np.ndarray, np.ndarray]:
    """Rows, column sums and column sums of squares: the data's variance, for the tolerance."""
    return int(part.shape[0]), to_host_array(part.sum(axis=0)), to_host_array((part**2).sum(axis=0))


def _row(part, index: int) -> np.ndarray:
    return to_host_array(part[index])


def _cost(part, centres) -> float:
    return float(_nearest(part, centres)[1].sum()) if part.shape[0] else 0.0


def _oversample(part, centres, oversampling: float, cost: float, stream) -> np.ndarray:
    """Rows kept with probability min(1, oversampling * d^2 / cost), drawn from ``stream``."""
    if not part.shape[0]:
        return np.empty((0, len(centres[0])))
    _, squared = _nearest(part, centres)
    keep = np.random.default_rng(stream).random(part.shape[0]) < oversampling * to_host_array(squared) / cost
    return to_host_array(part[array_namespace(part).asarray(np.flatnonzero(keep))])


def _sums(part, centres) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-centre row sums and counts of the rows nearest to each centre, and their inertia."""
    k = len(centres)
    if not part.shape[0]:
        return np.zeros((k, len(centres[0]))), np.zeros(k), 0.0
    xp = array_namespace(part)
    nearest, squared = _nearest(part, centres)
    # One matrix product sums every centre's rows: a one-hot (rows x k) against the part.
    membership = xp.zeros((part.shape[0], k), dtype=part.dtype)
    membership[xp.arange(part.shape[0]), nearest] = 1
    return to_host_array(membership.T @ part), to_host_array(membership.sum(axis=0)).astype(np.float64), float(squared.sum())


def _each(function, parts, *args, client, label):
    return compute_tasks([dask.delayed(function)(part, *args) for part in parts], client, None, label)


# One task per partition serves every restart still running: the restarts share each pass
# over the data instead of taking turns, so a fit makes as many passes as its slowest
# restart, not their sum. Per restart the arithmetic is what it would be alone.


def _costs(part, candidate_sets) -> list[float]:
    return [_cost(part, candidates) for candidates in candidate_sets]


def _oversample_each(part, candidate_sets, oversampling, costs, streams) -> list[np.ndarray]:
    return [_oversample(part, c, oversampling, cost, stream) for c, cost, stream in zip(candidate_sets, costs, streams)]


def _sums_each(part, centre_sets) -> list[tuple[np.ndarray, np.ndarray, float]]:
    return [_sums(part, centres) for centres in centre_sets]


def _initial_centres(parts, rows, k, *, oversampling, seed, restarts, client) -> list[np.ndarray]:
    """k-means|| for each restart: candidates from ``_ROUNDS`` oversampling passes, reduced
    to k by weighted k-means++ (scikit-learn, in this process: the candidates are a few
    times k rows)."""
    streams = [np.random.default_rng([seed, restart]) for restart in range(restarts)]
    starts = []
    for rng in streams:
        part = int(rng.choice(len(parts), p=rows / rows.sum()))
        starts.append(dask.delayed(_row)(parts[part], int(rng.integers(rows[part]))))
    candidates = [np.asarray([row]) for row in compute_tasks(starts, client, None, "k-means|| start")]
    growing = list(range(restarts))
    for round_number in range(_ROUNDS):
        per_part = _each(_costs, parts, [candidates[r] for r in growing], client=client, label="k-means|| cost")
        costs = {r: sum(part_costs[i] for part_costs in per_part) for i, r in enumerate(growing)}
        growing = [r for r in growing if costs[r] != 0]  # at 0 every row sits on a candidate
        if not growing:
            break
        tasks = [
            dask.delayed(_oversample_each)(
                part, [candidates[r] for r in growing], oversampling, [costs[r] for r in growing],
                [[seed, r, round_number, number] for r in growing],
            )
            for number, part in enumerate(parts)
        ]  # fmt: skip
        picked = compute_tasks(tasks, client, None, "k-means|| sample")
        for i, r in enumerate(growing):
            kept = [part_rows[i] for part_rows in picked if len(part_rows[i])]
            if kept:
                candidates[r] = np.concatenate([candidates[r], *kept])
    candidates = [np.unique(c, axis=0) for c in candidates]
    for c in candidates:
        if len(c) <= k:
            raise ValueError(f"k-means||: only {len(c)} distinct rows for {k} centres")
    per_part = _each(_sums_each, parts, candidates, client=client, label="k-means|| weights")
    centres = []
    for r, rng in enumerate(streams):
        weights = sum(part_sums[r][1] for part_sums in per_part)
        picker = resolve_backend("cpu").kmeans(k, seed=int(rng.integers(2**31)), n_init=1)
        centres.append(picker.fit(candidates[r], sample_weight=weights).cluster_centers_)
    return centres


def fit_distributed_kmeans(parts, k: int, *, seed: int = 0, n_init: int = 1, max_iter: int = 300,
                           tol: float = 1e-4, oversampling: float | None = None, client=None) -> SegmentModel:  # fmt: skip
    """k-means with k-means|| initialisation and Lloyd iterations over ``parts``.

    Parameters
    ----------
    parts : list
        One prepared matrix (rows x dimensions, NumPy or CuPy) per partition, as values or
        as Dask delayed objects or futures (persist them first: every pass reads them).
    k : int
    n_init : int, default 1
        Restarts from new k-means|| draws; the lowest inertia wins.
    max_iter, tol
        As scikit-learn's ``KMeans``: ``tol`` is relative to the data's mean variance.
    oversampling : float, optional
        Rows k-means|| expects to keep per pass; default 2k, as the paper recommends.
    client : distributed.Client, optional
        Tasks run on its cluster; without one, on Dask's local scheduler.

    Returns
    -------
    SegmentModel
        The centres (in canonical order), the inertia over every row, the Lloyd passes.
    """
    # Wrapped once, so that no pass hashes or copies an in-memory matrix again.
    parts = [dask.delayed(part) for part in parts]
    moments = _each(_moments, parts, client=client, label="k-means moments")
    rows = np.array([m[0] for m in moments], dtype=np.float64)
    total = rows.sum()
    if total <= k:
        raise ValueError(f"k-means: {int(total)} rows cannot make {k} centres")
    mean = sum(m[1] for m in moments) / total
    variance = sum(m[2] for m in moments) / total - mean**2
    threshold = tol * float(np.mean(variance))
    centres = _initial_centres(parts, rows, k, oversampling=oversampling or 2 * k, seed=seed, restarts=n_init,
                               client=client)  # fmt: skip
    iterations = [0] * n_init
    moving = list(range(n_init))
    for iteration in range(1, max_iter + 1):
        reduced = _each(_sums_each, parts, [centres[r] for r in moving], client=client, label="k-means step")
        still = []
        for i, r in enumerate(moving):
            sums, counts = sum(p[i][0] for p in reduced), sum(p[i][1] for p in reduced)
            moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres[r])
            shift = float(((moved - centres[r]) ** 2).sum())
            centres[r], iterations[r] = moved, iteration
            if shift > threshold:
                still.append(r)
        moving = still
        if not moving:
            break
    final = _each(_sums_each, parts, centres, client=client, label="k-means inertia")
    inertias = [sum(p[r][2] for p in final) for r in range(n_init)]
    best = min(range(n_init), key=inertias.__getitem__)  # the first of equals, as scikit-learn
    model = SegmentModel(centres=centres[best].tolist(), k=k, inertia=float(inertias[best]),
                         iterations=iterations[best], seed=seed)  # fmt: skip
    return _ordered(model)
