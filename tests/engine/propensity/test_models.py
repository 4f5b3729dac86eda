"""ModelInputs, splits, calibration, bands, reasons and the fit, on a small customer frame."""

import numpy as np
import pandas as pd
import pytest

from engine.backend import resolve_backend
from engine.config import PropensityOptions
from engine.exceptions import InputDataError, UsageError
from engine.propensity import (
    Bands,
    Calibrator,
    ModelInputs,
    PropensityFit,
    make_estimator,
    percentile_rank,
    split_customers,
)

OPTIONS = PropensityOptions(n_estimators=50, min_class_count=50)


def test_preparation_fills_flags_and_encodes(customers):
    preparation = ModelInputs(("x", "gappy", "region")).fit(customers)
    assert preparation.output_names == ["x", "gappy", "gappy__missing", "region=east", "region=north", "region=south"]
    matrix = preparation.transform(customers)
    assert matrix.shape == (len(customers), 6) and not np.isnan(matrix).any()
    gaps = customers["gappy"].isna().to_numpy()
    assert (matrix[gaps, 2] == 1).all() and (matrix[gaps, 1] == preparation.fill_["gappy"]).all()
    unseen = customers.head(2).assign(region=pd.Series(["west", "north"], dtype="string"))
    assert preparation.transform(unseen)[:, 3:].tolist() == [[0, 0, 0], [0, 1, 0]]
    again = ModelInputs.from_dict(preparation.to_dict())
    np.testing.assert_array_equal(again.transform(customers), matrix)


def test_preparation_names_missing_and_mistyped_columns(customers):
    preparation = ModelInputs(("x", "region")).fit(customers)
    with pytest.raises(InputDataError, match="missing feature columns the model needs: region"):
        preparation.transform(customers.drop(columns="region"), where="f")
    with pytest.raises(InputDataError, match=r"wrong type: x \(object, trained on numeric\)"):
        preparation.transform(customers.assign(x=customers["x"].astype(str).astype(object)))


def test_a_flag_with_gaps_is_numeric_in_every_part():
    """A profile flag is null for customers without a profile row: one part has such
    customers, another none, and an empty part has none at all; all three must read alike."""
    import pyarrow as pa

    from engine.propensity import frame_from_table, permutation_importance

    gappy = frame_from_table(pa.table({"loyal": pa.array([True, None, False, True] * 50)}))
    whole = frame_from_table(pa.table({"loyal": pa.array([False, True])}))
    empty = frame_from_table(pa.table({"loyal": pa.array([], pa.bool_())}))
    preparation = ModelInputs(("loyal",)).fit(gappy)
    assert preparation.kinds_ == {"loyal": "numeric"} and preparation.flagged_ == ["loyal"]
    assert preparation.transform(whole).tolist() == [[0, 0], [1, 0]]
    assert preparation.transform(empty).shape == (0, 2)
    labels = gappy["loyal"].fillna(False).to_numpy(dtype=int)
    importance = permutation_importance(lambda frame: preparation.transform(frame)[:, 0], gappy, labels, ["loyal"])
    assert importance[0]["auc_drop"] > 0.2


def test_splits_are_deterministic_per_customer_and_seed(customers):
    keys = customers["customer_key"]
    split = split_customers(keys, seed=1, validation_share=0.2, test_share=0.2)
    shuffled = split_customers(keys[::-1], seed=1, validation_share=0.2, test_share=0.2)
    np.testing.assert_array_equal(split, shuffled[::-1])
    shares = pd.Series(split).value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["validation"] - 0.2) < 0.03
    assert (split != split_customers(keys, seed=2, validation_share=0.2, test_share=0.2)).mean() > 0.2
    with pytest.raises(UsageError, match="sum below 1"):
        split_customers(keys, seed=1, validation_share=0.5, test_share=0.5)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_recovers_probabilities_from_a_distorted_score(method):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.02, 0.98, 20_000)
    y = (rng.random(p.size) < p).astype(int)
    raw = p**3  # monotone, badly calibrated
    calibrator = Calibrator(method).fit(raw, y)
    calibrated = Calibrator.from_dict(calibrator.to_dict()).transform(raw)
    assert np.abs(calibrated - p).mean() < (0.03 if method == "isotonic" else 0.08)
    assert np.abs(raw - p).mean() > 0.15


def test_percentiles_and_bands_by_quantile_and_probability():
    reference = np.linspace(0, 1, 1001).tolist()
    assert percentile_rank(np.array([0.0, 0.5, 1.0]), reference).tolist() == pytest.approx([0.05, 50.0, 99.95], abs=0.1)
    bands = Bands("quantile", (0.6, 0.9)).fit(reference)
    assert bands.thresholds_ == pytest.approx((0.6, 0.9))
    assert bands.assign(np.array([0.1, 0.6, 0.95])).tolist() == ["low", "medium", "high"]
    fixed = Bands("probability", (0.2, 0.5)).fit(reference)
    assert fixed.assign(np.array([0.1, 0.3, 0.5])).tolist() == ["low", "medium", "high"]
    with pytest.raises(UsageError, match="two cuts"):
        Bands("quantile", (0.9, 0.6)).fit(reference)


@pytest.mark.parametrize("model", ["random_forest", "logistic", "gradient_boosting"])
def test_each_model_learns_and_scores_with_reasons(customers, model):
    options = PropensityOptions(model=model, n_estimators=50, min_class_count=50)
    split = split_customers(customers["customer_key"], seed=0, validation_share=0.2, test_share=0.2)
    fit = PropensityFit.fit(customers, customers["label"].to_numpy(), split, features=["x", "noise", "gappy", "region"],
                            options=options, seed=0, backend=resolve_backend("cpu"))  # fmt: skip
    test = customers.loc[split == "test"].reset_index(drop=True)
    scored = fit.score(test)
    from sklearn.metrics import roc_auc_score

    # Within a few points of the AUC of the true probabilities on the same 600 customers.
    assert roc_auc_score(test["label"], scored["score"]) > roc_auc_score(test["label"], test["p_true"]) - 0.04
    assert list(scored.columns) == ["score", "percentile", "band", "reason_1", "reason_2", "reason_3"]
    assert scored["percentile"].between(0, 100).all() and set(scored["band"]) == {"low", "medium", "high"}
    # x drives the label: high x customers have it as their first reason, low x customers never.
    top_x = test["x"] > test["x"].quantile(0.9)
    assert (scored.loc[top_x, "reason_1"] == "x").mean() > 0.8
    assert (scored.loc[test["x"] < test["x"].quantile(0.1), ["reason_1", "reason_2", "reason_3"]] != "x").all().all()


def test_reasons_score_every_feature_in_one_call_with_the_same_curves(customers, monkeypatch):
    from engine.propensity import _reasons

    preparation = ModelInputs(("x", "noise", "gappy", "region")).fit(customers)
    sample = customers.head(100).reset_index(drop=True)
    calls = []

    def predict(frame):
        calls.append(len(frame))
        return frame["x"].fillna(0).to_numpy() + 0.5 * (frame["region"] == "north").to_numpy() + 0.1 * frame["gappy"].isna().to_numpy()

    together = _reasons.ReasonTable().fit(predict, sample, preparation)
    settings = sum(len(c["grid"]) + (c["missing"] is not None) + 1 for c in together.curves_.values())
    assert calls == [settings * len(sample)]
    calls.clear()
    monkeypatch.setattr(_reasons, "_ROWS_PER_CALL", len(sample))
    apart = _reasons.ReasonTable().fit(predict, sample, preparation)
    assert calls == [len(sample)] * settings
    assert apart.curves_ == together.curves_
    region = dict(zip(together.curves_["region"]["grid"], together.curves_["region"]["effect"]))
    assert region["north"] == pytest.approx(region["south"] + 0.5)
    assert together.curves_["gappy"]["missing"] == pytest.approx(together.curves_["gappy"]["baseline"] + 0.1)


def test_auto_keeps_the_better_of_boosting_and_the_baseline_on_validation(customers):
    from sklearn.metrics import roc_auc_score

    split = split_customers(customers["customer_key"], seed=0, validation_share=0.2, test_share=0.2)
    features = ["x", "noise", "gappy", "region"]
    fits = {model: PropensityFit.fit(customers, customers["label"].to_numpy(), split, features=features,
                                     options=PropensityOptions(model=model, n_estimators=50, min_class_count=50),
                                     seed=0, backend=resolve_backend("cpu"))
            for model in ("auto", "gradient_boosting", "logistic")}  # fmt: skip
    validation = customers.loc[split == "validation"]
    measured = {model: roc_auc_score(validation["label"], fits[model].raw_scores(validation))
                for model in ("gradient_boosting", "logistic")}  # fmt: skip
    auto = fits["auto"]
    assert auto.selection == pytest.approx(measured)
    assert auto.model == max(measured, key=measured.get)
    np.testing.assert_array_equal(auto.raw_scores(validation), fits[auto.model].raw_scores(validation))
    assert fits["logistic"].selection == {} and fits["gradient_boosting"].model == "gradient_boosting"


def test_thin_data_is_refused_with_the_counts(customers):
    thin = customers.assign(label=(np.arange(len(customers)) < 40).astype("int8"))
    split = split_customers(thin["customer_key"], seed=0, validation_share=0.2, test_share=0.2)
    with pytest.raises(InputDataError, match=r"too little data to train on: \d+ positives .* at least 100 of each"):
        PropensityFit.fit(thin, thin["label"].to_numpy(), split, features=["x"], options=PropensityOptions(),
                          seed=0, backend=resolve_backend("cpu"))  # fmt: skip


def test_one_set_of_parameter_names_for_every_model():
    backend = resolve_backend("cpu")
    forest = make_estimator("random_forest", backend, n_estimators=7, max_depth=3, max_features=0.5,
                            min_samples_leaf=4, seed=9)  # fmt: skip
    assert (forest.n_estimators, forest.max_depth, forest.max_features, forest.min_samples_leaf) == (7, 3, 0.5, 4)
    assert forest.class_weight == "balanced_subsample" and forest.random_state == 9
    boosting = make_estimator("gradient_boosting", backend, n_estimators=7, max_depth=3, max_features=0.5,
                              min_samples_leaf=4, seed=9)  # fmt: skip
    # No class weights: scikit-learn would bin by weighted quantiles, which cost 20 s at 105k rows.
    assert (boosting.max_iter, boosting.class_weight, boosting.learning_rate) == (7, None, 0.1)
    auto = make_estimator("auto", backend, n_estimators=7, max_depth=3, max_features=0.5, min_samples_leaf=4, seed=9)
    assert type(auto) is type(boosting) and auto.get_params() == boosting.get_params()
    with pytest.raises(UsageError, match="unknown model 'svm': use auto or one of"):
        make_estimator("svm", backend, n_estimators=1, max_depth=1, max_features=1.0, min_samples_leaf=1, seed=0)


def test_forest_scores_are_the_same_bits_on_every_call():
    """scikit-learn adds its trees' votes in thread completion order; ours in tree order."""
    from sklearn.ensemble import RandomForestClassifier

    from engine.propensity._models import _forest_scores

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5_000, 8)).astype("float32")
    labels = (matrix[:, 0] + rng.normal(size=5_000) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=40, max_depth=8, n_jobs=2, random_state=0).fit(matrix, labels)
    first = _forest_scores(forest, matrix)
    np.testing.assert_allclose(first, forest.predict_proba(matrix)[:, 1], rtol=0, atol=1e-12)
    assert all(np.array_equal(_forest_scores(forest, matrix), first) for _ in range(5))
    # A scoring task runs the forest on one thread: the same bits as the training process's.
    assert np.array_equal(_forest_scores(forest.set_params(n_jobs=1), matrix), first)
