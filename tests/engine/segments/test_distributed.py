"""Tests for the distributed k-means: k-means|| and Lloyd passes over partitions."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from engine.segments import _distributed
from engine.segments._distributed import fit_distributed_kmeans


@pytest.fixture(scope="module")
def blobs():
    rows, _ = make_blobs(n_samples=20_000, centers=6, n_features=5, cluster_std=1.5, random_state=3)
    # Unequal partitions, one of them empty, as a store's can be.
    edges = [0, 1_000, 1_000, 7_500, 9_000, 15_000, 20_000]
    return rows, [rows[start:end] for start, end in zip(edges[:-1], edges[1:])]


def _inertia(rows, centres):
    return float(((rows[:, None, :] - np.asarray(centres)[None]) ** 2).sum(axis=2).min(axis=1).sum())


def test_reaches_scikit_learns_inertia_on_blobs(blobs):
    rows, parts = blobs
    model = fit_distributed_kmeans(parts, 6, seed=0, n_init=2)
    reference = KMeans(n_clusters=6, n_init=4, random_state=0).fit(rows)
    assert model.inertia == pytest.approx(_inertia(rows, model.centres), rel=1e-9)
    assert model.inertia <= reference.inertia_ * 1.005
    ours, theirs = np.asarray(model.centres), reference.cluster_centers_[np.lexsort(reference.cluster_centers_.T[::-1])]
    np.testing.assert_allclose(ours, theirs, atol=0.05)


def test_the_same_seed_gives_the_same_centres(blobs):
    _, parts = blobs
    first, again = (fit_distributed_kmeans(parts, 4, seed=7) for _ in range(2))
    assert first.centres == again.centres and first.iterations == again.iterations


def test_iterations_stop_at_max_iter_and_at_the_tolerance(blobs):
    _, parts = blobs
    assert fit_distributed_kmeans(parts, 6, seed=0, max_iter=1).iterations == 1
    loose, strict = (fit_distributed_kmeans(parts, 6, seed=0, tol=tol) for tol in (1.0, 1e-8))
    assert loose.iterations < strict.iterations and strict.inertia <= loose.inertia


def test_restarts_share_each_pass_over_the_data(blobs, monkeypatch):
    _, parts = blobs
    passes = []
    compute = _distributed.compute_tasks
    monkeypatch.setattr(_distributed, "compute_tasks", lambda *args: passes.append(args[-1]) or compute(*args))
    one = fit_distributed_kmeans(parts, 6, seed=0, n_init=1, tol=1e-8)
    alone = len(passes)
    passes.clear()
    four = fit_distributed_kmeans(parts, 6, seed=0, n_init=4, tol=1e-8)
    # Four restarts in turn would take about four times the passes; shared, the slowest
    # restart sets the count.
    assert len(passes) < 2 * alone
    assert four.inertia <= one.inertia


def test_too_few_rows_for_k_is_refused():
    with pytest.raises(ValueError, match="3 rows cannot make 4 centres"):
        fit_distributed_kmeans([np.zeros((2, 2)), np.ones((1, 2))], 4)


@pytest.mark.gpu
def test_cupy_partitions_give_the_numpy_centres(blobs):
    import cupy

    _, parts = blobs
    on_gpu = fit_distributed_kmeans([cupy.asarray(part) for part in parts], 6, seed=0)
    on_cpu = fit_distributed_kmeans(parts, 6, seed=0)
    # Rounding may flip a draw of k-means|| or the last Lloyd pass; both land on one optimum.
    np.testing.assert_allclose(on_gpu.centres, on_cpu.centres, atol=1e-3)
    assert on_gpu.inertia == pytest.approx(on_cpu.inertia, rel=1e-4)
