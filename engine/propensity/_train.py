"""Train, measure and save: what store-based and bring-your-own-table training share.

A model directory holds ``model.joblib`` (the fitted estimator in CPU form: scikit-learn,
or XGBoost set to the CPU) and ``model.json`` (everything else, readable without Python:
format version, preparation, input columns and their kinds, calibrator, bands, percentile
reference, reason curves, training window, metrics, backend, package versions and a
fingerprint of the training data), plus ``metrics.json`` with the full test-split report and
``test_scores.parquet`` (customer_key, label, score of every test customer: the ROC and PR
curves, recomputable by anyone).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from ..backend import Backend
from ..exceptions import InputDataError, UsageError
from ..layout import ModelLayout
from ._boosted import leaf_tables
from ._fairness import fairness_audit
from ._labels import LABEL, ORIGIN, sample_units
from ._metrics import classification_metrics, permutation_importance
from ._models import SPLITS, PropensityFit, split_customers
from ._prepare import ModelInputs
from ._reasons import ReasonTable
from ._scores import Bands, Calibrator

__all__ = ["FORMAT_VERSION", "Trained", "fit_and_evaluate", "load_model", "read_model_document", "write_model"]

FORMAT_VERSION = 1
# Test rows permutation importance is measured on, and how often each column is shuffled:
# 2,000 rows (from 5,000) took the demo's training from 23.0 to 14.8 s with the reasons'
# smaller sample, the same test AUC and the same four most important inputs in the same order.
_IMPORTANCE_ROWS, _IMPORTANCE_REPEATS = 2_000, 3
# Reasons are drawn from this many of the most important inputs.
_REASONS_FROM = 20
_PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "joblib", "xgboost", "cuml")


@dataclass
class Trained:
    """A fitted model and how it did on the test split."""

    fit: PropensityFit
    report: dict
    test: pd.DataFrame = field(repr=False)


def _row_keys(frame: pd.DataFrame) -> list[str]:
    """What identifies a training row: the customer, and the origin when there are several."""
    return [c for c in ("customer_key", ORIGIN) if c in frame.columns]


def _fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the training rows (keys, inputs, labels) in key (and origin) order."""
    hashed = pd.util.hash_pandas_object(frame.sort_values(_row_keys(frame)).reset_index(drop=True), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def _subset(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most about ``limit`` rows, picked by a salted hash of the key (deterministic)."""
    if len(frame) <= limit:
        return frame
    return frame.loc[sample_units(frame["customer_key"], seed) < limit / len(frame)].reset_index(drop=True)


def _latest(frame: pd.DataFrame) -> np.ndarray:
    """Rows of the latest training origin (every row when there is one)."""
    if ORIGIN not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return (frame[ORIGIN] == frame[ORIGIN].max()).to_numpy()


def fit_and_evaluate(frame: pd.DataFrame, *, features, options, seed: int, backend: Backend, sensitive=None,
                     sensitive_columns=()) -> Trained:  # fmt: skip
    """Split by customer, fit, calibrate, and measure on the test split.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``customer_key``, the ``features`` columns and ``label`` (0/1), one row per customer,
        or per customer and training origin when an ``origin`` column is present. A customer
        is in one split at every origin; the test metrics and calibration read the latest
        origin's rows (with ``options.out_of_time_test``, the model learns from the earlier
        origins only and calibrates on the latest of those).
    options : PropensityOptions
    sensitive : pandas.DataFrame, optional
        ``customer_key`` and ``sensitive_columns``, audited on the test split.
    """
    frame = _subset(frame.reset_index(drop=True), options.sample, seed)
    features = list(features)
    leaked = [name for name in features if name in sensitive_columns or name in ("customer_key", LABEL, ORIGIN)]
    if leaked:
        raise InputDataError(f"propensity: {', '.join(leaked)} cannot be model inputs (key, label or sensitive)")
    split = split_customers(frame["customer_key"], seed=seed, validation_share=options.validation_share,
                            test_share=options.test_share)  # fmt: skip
    recent = _latest(frame)
    y = frame[LABEL].to_numpy().astype("int8")
    # Rows the model learns from: every origin's, or for an out-of-time test the earlier ones.
    learning = ~recent if options.out_of_time_test else np.ones(len(frame), bool)
    if not learning.any():
        raise UsageError("propensity: an out-of-time test needs rows from at least 2 origins")
    learned = frame.loc[learning].reset_index(drop=True)
    fit = PropensityFit.fit(learned, y[learning], split[learning], features=features, options=options, seed=seed,
                            backend=backend, recent=_latest(learned), explain=False)  # fmt: skip
    test_rows = frame.loc[(split == "test") & recent].reset_index(drop=True)
    sample = test_rows.iloc[:: max(1, len(test_rows) // _IMPORTANCE_ROWS)]
    importance = permutation_importance(
        fit.raw_scores, sample, sample[LABEL].to_numpy(), features, repeats=_IMPORTANCE_REPEATS, seed=seed
    )
    # Reasons come from the inputs that matter: an input whose shuffling costs the test AUC
    # nothing moves no score, and each curve costs a prediction of every sampled row per value.
    explained = [row["feature"] for row in importance[:_REASONS_FROM]] if importance else None
    fit.explain(learned.loc[split[learning] == "train"], features=explained)
    scored = fit.score(test_rows)
    test = pd.concat([test_rows[["customer_key", LABEL]], scored], axis=1)
    metrics = classification_metrics(test[LABEL].to_numpy(), test["score"].to_numpy())
    report = {
        # Customers of the latest origin per split; train_rows counts every origin's.
        "splits": {name: int(((split == name) & recent).sum()) for name in SPLITS},
        "positives": {name: int(y[(split == name) & recent].sum()) for name in SPLITS},
        "train_rows": int(((split == "train") & learning).sum()),
        "out_of_time_test": bool(options.out_of_time_test),
        "test": metrics,
        "importance": importance,
        "bands": {band: int((test["band"] == band).sum()) for band in ("high", "medium", "low")},
        "fingerprint": _fingerprint(frame[[*_row_keys(frame), *features, LABEL]]),
    }
    if sensitive is not None and len(sensitive_columns):
        report["fairness"] = fairness_audit(test, sensitive, sensitive_columns)
    return Trained(fit, report, test)


def _versions() -> dict:
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def write_model(directory: Path, trained: Trained, *, options, seed: int, backend: Backend, source: dict) -> dict:
    """Write ``model.joblib``, ``model.json`` and ``metrics.json`` into ``directory``."""
    import dataclasses

    import joblib

    fit, written = trained.fit, ModelLayout(directory)
    joblib.dump(fit.estimator, written.estimator)
    tables = leaf_tables(fit.estimator)
    if tables is not None:
        written.leaf_tables.write_bytes(pickle.dumps(tables))
    else:
        written.leaf_tables.unlink(missing_ok=True)
    metrics = {key: value for key, value in trained.report.items() if key != "fingerprint"}
    document = {
        "format": FORMAT_VERSION,
        "model": fit.model,
        # auto's candidates and their validation AUC, when it compared several.
        "selection": fit.selection,
        "options": dataclasses.asdict(options),
        "seed": seed,
        "source": source,
        "inputs": {name: fit.preparation.kinds_[name] for name in fit.preparation.features},
        "preparation": fit.preparation.to_dict(),
        "matrix_columns": fit.preparation.output_names,
        "calibrator": fit.calibrator.to_dict(),
        "bands": fit.bands.to_dict(),
        "reference_quantiles": fit.reference,
        "reasons": fit.reasons.to_dict(),
        "metrics": {k: trained.report["test"][k] for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece")},
        "splits": trained.report["splits"],
        "train_rows": trained.report["train_rows"],
        "out_of_time_test": trained.report["out_of_time_test"],
        "backend": backend.name,
        "versions": _versions(),
        "data_fingerprint": trained.report["fingerprint"],
        "trained_at": datetime.now(timezone.utc).isoformat(),
    }
    written.model.write_text(json.dumps(document, indent=2, default=_plain) + "\n")
    written.metrics.write_text(json.dumps(metrics, indent=2, default=_plain) + "\n")
    trained.test[["customer_key", LABEL, "score"]].to_parquet(written.test_scores, index=False)
    return document


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_model_document(model_dir) -> dict:
    """A saved model's ``model.json`` document, without loading its estimator.

    What a scoring's client needs (the inputs to check, the fingerprint): unpickling the
    estimator imports scikit-learn, 0.7 to 1.5 s on 2 busy cores that a ``segscale update``'s
    client spent before the first scoring task, without ever predicting.

    Raises
    ------
    InputDataError
        ``model_dir`` is not a segscale propensity model, or of a newer format.
    """
    saved = ModelLayout(model_dir)
    path = saved.model
    if not path.exists() or not saved.estimator.exists():
        raise InputDataError(
            f"{saved.root}: not a segscale propensity model (no {path.name} and {saved.estimator.name})"
        )
    document = json.loads(path.read_text())
    if document.get("format") != FORMAT_VERSION:
        raise InputDataError(f"{path}: model format {document.get('format')} is not {FORMAT_VERSION}; retrain it")
    return document


def load_model(model_dir, *, scoring: bool = False) -> tuple[PropensityFit, dict]:
    """A saved model and its ``model.json`` document.

    With ``scoring``, a boosted model's estimator is its saved leaf tables where it has them
    (`engine.propensity._boosted`): the same scores, and no scikit-learn to import.

    Raises
    ------
    InputDataError
        ``model_dir`` is not a segscale propensity model, or of a newer format.
    """
    import joblib

    document = read_model_document(model_dir)
    saved = ModelLayout(model_dir)
    if scoring and saved.leaf_tables.exists():
        estimator = pickle.loads(saved.leaf_tables.read_bytes())
    else:
        estimator = joblib.load(saved.estimator)
    fit = PropensityFit(
        preparation=ModelInputs.from_dict(document["preparation"]),
        estimator=estimator,
        calibrator=Calibrator.from_dict(document["calibrator"]),
        bands=Bands.from_dict(document["bands"]),
        reference=document["reference_quantiles"],
        reasons=ReasonTable.from_dict(document["reasons"]),
        model=document["model"],
        selection=document.get("selection", {}),
    )
    return fit, document
