"""engine.backend._estimators: the models a backend builds, on the CPU here and the GPU where there is one."""

import numpy as np
import pytest

import engine.backend._estimators as estimators_module
from engine.backend import resolve_backend, to_host_array, usable_cores
from engine.backend._estimators import BalancedForest, balanced_rows

TWO_BLOBS = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 10.0], [10.1, 10.0], [10.0, 10.1]])


def test_estimator_kmeans(backend):
    kmeans = backend.estimator("KMeans")
    assert isinstance(kmeans, type)
    assert kmeans.__name__ == "KMeans"
    if backend.is_gpu:
        assert kmeans.__module__.startswith("cuml")
    else:
        import sklearn.cluster

        assert kmeans is sklearn.cluster.KMeans


@pytest.mark.parametrize("name", sorted(estimators_module._ESTIMATORS))
def test_every_estimator_resolves_on_cpu(name):
    estimator = resolve_backend("cpu").estimator(name)
    assert isinstance(estimator, type)
    assert estimator.__name__ == name
    assert estimator.__module__.startswith("sklearn.")
    assert hasattr(estimator, "fit")


def test_unknown_estimator_lists_the_known_ones(backend):
    with pytest.raises(ValueError, match="'HDBSCAN'") as caught:
        backend.estimator("HDBSCAN")
    for known in estimators_module._ESTIMATORS:
        assert known in str(caught.value)


def test_cpu_kmeans_from_the_factory_fits():
    kmeans_class = resolve_backend("cpu").estimator("KMeans")
    points = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 10.0], [10.1, 10.0], [10.0, 10.1]])
    model = kmeans_class(n_clusters=2, n_init=1, random_state=0).fit(points)
    labels = model.labels_
    assert len(set(labels[:3])) == 1
    assert len(set(labels[3:])) == 1
    assert labels[0] != labels[3]
    np.testing.assert_allclose(
        sorted(model.cluster_centers_.tolist()), [[1 / 30, 1 / 30], [10 + 1 / 30, 10 + 1 / 30]]
    )


def test_kmeans_from_the_backend_finds_the_two_blobs(backend):
    model = backend.kmeans(2, seed=0, n_init=1).fit(backend.xp.asarray(TWO_BLOBS))
    labels = to_host_array(model.labels_)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
    assert model.get_params()["n_clusters"] == 2


def test_dbscan_from_the_backend_marks_cores_and_noise(backend):
    points = np.vstack([TWO_BLOBS, [[50.0, 50.0]]])
    model = backend.dbscan(eps=0.5, min_samples=3).fit(backend.xp.asarray(points))
    labels = to_host_array(model.labels_)
    assert labels[-1] == -1 and len(set(labels[:3])) == 1 and labels[0] != labels[3]
    assert sorted(to_host_array(model.core_sample_indices_).tolist()) == [0, 1, 2, 3, 4, 5]


def test_nearest_neighbours_from_the_backend(backend):
    distances, indices = backend.nearest_neighbors(2).fit(TWO_BLOBS).kneighbors(TWO_BLOBS)
    assert to_host_array(indices)[:, 0].tolist() == list(range(6))
    np.testing.assert_allclose(to_host_array(distances)[:, 1], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1], rtol=1e-5)


def test_the_cpu_forest_weights_classes_and_uses_every_core():
    forest = resolve_backend("cpu").random_forest(n_estimators=5, max_depth=3, max_features=0.5, min_samples_leaf=2,
                                                  seed=7)  # fmt: skip
    params = forest.get_params()
    assert params["class_weight"] == "balanced_subsample" and params["random_state"] == 7
    assert params["n_jobs"] == usable_cores()


@pytest.mark.gpu
def test_the_gpu_forest_balances_rows_and_comes_home_as_scikit_learn():
    backend = resolve_backend("gpu")
    forest = backend.random_forest(n_estimators=5, max_depth=3, max_features=0.5, min_samples_leaf=2, seed=7)
    assert isinstance(forest, BalancedForest) and forest.get_params()["n_streams"] == 1
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(400, 3)).astype("float32")
    labels = (matrix[:, 0] > 1.0).astype("int32")
    host = backend.host_estimator(forest.fit(matrix, labels))
    assert type(host).__module__.startswith("sklearn.")
    assert host.predict_proba(matrix).shape == (400, 2)


def test_balanced_rows_keep_every_minority_row_and_as_many_others():
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    rows = balanced_rows(labels, seed=3)
    assert rows.tolist() == sorted(rows.tolist())
    assert labels[rows].sum() == 2 and len(rows) == 4
    assert balanced_rows(labels, seed=3).tolist() == rows.tolist()


@pytest.mark.parametrize("model", ["random_forest", "gradient_boosting", "logistic"])
def test_host_estimator_of_a_cpu_model_is_the_model(model):
    backend = resolve_backend("cpu")
    trees = dict(n_estimators=3, max_depth=2, max_features=1.0, min_samples_leaf=1, seed=0)
    estimator = backend.logistic() if model == "logistic" else getattr(backend, model)(**trees)
    fitted = estimator.fit(TWO_BLOBS, np.array([0, 0, 0, 1, 1, 1]))
    assert backend.host_estimator(fitted) is fitted
    assert fitted.predict_proba(TWO_BLOBS).shape == (6, 2)
