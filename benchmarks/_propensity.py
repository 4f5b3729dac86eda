"""The random-forest benchmark (issue 6): segscale's propensity forest against scikit-learn's
``RandomForestClassifier`` on the same customers with the same settings, time and test AUC
side by side.

The data are real generated customers: the world and store the feature benchmark uses, and
the rows ``train_propensity`` would train on, built with the stage's own functions
(``labelled_features``): features as of T = the world's end - 90 days (every feature the
world's config asks for), beside the purchase label of [T, T + 90 days). The customers are
split by ``split_customers`` with the stage's seed and shares (60% train, 20% validation, 20%
test). All of it is built once per size, untimed: the labelled frame as Parquet, and for the
peer the train and test matrices segscale's ``ModelInputs`` makes (fitted on the train rows).

- ``rf-sklearn`` (runs first): ``RandomForestClassifier(...).fit`` on the train matrix, then
  ``predict_proba`` of the test matrix. Its matrices are loaded before the clock starts.
- ``rf``: what ``PropensityFit.fit`` and its scoring do for the forest itself, from the
  labelled frame: ``ModelInputs`` fitted on the train rows, the train matrix, the forest of
  ``make_estimator`` fitted on it, then the test matrix and its ``predict_proba``. Making the
  matrices is timed here and not for the peer. Left out, as the peer has no counterpart:
  calibration on the validation split, the percentile reference (a prediction of every row),
  bands, reasons, metrics and permutation importance.
- ``rf-stage``: all of that, ``fit_and_evaluate`` on the labelled frame (split, fit,
  calibrate, bands, reasons, test scores with reasons, metrics, permutation importance); no
  fairness audit (no sensitive columns are passed). Above ``PropensityOptions.sample``
  customers (1M) it trains on the stage's deterministic subset, the other two on every train row.
  The only case with a GPU path: the engine's cuML forest, which has no class weights and
  fits on the train rows with the majority class undersampled; the peer is CPU only, so on
  the GPU it stands alone.

All three use the stage's defaults: ``n_estimators``, ``max_depth``, ``max_features``,
``min_samples_leaf`` and class weighting (``balanced_subsample`` on the CPU), seed 0. ``rf``
and the peer use ``n_jobs`` = the run's workers; ``rf-stage`` the engine's own choice
(every usable core), reported in its ``n_jobs`` column. Quality is the test ROC AUC (of the
raw forest score for ``rf`` and the peer, computed the same way, untimed; of the calibrated
score for ``rf-stage``). The peer leaves its AUC and test scores in the shared data, so the
segscale cases also report ``auc_diff_vs_sklearn`` (theirs minus the peer's; the target is
within 0.005) and, for ``rf``, the largest difference of the two forests' test scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.config import PropensityOptions

__all__ = [
    "OPTIONS",
    "SETTINGS",
    "prepare_propensity_frame",
    "run_segscale_forest",
    "run_default_stage",
    "run_segscale_stage",
    "run_sklearn_forest",
]

OPTIONS = PropensityOptions(model="random_forest")  # target purchase, horizon 90 days
# The stage's defaults: the model ``auto`` picks (histogram boosting on the CPU).
DEFAULT_OPTIONS = PropensityOptions()
_SEED = 0
# What make_estimator gives scikit-learn's forest on the CPU beside the options' parameters.
_CLASS_WEIGHT = "balanced_subsample"

SETTINGS = (
    f"n_estimators={OPTIONS.n_estimators}, max_depth={OPTIONS.max_depth}, max_features={OPTIONS.max_features}, "
    f"min_samples_leaf={OPTIONS.min_samples_leaf}, class_weight={_CLASS_WEIGHT}, seed={_SEED}"
)


def prepare_propensity_frame(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    """Shared data for the random-forest cases: a world and its store, the labelled frame
    ``train_propensity`` would build (``frame.parquet``, with its ``split``), and segscale's
    prepared train and test matrices (``.npy``) for the peer."""
    from engine.backend import dask_client, resolve_backend
    from engine.config import load_config
    from engine.propensity import LABEL, ModelInputs, labelled_features, split_customers, training_origin

    from ._features import prepare_world_and_store

    world_and_store = prepare_world_and_store(size, directory, backend_name, workers)
    config = load_config(world_and_store["world"] / "segscale.toml")
    origin = training_origin(config.run.as_of, OPTIONS.horizon_days)
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        frame, meta = labelled_features(
            world_and_store["store"], directory / "features", origin, options=OPTIONS,
            feature_options=config.features, backend_name=backend_name, client=client,
        )  # fmt: skip
    features = [name for name in meta["features"] if name != LABEL]
    split = split_customers(
        frame["customer_key"], seed=_SEED, validation_share=OPTIONS.validation_share, test_share=OPTIONS.test_share
    )
    frame["split"] = pd.Series(split, dtype="string")
    frame.to_parquet(directory / "frame.parquet", index=False)

    train, test = frame.loc[split == "train"], frame.loc[split == "test"]
    preparation = ModelInputs(tuple(features)).fit(train)
    paths = {name: directory / f"{name}.npy" for name in ("train_matrix", "train_labels", "test_matrix", "test_labels")}
    np.save(paths["train_matrix"], preparation.transform(train))
    np.save(paths["train_labels"], train[LABEL].to_numpy().astype("int8"))
    np.save(paths["test_matrix"], preparation.transform(test))
    np.save(paths["test_labels"], test[LABEL].to_numpy().astype("int8"))
    return {
        "frame": directory / "frame.parquet",
        "features": features,
        "columns": preparation.output_names,
        "labels_from": origin,
        **paths,
        "sklearn": None,
    }


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _quality(auc: float, data: dict, scores: np.ndarray | None = None, **more) -> dict:
    """The AUC and ``more``, beside the differences from the peer's AUC (and test scores)
    when the peer ran."""
    quality = {"auc": round(auc, 5), **more}
    reference = data["sklearn"]
    if reference is not None:
        quality["auc_diff_vs_sklearn"] = round(auc - reference["auc"], 5)
        if scores is not None:
            quality["score_max_diff_vs_sklearn"] = round(float(np.abs(scores - reference["scores"]).max()), 6)
    return quality


def run_sklearn_forest(size, workdir, backend_name, workers, clock, data) -> dict:
    """scikit-learn: ``RandomForestClassifier(...).fit`` on the train matrix, ``predict_proba``
    of the test matrix."""
    from sklearn.ensemble import RandomForestClassifier
    from threadpoolctl import threadpool_limits

    train_matrix, train_labels = np.load(data["train_matrix"]), np.load(data["train_labels"])
    test_matrix, test_labels = np.load(data["test_matrix"]), np.load(data["test_labels"])
    with threadpool_limits(limits=workers), clock:
        model = RandomForestClassifier(
            n_estimators=OPTIONS.n_estimators, max_depth=OPTIONS.max_depth, max_features=OPTIONS.max_features,
            min_samples_leaf=OPTIONS.min_samples_leaf, class_weight=_CLASS_WEIGHT, random_state=_SEED,
            n_jobs=workers,
        ).fit(train_matrix, train_labels)  # fmt: skip
        scores = model.predict_proba(test_matrix)[:, 1]
    auc = _auc(test_labels, scores)
    data["sklearn"] = {"auc": auc, "scores": scores}
    return {
        "rows": {"train": len(train_labels), "test": len(test_labels)},
        "quality": {"auc": round(auc, 5), "n_jobs": model.n_jobs},
    }


def _frame(data: dict) -> pd.DataFrame:
    from engine.propensity import LABEL

    return pd.read_parquet(data["frame"], columns=["customer_key", *data["features"], LABEL, "split"])


def run_segscale_forest(size, workdir, backend_name, workers, clock, data) -> dict:
    """segscale's forest: ``ModelInputs`` and ``make_estimator`` as ``PropensityFit.fit`` uses
    them, fitted on the train rows, then the raw score of the test rows."""
    from threadpoolctl import threadpool_limits

    from engine.backend import resolve_backend
    from engine.propensity import LABEL, ModelInputs, make_estimator

    backend = resolve_backend(backend_name)
    frame = _frame(data)
    train = frame.loc[frame["split"] == "train"].reset_index(drop=True)
    test = frame.loc[frame["split"] == "test"].reset_index(drop=True)
    train_labels, test_labels = train[LABEL].to_numpy().astype("int8"), test[LABEL].to_numpy().astype("int8")
    with threadpool_limits(limits=workers), clock:
        preparation = ModelInputs(tuple(data["features"])).fit(train)
        forest = make_estimator(
            "random_forest", backend, n_estimators=OPTIONS.n_estimators, max_depth=OPTIONS.max_depth,
            max_features=OPTIONS.max_features, min_samples_leaf=OPTIONS.min_samples_leaf, seed=_SEED,
        )  # fmt: skip
        # The engine uses every usable core; here the run's workers, as the peer does.
        forest.set_params(n_jobs=workers)
        forest.fit(preparation.transform(train), train_labels)
        scores = np.asarray(forest.predict_proba(preparation.transform(test)))[:, 1].astype("float64")
    return {
        "rows": {"train": len(train), "test": len(test)},
        "quality": _quality(_auc(test_labels, scores), data, scores, n_jobs=forest.n_jobs),
    }


def _run_stage(options, workers, clock, data, backend_name) -> dict:
    from threadpoolctl import threadpool_limits

    from engine.backend import resolve_backend
    from engine.propensity import fit_and_evaluate

    backend = resolve_backend(backend_name)
    frame = _frame(data).drop(columns="split")
    with threadpool_limits(limits=workers), clock:
        trained = fit_and_evaluate(frame, features=data["features"], options=options, seed=_SEED, backend=backend)
    splits, test = trained.report["splits"], trained.report["test"]
    n_jobs = trained.fit.estimator.get_params().get("n_jobs")
    quality = _quality(test["roc_auc"], data, ece=round(test["ece"], 5), n_jobs=n_jobs, model=trained.fit.model)
    return {"rows": dict(splits), "quality": quality}


def run_segscale_stage(size, workdir, backend_name, workers, clock, data) -> dict:
    """segscale's whole training on the labelled frame with the forest: ``fit_and_evaluate``."""
    return _run_stage(OPTIONS, workers, clock, data, backend_name)


def run_default_stage(size, workdir, backend_name, workers, clock, data) -> dict:
    """The same with the stage's default model (``auto``)."""
    return _run_stage(DEFAULT_OPTIONS, workers, clock, data, backend_name)
