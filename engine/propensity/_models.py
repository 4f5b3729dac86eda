"""The propensity model: estimators, customer splits, and one fit that learns everything.

Three models, chosen by name, each built from one set of parameter names (``n_estimators``,
``max_depth``, ``max_features``, ``min_samples_leaf``, ``seed``), and ``auto``, the default:
``gradient_boosting`` on the CPU and ``random_forest`` on the GPU, fitted beside ``logistic``
(the simple baseline), keeping whichever has the higher AUC on the validation split.

- ``gradient_boosting``: scikit-learn's HistGradientBoosting on the CPU (``n_estimators``
  boosting rounds, learning rate 0.1, no class weights); XGBoost on the GPU when it is
  installed (``scale_pos_weight`` = negatives / positives), else a UsageError. It is the CPU
  default by measurement: on the 200k world's purchase label (105k train rows, 84 columns,
  2 cores) it fitted in 3.6 s against the forest's 35 s, at a test AUC of 0.9400 against
  0.9398. LightGBM fitted in 2.0 s at 0.9397 and XGBoost in 2.6 s at 0.9401: no better by
  enough to add a dependency. Class weights are left out because scikit-learn then bins the
  columns by weighted quantiles, which took 20 s of those 23 (and the AUC was 0.0003 lower).
- ``random_forest``: cuML on the GPU (the GPU default), scikit-learn on the CPU, through the
  backend's estimator factory. Class imbalance: scikit-learn weighs classes per bootstrap
  sample (``class_weight="balanced_subsample"``); cuML has no class weights, so on the GPU
  the majority class is undersampled to the minority's size.
- ``logistic``: the baseline, scikit-learn on both backends (it is cheap), inputs
  standardised, ``class_weight="balanced"``.

Weighting changes the raw scores' scale, never their purpose: the calibrator, fitted on the
validation split at the true class balance, turns them back into probabilities.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..backend import Backend
from ..exceptions import InputDataError, UsageError
from ._boosted import LeafTables, leaf_tables
from ._prepare import ModelInputs
from ._reasons import ReasonTable
from ._scores import Bands, Calibrator, percentile_rank, reference_quantiles

__all__ = ["MODELS", "SPLITS", "PropensityFit", "make_estimator", "resolve_model", "split_customers"]

MODELS = ("random_forest", "logistic", "gradient_boosting")
# What ``auto`` means on each backend (see the module docstring for why).
_AUTO = {"cpu": "gradient_boosting", "gpu": "random_forest"}
SPLITS = ("train", "validation", "test")
# Blocks of trees a forest's scores are summed in (see _forest_scores).
_SCORE_BLOCKS = 8
# Bytes of float64 inputs a boosted model predicts at a time (see _boosted_scores).
_BOOSTED_BLOCK_BYTES = 2 * 2**20
# Each boosted model's leaf tables, made the first time it scores and dropped with it.
_LEAF_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Rows the partial dependence behind the reasons is measured on, and at most the rows whose
# scores make the percentile reference (1001 quantiles, steady well before 200k). Every row
# they add is a prediction of every tree: with 1,000 and every row, the demo's training spent
# 60% of its time predicting (measured with py-spy).
_REASON_SAMPLE = 500
_REFERENCE_ROWS = 200_000


def split_customers(keys, *, seed: int, validation_share: float, test_share: float) -> np.ndarray:
    """``"train"``, ``"validation"`` or ``"test"`` per customer, from a salted hash of the key.

    The same customer lands in the same split in every run with the same seed, whatever
    the row order or partitioning.
    """
    if not (0 < validation_share and 0 < test_share and validation_share + test_share < 1):
        raise UsageError(
            f"propensity: validation and test shares must be positive and sum below 1, "
            f"got {validation_share} and {test_share}"
        )
    hashed = pd.util.hash_array(np.asarray(keys, dtype=object), hash_key=f"segscale{seed:08d}"[-16:])
    unit = hashed.astype("float64") / 2.0**64
    split = np.where(unit < test_share, 2, np.where(unit < test_share + validation_share, 1, 0))
    return np.asarray(SPLITS, dtype=object)[split]


def resolve_model(model: str, backend: Backend) -> str:
    """The model ``model`` names on ``backend``: ``auto`` becomes the backend's default."""
    if model == "auto":
        return _AUTO[backend.name]
    if model not in MODELS:
        raise UsageError(f"propensity: unknown model {model!r}: use auto or one of {', '.join(MODELS)}")
    return model


def make_estimator(model: str, backend: Backend, *, n_estimators, max_depth, max_features, min_samples_leaf, seed,
                   positives: int = 1, negatives: int = 1):  # fmt: skip
    """An unfitted estimator of ``model`` (``auto`` or one of ``MODELS``) from ``backend``;
    see the module docstring."""
    model = resolve_model(model, backend)
    trees = dict(n_estimators=n_estimators, max_depth=max_depth, max_features=max_features,
                 min_samples_leaf=min_samples_leaf, seed=seed)  # fmt: skip
    if model == "random_forest":
        return backend.random_forest(**trees)
    if model == "logistic":
        return backend.logistic()
    return backend.gradient_boosting(**trees, positives=positives, negatives=negatives)


def _sum_positive_share(trees, matrix: np.ndarray) -> np.ndarray:
    total = np.zeros(len(matrix))
    for tree in trees:
        total += tree.predict_proba(matrix, check_input=False)[:, 1]
    return total


def _forest_scores(forest, matrix: np.ndarray) -> np.ndarray:
    """A scikit-learn forest's mean positive-class probability, added up in tree order.

    The forest's own ``predict_proba`` adds the trees' predictions from its threads in the
    order they finish, so the same customer can get scores that differ in the last bits from
    run to run, and a tie at a percentile or band edge then falls either way. Here the trees
    are summed in a fixed number of blocks, whatever the threads, and the blocks are added in
    order: the same bits every run, in the training process and in a one-thread scoring task.
    """
    from joblib import Parallel, delayed

    trees = forest.estimators_
    blocks = [block for block in np.array_split(np.arange(len(trees)), _SCORE_BLOCKS) if len(block)]
    parts = Parallel(n_jobs=min(len(blocks), max(1, forest.n_jobs or 1)), prefer="threads")(
        delayed(_sum_positive_share)([trees[i] for i in block], matrix) for block in blocks
    )
    return np.sum(parts, axis=0) / len(trees)


def _boosted_scores(booster, matrix: np.ndarray) -> np.ndarray:
    """A scikit-learn HistGradientBoosting model's positive-class probability: the raw scores
    by its leaf tables (`engine.propensity._boosted`, the same bits), else by scikit-learn a
    block of rows at a time.

    scikit-learn walks every row through one tree before it starts the next, reading the inputs
    as float64: a whole feature part (24k rows by 89 columns, 17 MB) is read from memory again
    for each tree. A block of about 2 MiB stays in the core's cache for all of them (2.5 times
    faster at 1M customers); each row's score is the same sum whatever block it is in.
    """
    if booster not in _LEAF_TABLES:
        _LEAF_TABLES[booster] = leaf_tables(booster)
    tables = _LEAF_TABLES[booster]
    if tables is not None:
        return tables.probabilities(matrix)
    rows = max(1, _BOOSTED_BLOCK_BYTES // (8 * matrix.shape[1]))
    blocks = [booster.predict_proba(matrix[start : start + rows])[:, 1] for start in range(0, len(matrix), rows)]
    return np.concatenate(blocks).astype("float64")


def _positive_scores(estimator, matrix: np.ndarray) -> np.ndarray:
    """A fitted estimator's (or a boosted model's leaf tables') positive-class score of each row of ``matrix``."""
    if isinstance(estimator, LeafTables):
        return estimator.probabilities(matrix)
    if type(estimator).__name__ == "RandomForestClassifier":
        return _forest_scores(estimator, matrix)
    if type(estimator).__name__ == "HistGradientBoostingClassifier":
        return _boosted_scores(estimator, matrix)
    return np.asarray(estimator.predict_proba(matrix))[:, 1].astype("float64")


def _candidates(model: str, backend: Backend) -> list[str]:
    """The models a fit tries: ``auto`` tries the backend's default and the logistic baseline."""
    resolved = resolve_model(model, backend)
    return [resolved, "logistic"] if model == "auto" and resolved != "logistic" else [resolved]


def _fit_estimator(model: str, backend: Backend, matrix: np.ndarray, labels: np.ndarray, *, options, seed: int):
    """``model`` fitted on the train rows, in its host form."""
    positives, negatives = int(labels.sum()), int((1 - labels).sum())
    estimator = make_estimator(
        model, backend, n_estimators=options.n_estimators, max_depth=options.max_depth,
        max_features=options.max_features, min_samples_leaf=options.min_samples_leaf, seed=seed,
        positives=positives, negatives=negatives,
    )  # fmt: skip
    return backend.host_estimator(estimator.fit(matrix, labels))


@dataclass
class PropensityFit:
    """Everything a score needs: preparation, estimator (CPU form), calibrator, bands, reasons.

    Built by :meth:`fit`; :meth:`score` applies it to any frame with the input columns.
    """

    preparation: ModelInputs
    estimator: object
    calibrator: Calibrator
    bands: Bands
    reference: list[float]
    reasons: ReasonTable
    model: str
    selection: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, y: np.ndarray, split: np.ndarray, *, features, options, seed: int,
            backend: Backend, recent: np.ndarray | None = None, explain: bool = True) -> PropensityFit:  # fmt: skip
        """Fit on the train split, calibrate on the validation split, set bands and (unless
        ``explain`` is False, when the caller calls :meth:`explain` itself) reasons.

        ``recent`` marks the rows of the latest training origin when there are several: the
        model learns from every train row, but calibration and the percentile reference use
        recent rows only, so that scores describe the period they will be used in.

        Raises
        ------
        InputDataError
            Fewer than ``options.min_class_count`` positives or negatives in the training rows.
        """
        y = np.asarray(y).astype("int8")
        recent = np.ones(len(frame), dtype=bool) if recent is None else np.asarray(recent, dtype=bool)
        train, validation = split == "train", (split == "validation") & recent
        positives, negatives = int(y[train].sum()), int((1 - y[train]).sum())
        if min(positives, negatives) < options.min_class_count:
            raise InputDataError(
                f"propensity: too little data to train on: {positives} positives and {negatives} negatives "
                f"in the training split, at least {options.min_class_count} of each needed "
                "(use more customers, a longer horizon, or lower min_class_count)"
            )
        if min(int(y[validation].sum()), int((1 - y[validation]).sum())) == 0:
            raise InputDataError("propensity: the validation split holds a single class; nothing to calibrate on")
        preparation = ModelInputs(tuple(features)).fit(frame.loc[train])
        matrix = preparation.transform(frame.loc[train])
        fits = {
            model: _fit_estimator(model, backend, matrix, y[train], options=options, seed=seed)
            for model in _candidates(options.model, backend)
        }
        # The validation split's raw scores: what auto compares and what calibration learns from.
        held_out = preparation.transform(frame.loc[validation])
        scores = {name: _positive_scores(fitted, held_out) for name, fitted in fits.items()}
        selection = {}
        if len(fits) > 1:
            # auto keeps the backend's model only where it beats the simple baseline on the
            # validation split (on 4,200 rows of Telco churn, boosting's deep trees did not).
            from sklearn.metrics import roc_auc_score

            selection = {name: float(roc_auc_score(y[validation], score)) for name, score in scores.items()}
        model = max(fits, key=lambda name: selection.get(name, 0.0))
        estimator = fits[model]
        fitted = cls(preparation, estimator, Calibrator(options.calibration), Bands(options.band_by, options.bands),
                     [], ReasonTable(), model, selection)  # fmt: skip
        fitted.calibrator.fit(scores[model], y[validation])
        latest = frame.loc[recent]
        fitted.reference = reference_quantiles(
            fitted.probabilities(latest.iloc[:: max(1, len(latest) // _REFERENCE_ROWS)])
        )
        fitted.bands.fit(fitted.reference)
        if explain:
            fitted.explain(frame.loc[train])
        return fitted

    def explain(self, train_rows: pd.DataFrame, features=None) -> PropensityFit:
        """Measure the reasons' curves on a sample of ``train_rows`` for ``features`` (default:
        every input); only features with a curve can be a customer's reason."""
        sample = train_rows.iloc[:: max(1, len(train_rows) // _REASON_SAMPLE)]
        self.reasons = ReasonTable().fit(self.probabilities, sample.reset_index(drop=True), self.preparation,
                                         features=features)  # fmt: skip
        return self

    def raw_scores(self, frame: pd.DataFrame, *, where: str = "the frame") -> np.ndarray:
        """The estimator's uncalibrated positive-class score."""
        matrix = self.preparation.transform(frame, where=where)
        if not len(matrix):
            return np.empty(0)
        return _positive_scores(self.estimator, matrix)

    def probabilities(self, frame: pd.DataFrame, *, where: str = "the frame") -> np.ndarray:
        """Calibrated probabilities."""
        return self.calibrator.transform(self.raw_scores(frame, where=where))

    def score(self, frame: pd.DataFrame, *, where: str = "the frame") -> pd.DataFrame:
        """``score``, ``percentile``, ``band``, ``reason_1..3`` for every row of ``frame``."""
        probability = self.probabilities(frame, where=where)
        scored = pd.DataFrame(
            {
                "score": probability.astype("float32"),
                "percentile": percentile_rank(probability, self.reference),
                "band": pd.Series(self.bands.assign(probability), dtype="string"),
            }
        )
        for name, reasons in self.reasons.top(frame.reset_index(drop=True)).items():
            scored[name] = pd.Series(reasons, dtype="string")
        return scored
