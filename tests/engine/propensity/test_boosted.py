"""A boosted model's leaf tables give scikit-learn's scores to the bit, or step aside."""

import pickle

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier

from engine.propensity._boosted import leaf_tables
from engine.propensity._models import _boosted_scores, _positive_scores


def _world(rows: int, seed: int = 0):
    """Rows with NaNs in training (so splits send missing values either way) and labels that
    depend on several columns."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, 6))
    matrix[:, 4] = rng.integers(0, 5, rows)  # few distinct values: thresholds land on them
    matrix[rng.random(rows) < 0.15, 1] = np.nan
    matrix[rng.random(rows) < 0.05, 2] = np.nan
    signal = matrix[:, 0] + np.nan_to_num(matrix[:, 1], nan=2.0) - 0.5 * matrix[:, 4]
    labels = (signal + rng.normal(size=rows) > 0).astype(int)
    return matrix, labels


def _hard_rows(booster, rows: int) -> np.ndarray:
    """Rows whose values sit exactly on the model's thresholds, just beside them, at the
    infinities and missing: where a comparison could go either way."""
    splits = np.concatenate([predictor[0].nodes for predictor in booster._predictors])
    splits = splits[splits["is_leaf"] == 0]
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(rows, booster.n_features_in_))
    for column in range(matrix.shape[1]):
        cuts = splits["num_threshold"][splits["feature_idx"] == column]
        if len(cuts):
            picked = rng.choice(cuts, rows)
            beside = np.nextafter(picked, rng.choice([-np.inf, np.inf], rows))
            matrix[:, column] = np.where(rng.random(rows) < 0.5, picked, beside)
    special = rng.random(matrix.shape)
    matrix[special < 0.05] = np.nan
    matrix[(special > 0.05) & (special < 0.07)] = np.inf
    matrix[(special > 0.07) & (special < 0.09)] = -np.inf
    return matrix


@pytest.mark.parametrize("leaves", [31, 50])
def test_leaf_tables_give_scikit_learns_raw_scores_to_the_bit(leaves):
    matrix, labels = _world(3_000)
    booster = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=leaves, min_samples_leaf=5,
                                             random_state=0).fit(matrix, labels)  # fmt: skip
    tables = leaf_tables(booster)
    assert tables is not None and tables.word.itemsize == (4 if leaves <= 32 else 8)
    assert max(predictor[0].get_n_leaf_nodes() for predictor in booster._predictors) > (16 if leaves == 31 else 32)
    for rows in (matrix, _hard_rows(booster, 5_000), matrix.astype("float32")):
        expected = booster._raw_predict(rows)[:, 0]
        np.testing.assert_array_equal(tables.raw_scores(rows), expected, strict=True)
        np.testing.assert_array_equal(_boosted_scores(booster, rows), booster.predict_proba(rows)[:, 1], strict=True)


def test_blocks_of_rows_score_as_one():
    matrix, labels = _world(2_000)
    booster = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(matrix, labels)
    rows = np.tile(matrix, (40, 1))  # 80k rows: more than one block of the tables
    np.testing.assert_array_equal(leaf_tables(booster).raw_scores(rows), booster._raw_predict(rows)[:, 0])


def test_models_the_tables_cannot_hold_are_scored_by_scikit_learn():
    matrix, labels = _world(3_000)
    wide = HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=100, min_samples_leaf=2, random_state=0)
    wide.fit(matrix, labels)
    assert max(predictor[0].get_n_leaf_nodes() for predictor in wide._predictors) > 64
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[4], random_state=0)
    categorical.fit(matrix, labels)
    for booster in (wide, categorical):
        assert leaf_tables(booster) is None
        np.testing.assert_array_equal(_boosted_scores(booster, matrix), booster.predict_proba(matrix)[:, 1])


def test_pickled_tables_score_as_the_estimator_does():
    matrix, labels = _world(2_000)
    booster = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(matrix, labels)
    tables = pickle.loads(pickle.dumps(leaf_tables(booster)))
    np.testing.assert_array_equal(_positive_scores(tables, matrix), booster.predict_proba(matrix)[:, 1], strict=True)


def test_other_models_have_no_tables():
    matrix, labels = _world(500)
    for model in (RandomForestClassifier(n_estimators=3, random_state=0), HistGradientBoostingRegressor(max_iter=3)):
        assert leaf_tables(model.fit(np.nan_to_num(matrix), labels)) is None
