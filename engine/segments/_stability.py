"""Bootstrap stability of segments: would they come back on a slightly different sample?

Hennig's cluster-wise stability (2007): draw the sample with replacement, refit k-means with
the same k, and for each original segment take the best Jaccard overlap with any segment of
the refit, on the points drawn. The mean over resamples is the segment's stability; below
0.75 a segment is flagged as not to be trusted on its own (Hennig reads 0.6-0.75 as a pattern
without a clear boundary, below 0.5 as dissolved).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..backend import to_host_array
from ._kmeans import _fit, assign

__all__ = ["STABLE_JACCARD", "bootstrap_stability"]

STABLE_JACCARD = 0.75


def bootstrap_stability(points, segments, k: int, *, resamples: int = 10, seed: int = 0, backend_name: str = "cpu",
                        n_init: int = 1) -> list[dict]:  # fmt: skip
    """Mean best-match Jaccard per segment over ``resamples`` bootstrap refits.

    Parameters
    ----------
    points : ndarray (rows x dimensions)
        Prepared customers (a sample; each resample refits on all of its rows).
    segments : ndarray (rows,)
        Their segments under the fitted model, 0..k-1.

    Returns
    -------
    list of dict
        Per segment: ``segment``, ``jaccard`` (mean), ``jaccard_min``, ``stable``.
    """
    host = to_host_array(points)
    segments = to_host_array(segments).astype(np.int64)
    rng = np.random.default_rng(seed)
    scores = np.zeros((resamples, k))
    # Many small refits: one thread each. OpenMP's threads spin while they wait, and on a
    # busy machine (Dask workers beside this process) that made each refit 40 times slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for resample in range(resamples):
            drawn = np.unique(rng.integers(0, host.shape[0], size=host.shape[0]))
            model = _fit(host[drawn], k, int(rng.integers(2**31)), backend_name, n_init, 300, 1e-4)
            refit, _ = assign(host[drawn], to_host_array(model.cluster_centers_))
            original = segments[drawn]
            # Overlap of every (original, refit) pair at once: a k x k contingency table.
            table = np.zeros((k, k), dtype=np.int64)
            np.add.at(table, (original, refit), 1)
            union = table.sum(axis=1)[:, None] + table.sum(axis=0)[None, :] - table
            jaccard = np.where(union > 0, table / np.maximum(union, 1), 0.0)
            scores[resample] = jaccard.max(axis=1)
    mean = scores.mean(axis=0)
    return [
        {
            "segment": segment,
            "jaccard": round(float(mean[segment]), 4),
            "jaccard_min": round(float(scores[:, segment].min()), 4),
            "stable": bool(mean[segment] >= STABLE_JACCARD),
        }  # fmt: skip
        for segment in range(k)
    ]
