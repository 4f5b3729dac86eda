"""k-means with k chosen by stability and usefulness (or silhouette): fitted on a sample,
assigning every customer after.

The fit runs on the backend's estimator (cuML ``KMeans`` on the GPU, scikit-learn's on the
CPU) with one set of parameter names. The quality scores reported for each candidate k
(silhouette, Calinski-Harabasz, Davies-Bouldin) are computed with scikit-learn on the host,
on the sample. Assignment is a nearest-centre search in the array namespace of the data, so
it runs per partition where the partition lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import resolve_backend, to_host_array
from ..exceptions import UsageError

__all__ = ["KMeansChoice", "SegmentModel", "assign", "choose_k", "silhouettes"]

# Points scored by silhouette per candidate k: its cost is quadratic in this.
SILHOUETTE_POINTS = 10_000
# Silhouettes this close are a tie, and a tie goes to the smaller k: fewer segments are easier
# to act on, and near-ties otherwise flip with the seed (k-means' local optimum decides them).
SILHOUETTE_TIE = 0.005


@dataclass
class KMeansChoice:
    """Each candidate k's scores on the sample, the k chosen and by what (``stability`` or
    ``silhouette``), and each candidate's per-segment stability when it was measured."""

    k: int
    scores: list[dict] = field(default_factory=list)
    by: str = "silhouette"
    stability: dict[int, list[dict]] = field(default_factory=dict)


@dataclass
class SegmentModel:
    """The fitted centres (rows x dimensions, in prepared units) and how they were fitted."""

    centres: list[list[float]]
    k: int
    inertia: float
    iterations: int
    seed: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _fit(sample, k: int, seed: int, backend_name: str, n_init: int, max_iter: int, tol: float):
    model = resolve_backend(backend_name).kmeans(k, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol)
    model.fit(sample)
    return model


def silhouettes(points: np.ndarray, labelings: list[np.ndarray], rows_per_block: int = 1024) -> list[float]:
    """scikit-learn's ``silhouette_score`` of each labelling of the same ``points`` (-1 for a
    labelling with fewer than 2 clusters), from one pass over their pairwise distances.

    scikit-learn computes the distances again for every labelling: with 8 candidate k that
    was 7 of the segment stage's 19 s on the demo. Here each block of distances is multiplied
    by the cluster memberships of every labelling at once, which gives each point's summed
    distance to every cluster of every labelling.
    """
    codes = [np.unique(labels, return_inverse=True)[1].ravel() for labels in labelings]
    clusters = [int(code.max()) + 1 if len(code) else 0 for code in codes]
    starts = np.concatenate([[0], np.cumsum(clusters)]).astype(np.int64)
    members = np.zeros((len(points), int(starts[-1])))
    for code, start in zip(codes, starts):
        members[np.arange(len(points)), start + code] = 1.0
    squared = np.einsum("ij,ij->i", points, points)
    sums = np.empty_like(members)
    for first in range(0, len(points), rows_per_block):
        block = slice(first, first + rows_per_block)
        distances = squared[block, None] - 2.0 * (points[block] @ points.T) + squared[None, :]
        np.maximum(distances, 0.0, out=distances)
        sums[block] = np.sqrt(distances, out=distances) @ members
    scores = []
    for code, count, start in zip(codes, clusters, starts):
        if count < 2:
            scores.append(-1.0)
            continue
        to_cluster = sums[:, start : start + count]
        sizes = np.bincount(code, minlength=count).astype(np.float64)
        rows = np.arange(len(code))
        with np.errstate(divide="ignore", invalid="ignore"):
            within = to_cluster[rows, code] / (sizes[code] - 1)
            means = to_cluster / sizes
            means[rows, code] = np.inf
            nearest = means.min(axis=1)
            # A point alone in its cluster scores 0, as scikit-learn has it.
            score = np.nan_to_num((nearest - within) / np.maximum(within, nearest))
        scores.append(float(score.mean()))
    return scores


def choose_k(sample: np.ndarray, ks, *, seed: int = 0, backend_name: str = "cpu", n_init: int = 4,
             max_iter: int = 300, tol: float = 1e-4, stability=None,
             min_share: float = 0.0) -> tuple[KMeansChoice, SegmentModel]:  # fmt: skip
    """Fit k-means for each k in ``ks`` on ``sample`` and choose one.

    With ``stability``, by stability and usefulness: the largest k whose segments all come
    back on bootstrap resamples (every one stable, see ``_stability``) and each hold at least
    ``min_share`` of the sample; more segments that hold tell more apart, and a segment that
    dissolves on another sample or holds a handful of customers is no use to act on. When no k
    qualifies, the k whose least stable segment is the most stable. Without it, by
    silhouette: the smallest k within :data:`SILHOUETTE_TIE` of the highest. Nothing but the
    sample's features is read, never what customers did later.

    Parameters
    ----------
    sample : ndarray (rows x dimensions), NumPy or CuPy
        Prepared features of a sample of customers.
    ks : iterable of int
        Candidate numbers of segments, each at least 2 and below the sample size.
    stability : callable, optional
        ``stability(k, centres) -> list of dict``: per segment of the model with those centres,
        at least ``jaccard`` and ``stable`` (:func:`bootstrap_stability`).
    min_share : float
        Smallest share of the sample a segment may hold for its k to be chosen by stability.

    Returns
    -------
    KMeansChoice, SegmentModel
        All candidates' scores, and the chosen model's centres.
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    ks = sorted(set(int(k) for k in ks))
    rows = int(sample.shape[0])
    if not ks or ks[0] < 2 or ks[-1] >= rows:
        raise UsageError(f"k must be at least 2 and below the sample size ({rows}); got {ks}")
    host = to_host_array(sample)
    # The same customers are scored whatever the seed, so the seed only moves k-means itself.
    scored = np.random.default_rng(0).choice(rows, size=min(rows, SILHOUETTE_POINTS), replace=False)
    choice, models, labelings = KMeansChoice(k=ks[0]), {}, {}
    for k in ks:
        fitted = _fit(sample, k, seed, backend_name, n_init, max_iter, tol)
        labels = to_host_array(fitted.labels_).astype(np.int64)
        if np.unique(labels).size >= 2:
            models[k] = _ordered(SegmentModel(
                centres=to_host_array(fitted.cluster_centers_).astype(np.float64).tolist(), k=k,
                inertia=float(fitted.inertia_), iterations=int(getattr(fitted, "n_iter_", 0)), seed=seed,
            ))  # fmt: skip
            labelings[k] = labels
    if not models:
        raise UsageError("k-means found fewer than 2 distinct segments for every k: the features do not vary")
    silhouette = dict(zip(labelings, silhouettes(host[scored], [labels[scored] for labels in labelings.values()])))
    for k, labels in labelings.items():
        score = {
            "k": k,
            "silhouette": silhouette[k],
            "calinski_harabasz": float(calinski_harabasz_score(host, labels)),
            "davies_bouldin": float(davies_bouldin_score(host, labels)),
            "inertia": models[k].inertia,
            "smallest_share": float(np.bincount(labels, minlength=k).min() / rows),
        }
        if stability is not None:
            choice.stability[k] = stability(k, models[k].centres)
            jaccards = [entry["jaccard"] for entry in choice.stability[k]]
            score.update(stability_min=min(jaccards), stability_mean=float(np.mean(jaccards)),
                         stable=all(entry["stable"] for entry in choice.stability[k]))  # fmt: skip
        choice.scores.append(score)
    choice.k = _chosen(choice.scores, min_share) if stability is not None else _best_silhouette(choice.scores)
    choice.by = "stability" if stability is not None else "silhouette"
    return choice, models[choice.k]


def _chosen(scores: list[dict], min_share: float) -> int:
    useful = [score["k"] for score in scores if score["stable"] and score["smallest_share"] >= min_share]
    if useful:
        return max(useful)
    return max(scores, key=lambda score: (score["stability_min"], -score["k"]))["k"]


def _best_silhouette(scores: list[dict]) -> int:
    best = max(score["silhouette"] for score in scores)
    return min(score["k"] for score in scores if score["silhouette"] >= best - SILHOUETTE_TIE)


def _ordered(model: SegmentModel) -> SegmentModel:
    """Centres in a canonical order (lexicographic), so segment ids do not depend on how the
    solver happened to number its clusters."""
    centres = np.asarray(model.centres)
    order = np.lexsort(centres.T[::-1])
    return SegmentModel(centres=centres[order].tolist(), k=model.k, inertia=model.inertia,
                        iterations=model.iterations, seed=model.seed)  # fmt: skip


def assign(prepared, centres, xp=np):
    """Nearest centre and the distance to it, for each row of a prepared matrix.

    Returns (segment int32, distance float32) in the namespace ``xp``.
    """
    centres = xp.asarray(centres)
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, one matrix product for all rows and centres.
    squared = (prepared**2).sum(axis=1)[:, None] - 2 * prepared @ centres.T + (centres**2).sum(axis=1)[None, :]
    segment = squared.argmin(axis=1)
    nearest = xp.take_along_axis(squared, segment[:, None], axis=1)[:, 0]
    return segment.astype("int32"), xp.sqrt(xp.maximum(nearest, 0)).astype("float32")
