"""The random-forest benchmark: segscale's forest and stage against scikit-learn's on the same
customers, split and settings."""

import dataclasses
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from benchmarks import _propensity, format_table, run_benchmarks
from benchmarks._measure import Clock

CUSTOMERS = 2_000
# Fewer trees than the stage's 300, so the three cases train in seconds.
TREES = 20


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-rf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_propensity, "OPTIONS", dataclasses.replace(_propensity.OPTIONS, n_estimators=TREES))
        document = run_benchmarks(
            stages=("propensity",),
            sizes=(CUSTOMERS,),
            workers=1,
            out_dir=out,
            keep_data=True,
            baselines=("rf-sklearn",),
        )
    return document, out / "data" / f"_propensity-frame-{CUSTOMERS}"


def _result(document, case):
    return next(r for r in document["results"] if r["case"] == case)


def _split_counts(dataset: Path) -> dict:
    return pd.read_parquet(dataset / "frame.parquet", columns=["split"])["split"].value_counts().to_dict()


@pytest.mark.slow
def test_every_case_trains_on_the_same_split(document):
    document, dataset = document
    assert sorted(r["case"] for r in document["results"]) == ["propensity-stage", "rf", "rf-sklearn", "rf-stage"]
    for result in document["results"]:
        assert result["status"] == "ok", result["reason"]
        assert result["median_seconds"] > 0
    counts = _split_counts(dataset)
    assert counts["train"] > counts["test"] > 200
    for case in ("rf-sklearn", "rf"):
        assert _result(document, case)["rows_by_table"] == {"train": counts["train"], "test": counts["test"]}
    # The stage splits the frame itself, with the same seed and shares: the same customers.
    assert _result(document, "rf-stage")["rows_by_table"] == counts
    assert _result(document, "propensity-stage")["rows_by_table"] == counts


@pytest.mark.slow
def test_the_default_stage_is_boosting_beside_the_forest_stage(document):
    document, _ = document
    forest, default = (_result(document, case) for case in ("rf-stage", "propensity-stage"))
    assert (forest["quality"]["model"], default["quality"]["model"]) == ("random_forest", "gradient_boosting")
    assert abs(default["quality"]["auc"] - forest["quality"]["auc"]) < 0.05
    assert set(default["speedup_vs"]) == {"rf-sklearn"}


@pytest.mark.slow
def test_the_frame_is_features_before_t_and_labels_of_the_90_days_after(document):
    document, dataset = document
    # The world ends 2025-12-31, so the latest complete 90-day label window starts at T.
    origin = date(2026, 1, 1) - timedelta(days=90)
    assert json.loads((dataset / "features" / "_features.json").read_text())["as_of"] == origin.isoformat()
    labels = pd.read_parquet(dataset / "frame.parquet", columns=["label"])["label"]
    assert 0.05 < labels.mean() < 0.95
    assert "purchase in 90 days" in _result(document, "rf-sklearn")["description"]
    train = np.load(dataset / "train_matrix.npy")
    assert train.dtype == np.float32 and train.shape == (_split_counts(dataset)["train"], train.shape[1])
    assert train.shape[1] > 40 and not np.isnan(train).any()


@pytest.mark.slow
def test_auc_beside_time_and_relative_to_the_peer(document):
    document, _ = document
    peer, forest, stage = (_result(document, case)["quality"] for case in ("rf-sklearn", "rf", "rf-stage"))
    for quality in (peer, forest, stage):
        assert 0.6 < quality["auc"] <= 1.0
    # The same matrix, rows, settings and seed: the same forest, to the last score.
    assert forest["auc_diff_vs_sklearn"] == 0.0 and forest["score_max_diff_vs_sklearn"] == 0.0
    assert peer["n_jobs"] == forest["n_jobs"] == 1
    # Calibration (isotonic: ties) moves the stage's AUC a little, never by much.
    assert stage["auc_diff_vs_sklearn"] == pytest.approx(stage["auc"] - peer["auc"], abs=2e-5)
    assert abs(stage["auc_diff_vs_sklearn"]) < 0.05 and 0 <= stage["ece"] < 0.2
    for case in ("rf", "rf-stage"):
        result = _result(document, case)
        assert result["fastest_peer"] == "rf-sklearn" and result["time_vs_fastest_peer"] > 0


@pytest.mark.slow
def test_table_and_json_show_time_and_auc(document):
    document, _ = document
    console = Console(width=220, record=True)
    console.print(format_table(document))
    text = console.export_text()
    assert "(rf-sklearn)" in text and "rf at 2,000: auc 0." in text and "auc_diff_vs_sklearn" in text
    saved = json.loads(Path(document["paths"]["json"]).read_text())
    assert {r["case"]: r["quality"] for r in saved["results"]} == {r["case"]: r["quality"] for r in document["results"]}


# --- the cases on a hand-made frame --------------------------------------------------------


def test_the_peer_has_the_settings_of_segscales_forest():
    from engine.backend import resolve_backend
    from engine.propensity import make_estimator

    options = _propensity.OPTIONS
    forest = make_estimator(
        "random_forest", resolve_backend("cpu"), n_estimators=options.n_estimators, max_depth=options.max_depth,
        max_features=options.max_features, min_samples_leaf=options.min_samples_leaf, seed=0,
    )  # fmt: skip
    assert forest.get_params()["class_weight"] == _propensity._CLASS_WEIGHT
    assert f"class_weight={_propensity._CLASS_WEIGHT}" in _propensity.SETTINGS


@pytest.fixture
def hand_made(tmp_path):
    """600 customers, a label driven by two inputs, a gap in one and a categorical."""
    from engine.propensity import ModelInputs

    rng = np.random.default_rng(5)
    n = 600
    frame = pd.DataFrame(
        {
            "customer_key": [f"c{i:04d}" for i in range(n)],
            "recency_days": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(60, n)),
            "frequency": rng.poisson(4, n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    odds = 1.5 - frame["recency_days"].fillna(300) / 40 + frame["frequency"] / 3
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-odds))).astype("int8")
    frame["split"] = np.where(np.arange(n) % 5 == 0, "test", np.where(np.arange(n) % 5 == 1, "validation", "train"))
    frame.to_parquet(tmp_path / "frame.parquet", index=False)
    features = ["recency_days", "frequency", "region"]
    train, test = frame.loc[frame["split"] == "train"], frame.loc[frame["split"] == "test"]
    preparation = ModelInputs(tuple(features)).fit(train)
    data = {"frame": tmp_path / "frame.parquet", "features": features, "sklearn": None}
    for name, rows in (("train", train), ("test", test)):
        np.save(tmp_path / f"{name}_matrix.npy", preparation.transform(rows))
        np.save(tmp_path / f"{name}_labels.npy", rows["label"].to_numpy())
        data[f"{name}_matrix"], data[f"{name}_labels"] = (
            tmp_path / f"{name}_matrix.npy",
            tmp_path / f"{name}_labels.npy",
        )
    return data


def test_without_the_peer_there_is_nothing_to_compare_with(hand_made, tmp_path, monkeypatch):
    monkeypatch.setattr(_propensity, "OPTIONS", dataclasses.replace(_propensity.OPTIONS, n_estimators=10))
    alone = _propensity.run_segscale_forest(600, tmp_path, "cpu", 1, Clock(), hand_made)
    assert set(alone["quality"]) == {"auc", "n_jobs"} and alone["rows"] == {"train": 360, "test": 120}
    peer = _propensity.run_sklearn_forest(600, tmp_path, "cpu", 1, Clock(), hand_made)
    ours = _propensity.run_segscale_forest(600, tmp_path, "cpu", 1, Clock(), hand_made)
    assert ours["quality"]["auc"] == peer["quality"]["auc"] > 0.7
    assert ours["quality"]["score_max_diff_vs_sklearn"] == 0.0
