"""The models stages fit, built for the backend's device.

cuML on the GPU (XGBoost for boosting), scikit-learn on the CPU, made with the same
parameters and used through the scikit-learn contract (``fit``, ``predict``,
``predict_proba``, ``get_params``), which cuML's estimators follow: a stage asks its backend
for a model and never branches on the device. What differs between the devices (cuML's
forest has no ``class_weight``; its DBSCAN batches its distance matrix) is settled here.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

from ..exceptions import UsageError

__all__ = ["Estimators", "balanced_rows"]

# Estimator name -> (scikit-learn module, cuML module). Both sides share the class name,
# and cuML keeps scikit-learn's parameter names for these, so either is built with the same
# arguments.
_ESTIMATORS = {
    "KMeans": ("sklearn.cluster", "cuml.cluster"),
    "DBSCAN": ("sklearn.cluster", "cuml.cluster"),
    "RandomForestClassifier": ("sklearn.ensemble", "cuml.ensemble"),
    "LogisticRegression": ("sklearn.linear_model", "cuml.linear_model"),
    "NearestNeighbors": ("sklearn.neighbors", "cuml.neighbors"),
    "PCA": ("sklearn.decomposition", "cuml.decomposition"),
}
# cuML's DBSCAN computes its pairwise distances in batches of at most this many MB of memory.
_DBSCAN_BATCH_MBYTES = 2048


def balanced_rows(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices keeping every minority-class row and as many majority rows, drawn with ``seed``."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    minority, majority = (positives, negatives) if len(positives) <= len(negatives) else (negatives, positives)
    kept = np.random.default_rng(seed).choice(majority, size=len(minority), replace=False)
    return np.sort(np.concatenate([minority, kept]))


class BalancedForest:
    """cuML's random forest fitted on class-balanced rows (`balanced_rows`): it has no
    ``class_weight``, which scikit-learn's forest is given instead."""

    def __init__(self, forest, seed: int):
        self.forest, self.seed = forest, seed

    def get_params(self, deep: bool = True) -> dict:
        return {**self.forest.get_params(deep), "balanced_seed": self.seed}

    def fit(self, matrix, labels):
        rows = balanced_rows(np.asarray(labels), self.seed)
        self.forest.fit(matrix[rows], labels[rows])
        return self

    def predict_proba(self, matrix):
        return self.forest.predict_proba(matrix)

    def predict(self, matrix):
        return self.forest.predict(matrix)

    def as_sklearn(self):
        return self.forest.as_sklearn()


class Estimators:
    """The estimator factories of a :class:`~engine.backend.Backend` (``name`` is its device)."""

    name: str

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def estimator(self, name: str) -> type:
        """The estimator class ``name`` from cuML (gpu) or scikit-learn (cpu).

        Parameters
        ----------
        name : str
            One of ``KMeans``, ``DBSCAN``, ``RandomForestClassifier``,
            ``LogisticRegression``, ``NearestNeighbors``, ``PCA``.
        """
        try:
            cpu_module, gpu_module = _ESTIMATORS[name]
        except KeyError:
            raise ValueError(f"unknown estimator {name!r}; known: {', '.join(sorted(_ESTIMATORS))}") from None
        module = importlib.import_module(gpu_module if self.is_gpu else cpu_module)
        return getattr(module, name)

    def kmeans(self, n_clusters: int, *, seed: int, n_init: int = 1, max_iter: int = 300, tol: float = 1e-4):
        return self.estimator("KMeans")(n_clusters=n_clusters, n_init=n_init, max_iter=max_iter, tol=tol,
                                        random_state=seed)  # fmt: skip

    def dbscan(self, *, eps: float, min_samples: int):
        """DBSCAN exposing ``labels_`` and ``core_sample_indices_`` once fitted."""
        if self.is_gpu:
            return self.estimator("DBSCAN")(eps=eps, min_samples=min_samples, max_mbytes_per_batch=_DBSCAN_BATCH_MBYTES,
                                            calc_core_sample_indices=True, output_type="numpy")  # fmt: skip
        return self.estimator("DBSCAN")(eps=eps, min_samples=min_samples)

    def nearest_neighbors(self, n_neighbors: int):
        return self.estimator("NearestNeighbors")(n_neighbors=n_neighbors)

    def random_forest(self, *, n_estimators: int, max_depth, max_features, min_samples_leaf: int, seed: int):
        """A forest weighting the classes alike: by ``class_weight`` on the CPU, by balanced
        rows on the GPU; on the CPU its trees grow on every usable core."""
        from ._device import usable_cores

        common = dict(n_estimators=n_estimators, max_depth=max_depth, max_features=max_features,
                      min_samples_leaf=min_samples_leaf, random_state=seed)  # fmt: skip
        forest = self.estimator("RandomForestClassifier")
        if self.is_gpu:
            return BalancedForest(forest(**common, n_streams=1), seed)  # one stream: the same forest for the same seed
        return forest(**common, class_weight="balanced_subsample", n_jobs=usable_cores())

    def gradient_boosting(self, *, n_estimators: int, max_depth, max_features, min_samples_leaf: int, seed: int,
                          positives: int = 1, negatives: int = 1):  # fmt: skip
        """Histogram boosting: scikit-learn's on the CPU, XGBoost's on the GPU (weighting the
        positives by the class ratio, which scikit-learn's leaves to calibration)."""
        if self.is_gpu:
            if importlib.util.find_spec("xgboost") is None:
                raise UsageError(
                    "propensity: gradient_boosting on the GPU needs xgboost (pip install xgboost), "
                    "or use --backend cpu for scikit-learn's HistGradientBoosting"
                )
            from xgboost import XGBClassifier

            # min_child_weight is a floor on a leaf's sum of hessians, p(1 - p) <= 0.25 a row for
            # the logistic loss (xgboost 3.4 doc/parameter.rst:116-118), not a row count: a
            # quarter of min_samples_leaf asks for that many rows where p is near 0.5, and no
            # mapping is exact. The learning rate is the CPU model's.
            return XGBClassifier(
                n_estimators=n_estimators, max_depth=max_depth or 0, colsample_bynode=max_features,
                min_child_weight=0.25 * min_samples_leaf, scale_pos_weight=negatives / max(positives, 1),
                learning_rate=0.1, tree_method="hist", device="cuda", random_state=seed,
            )  # fmt: skip
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=n_estimators, max_depth=max_depth, max_features=max_features, min_samples_leaf=min_samples_leaf,
            learning_rate=0.1, early_stopping=False, random_state=seed,
        )  # fmt: skip

    def logistic(self):
        """Standardised, class-balanced logistic regression: a baseline small enough for the
        host on either device."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000, class_weight="balanced"))

    def host_estimator(self, estimator):
        """A fitted estimator as it is saved and scored on any machine: scikit-learn (or
        XGBoost on the CPU)."""
        if not self.is_gpu:
            return estimator
        if hasattr(estimator, "as_sklearn"):  # cuML's way across (cuML >= 25.08)
            from ._device import usable_cores

            host = estimator.as_sklearn()
            # cuML hands over no n_jobs (scikit-learn's default, one thread): score like a CPU forest.
            if "n_jobs" in host.get_params():
                host.set_params(n_jobs=usable_cores())
            return host
        if hasattr(estimator, "set_params") and type(estimator).__module__.startswith("xgboost"):
            return estimator.set_params(device="cpu")
        return estimator
