"""The k-means benchmark (issue 5): segscale's k-means against scikit-learn's ``KMeans`` on
the same matrix with the same settings, time and inertia side by side.

The data are real generated customers: the world and store the feature benchmark uses, their
features (``engine.features.build_features``, every group) and the matrix
``engine.segments.Preparation`` makes of them, fitted on the sample ``build_segments`` draws.
All of it is built once per size, untimed, and saved as one float64 ``.npy`` each case loads
before its clock starts.

- ``kmeans`` does what ``build_segments`` does, fit small and score big: ``choose_k`` with
  the fixed k on the pipeline's deterministic sample (every n-th customer of each feature
  part, 50k in all), silhouette and the other scores of the choice included, then ``assign``
  of every row, part by part in this process (the pipeline runs one Dask task per part; here
  the matrix is already in memory).
- ``kmeans-distributed`` fits on every row with ``fit_distributed_kmeans`` (k-means||, then
  Lloyd passes over the parts, the data never gathered), then assigns every row by part.
- ``kmeans-sklearn`` fits ``KMeans`` on every row, then predicts every row.

All use k-means++ (k-means|| for the distributed fit), the pipeline's n_init, tol, max_iter and seed, and as many threads as
the run has workers. Their quality is the inertia over all rows (sum of squared distances to
the assigned centre, float64, computed the same way for both, untimed). The peer runs first
and leaves its labels and inertia in the shared data, so the segscale case can also report
its inertia relative to the peer's (the target is at most 1.005) and the adjusted Rand index
of the two labellings.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import dask
import numpy as np

from engine.config import SegmentOptions
from engine.segments import choose_k

__all__ = [
    "K", "SAMPLE", "SETTINGS",
    "prepare_kmeans_matrix", "run_distributed_kmeans", "run_segscale_kmeans", "run_sklearn_kmeans",
]  # fmt: skip

K = 6
_SEED = 0
# The settings build_segments fits with: SegmentOptions' sample and n_init, and choose_k's
# own defaults for the rest, read from its signature so the two cannot drift apart.
SAMPLE = SegmentOptions().sample
_N_INIT = SegmentOptions().n_init
_MAX_ITER = inspect.signature(choose_k).parameters["max_iter"].default
_TOL = inspect.signature(choose_k).parameters["tol"].default

SETTINGS = f"k={K}, k-means++, n_init={_N_INIT}, tol={_TOL:g}, max_iter={_MAX_ITER}, seed={_SEED}"


def _bounds(rows_per_part: list[int]) -> np.ndarray:
    """Where each part starts in the concatenated matrix, and where the last one ends."""
    return np.concatenate([[0], np.cumsum(rows_per_part)]).astype(np.int64)


def _pipeline_sample(rows_per_part: list[int], sample: int) -> np.ndarray:
    """Row numbers (in the concatenated matrix) of the sample ``build_segments`` fits on:
    every n-th customer of each part, n chosen so the whole holds about ``sample`` rows."""
    every = max(1, math.ceil(sum(rows_per_part) / sample))
    starts = _bounds(rows_per_part)[:-1]
    return np.concatenate([start + np.arange(0, rows, every) for start, rows in zip(starts, rows_per_part)])


def prepare_kmeans_matrix(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    """Shared data for the k-means cases: a world, its store and features, and the prepared
    matrix of every customer, saved as ``matrix.npy``."""
    import pandas as pd
    import pyarrow.parquet as pq

    from engine.backend import dask_client, resolve_backend
    from engine.features import build_features
    from engine.segments import Preparation

    from ._features import AS_OF, prepare_world_and_store

    store = prepare_world_and_store(size, directory, backend_name, workers)["store"]
    features = directory / "features"
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        build_features(store, features, as_of=AS_OF, backend_name=backend_name, client=client)
    rows_per_part = json.loads((features / "_features.json").read_text())["rows_per_partition"]
    parts = [features / f"part-{number:05d}.parquet" for number in range(len(rows_per_part))]

    sample_index = _pipeline_sample(rows_per_part, SAMPLE)
    starts = _bounds(rows_per_part)
    sample_frames = []
    for number, part in enumerate(parts):
        within = sample_index[(sample_index >= starts[number]) & (sample_index < starts[number + 1])] - starts[number]
        if within.size:
            sample_frames.append(pq.read_table(part).take(within).to_pandas())
    preparation = Preparation().fit(pd.concat(sample_frames, ignore_index=True))
    matrix = np.empty((int(starts[-1]), len(preparation.columns_)), dtype=np.float64)
    for number, part in enumerate(parts):
        frame = pq.read_table(part, columns=preparation.columns_).to_pandas()
        matrix[starts[number] : starts[number + 1]] = preparation.transform(frame)
    np.save(directory / "matrix.npy", matrix)
    return {
        "matrix": directory / "matrix.npy",
        "rows_per_part": rows_per_part,
        "sample_index": sample_index,
        "columns": list(preparation.columns_),
        "sklearn": None,
    }


def _inertia(matrix: np.ndarray, labels: np.ndarray, centres: np.ndarray, rows_per_part: list[int]) -> float:
    """Sum of squared distances of every row to its assigned centre, in float64, by part."""
    total, start = 0.0, 0
    for rows in rows_per_part:
        block = matrix[start : start + rows]
        total += float(((block - centres[labels[start : start + rows]]) ** 2).sum())
        start += rows
    return total


def run_segscale_kmeans(size, workdir, backend_name, workers, clock, data) -> dict:
    """segscale: ``choose_k`` with k fixed on the pipeline's sample, then ``assign`` by part."""
    from threadpoolctl import threadpool_limits

    from engine.backend import resolve_backend, to_host_array
    from engine.segments import assign

    backend = resolve_backend(backend_name)
    xp = backend.xp
    host = np.load(data["matrix"])
    # On the GPU the matrix is put on the device before the clock, as the pipeline's parts
    # are already there when it assigns them.
    matrix, sample_index = xp.asarray(host), xp.asarray(data["sample_index"])
    with threadpool_limits(limits=workers), clock:
        _, model = choose_k(
            matrix[sample_index], [K], seed=_SEED, backend_name=backend.name,
            n_init=_N_INIT, max_iter=_MAX_ITER, tol=_TOL,
        )  # fmt: skip
        labels, start = xp.empty(matrix.shape[0], dtype="int32"), 0
        for rows in data["rows_per_part"]:
            labels[start : start + rows], _ = assign(matrix[start : start + rows], model.centres, xp)
            start += rows
    return _scored(host, to_host_array(labels), model, data)


def run_distributed_kmeans(size, workdir, backend_name, workers, clock, data) -> dict:
    """segscale's distributed k-means on every row: k-means|| and Lloyd passes over the
    parts (Dask's local scheduler, one thread per worker), then ``assign`` by part."""
    from threadpoolctl import threadpool_limits

    from engine.backend import resolve_backend, to_host_array
    from engine.segments import assign, fit_distributed_kmeans

    xp = resolve_backend(backend_name).xp
    host = np.load(data["matrix"])
    matrix = xp.asarray(host)
    starts = _bounds(data["rows_per_part"])
    parts = [matrix[start:end] for start, end in zip(starts[:-1], starts[1:])]
    with dask.config.set(scheduler="threads", num_workers=workers), threadpool_limits(limits=1), clock:
        model = fit_distributed_kmeans(parts, K, seed=_SEED, n_init=_N_INIT, max_iter=_MAX_ITER, tol=_TOL)
        labels = xp.concatenate([assign(part, model.centres, xp)[0] for part in parts])
    return _scored(host, to_host_array(labels), model, data)


def _scored(host: np.ndarray, labels: np.ndarray, model, data) -> dict:
    """The result of a segscale case: inertia over every row, and against the peer's."""
    inertia = _inertia(host, labels, np.asarray(model.centres), data["rows_per_part"])
    quality = {"inertia": round(inertia, 2), "iterations": model.iterations}
    reference = data["sklearn"]
    if reference is not None:
        from sklearn.metrics import adjusted_rand_score

        quality["inertia_vs_sklearn"] = round(inertia / reference["inertia"], 5)
        quality["ari_vs_sklearn"] = round(float(adjusted_rand_score(reference["labels"], labels)), 4)
    return {"rows": {"customers": int(labels.size)}, "quality": quality}


def run_sklearn_kmeans(size, workdir, backend_name, workers, clock, data) -> dict:
    """scikit-learn: ``KMeans(...).fit`` on every row, then ``predict`` of every row."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    matrix = np.load(data["matrix"])
    with threadpool_limits(limits=workers), clock:
        model = KMeans(
            n_clusters=K, init="k-means++", n_init=_N_INIT, tol=_TOL, max_iter=_MAX_ITER, random_state=_SEED
        ).fit(matrix)
        labels = model.predict(matrix)
    inertia = _inertia(matrix, labels, model.cluster_centers_, data["rows_per_part"])
    data["sklearn"] = {"labels": labels, "inertia": inertia}
    return {
        "rows": {"customers": int(labels.size)},
        "quality": {"inertia": round(inertia, 2), "iterations": int(model.n_iter_)},
    }
