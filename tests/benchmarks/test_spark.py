"""The Spark peers: the same features, clustering and forest as the other peers on the same data,
and a clean skip, with an install hint, where PySpark is not installed."""

import contextlib
import dataclasses
import importlib.util
import os
import shutil

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from benchmarks import _features, _propensity, _segments, _spark, format_table, run_benchmarks
from benchmarks import cases as _cases
from benchmarks._measure import Clock

SPARK_CASES = ("features-spark", "kmeans-spark", "rf-spark")


def _spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark not installed"
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        return "no Java runtime for Spark"
    return None


needs_spark = pytest.mark.skipif(_spark_missing() is not None, reason=str(_spark_missing()))


def _no_jvm_left():
    """Each run ends the JVM it started, so it is not charged to the cases after it."""
    return not [p for p in psutil.Process().children(recursive=True) if p.name() == "java"]


# --- registration and the skip without PySpark ---------------------------------------------


def test_each_spark_case_is_a_cpu_peer_of_segscale_needing_pyspark():
    for name, ours in (("features-spark", "features"), ("kmeans-spark", "kmeans"), ("rf-spark", "rf")):
        case = _cases.CASES[name]
        assert case.requires == ("pyspark",) and case.backends == ("cpu",)
        assert case.stage == _cases.CASES[ours].stage and case.dataset == _cases.CASES[ours].dataset
        assert name in _cases.CASES[ours].baselines
    assert "k-means||" in _cases.CASES["kmeans-spark"].description


def test_without_pyspark_the_runner_skips_them_with_an_install_hint(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else find_spec(name, *a)
    )
    monkeypatch.setattr(_cases, "CASES", {name: _cases.CASES[name] for name in SPARK_CASES})
    document = run_benchmarks(stages=("features", "kmeans", "propensity"), sizes=(1_000,), workers=1, out_dir=tmp_path)
    assert [r["case"] for r in document["results"]] == list(SPARK_CASES)
    for result in document["results"]:
        assert result["status"] == "skipped" and result["median_seconds"] is None
        assert result["reason"] == "pyspark not installed (pip install -e '.[bench]')"
    console = Console(width=220, record=True)
    console.print(format_table(document))
    assert console.export_text().count("pyspark not installed") == len(SPARK_CASES)
    assert not (tmp_path / "data").exists()  # no dataset was built for cases that cannot run


# --- features ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from engine.synth import WorldSpec, generate_world

    root = tmp_path_factory.mktemp("spark-world")
    generate_world(root / "world", WorldSpec(customers=1_500, seed=0), overwrite=True)
    return {"world": root / "world"}


@needs_spark
def test_spark_features_equal_the_pandas_peers_column_by_column(world, tmp_path):
    (tmp_path / "pandas").mkdir()
    (tmp_path / "spark").mkdir()
    reference = _features.run_pandas(1_500, tmp_path / "pandas", "cpu", 1, Clock(), world)
    clock = Clock()
    ours = _spark.run_spark_features(1_500, tmp_path / "spark", "cpu", 2, clock, world)
    assert clock.seconds > 0 and ours["setup_seconds"] > 0 and _no_jvm_left()
    assert ours["rows"] == reference["rows"] and ours["quality"] == reference["quality"]
    expected = pq.read_table(reference["data_path"]).to_pandas().sort_values("customer_id", ignore_index=True)
    got = pq.read_table(ours["data_path"]).to_pandas().sort_values("customer_id", ignore_index=True)
    assert list(got.columns) == list(expected.columns)
    assert (got["customer_id"] == expected["customer_id"]).all()
    for column in expected.columns.drop("customer_id"):
        np.testing.assert_allclose(
            got[column].to_numpy(dtype="float64"), expected[column].to_numpy(dtype="float64"),
            rtol=1e-9, atol=1e-9, err_msg=column,
        )  # fmt: skip


@pytest.fixture(scope="module")
def one_session(tmp_path_factory):
    """One session for the model tests: starting a JVM per run, as the cases do, would take
    most of their time (the features test above covers start and end)."""
    with _spark.local_spark(2, tmp_path_factory.mktemp("spark")) as session:
        yield session


@pytest.fixture
def shared_session(one_session, monkeypatch):
    monkeypatch.setattr(
        _spark, "local_spark", lambda workers, scratch, memory=None: contextlib.nullcontext(one_session)
    )


# --- k-means -------------------------------------------------------------------------------


@needs_spark
def test_spark_kmeans_finds_the_blobs_scikit_learn_finds(tmp_path, shared_session):
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, (_segments.K, 4))
    matrix = np.concatenate([centre + rng.normal(0, 1, (100, 4)) for centre in centres])
    np.save(tmp_path / "matrix.npy", matrix[rng.permutation(len(matrix))])
    data = {"matrix": tmp_path / "matrix.npy", "rows_per_part": [360, 240], "sklearn": None}
    peer = _segments.run_sklearn_kmeans(600, tmp_path, "cpu", 1, Clock(), data)
    ours = _spark.run_spark_kmeans(600, tmp_path, "cpu", 2, Clock(), data)
    assert ours["rows"] == peer["rows"] == {"customers": 600}
    quality = ours["quality"]
    assert quality["inertia"] == pytest.approx(peer["quality"]["inertia"], rel=1e-6)
    assert quality["inertia_vs_sklearn"] == pytest.approx(1.0, abs=1e-5) and quality["ari_vs_sklearn"] == 1.0
    assert 1 <= quality["iterations"] <= _segments._MAX_ITER


# --- random forest -------------------------------------------------------------------------


@needs_spark
def test_spark_forest_scores_the_test_split_about_as_well_as_scikit_learn(tmp_path, monkeypatch, shared_session):
    monkeypatch.setattr(_propensity, "OPTIONS", dataclasses.replace(_propensity.OPTIONS, n_estimators=20))
    rng = np.random.default_rng(0)
    data = {"sklearn": None}
    for split, rows in (("train", 3_000), ("test", 1_000)):
        matrix = rng.normal(size=(rows, 12))
        labels = rng.random(rows) < 1 / (1 + np.exp(-(2 * matrix[:, 0] + matrix[:, 1] - 1)))
        for name, array in ((f"{split}_matrix", matrix), (f"{split}_labels", labels.astype("int8"))):
            np.save(tmp_path / f"{name}.npy", array)
            data[name] = tmp_path / f"{name}.npy"
    peer = _propensity.run_sklearn_forest(4_000, tmp_path, "cpu", 1, Clock(), data)
    ours = _spark.run_spark_forest(4_000, tmp_path, "cpu", 2, Clock(), data)
    assert ours["rows"] == peer["rows"] == {"train": 3_000, "test": 1_000}
    quality = ours["quality"]
    assert quality["features_per_split"] == int(_propensity.OPTIONS.max_features * 12)
    assert quality["auc"] > 0.75
    assert quality["auc_diff_vs_sklearn"] == pytest.approx(quality["auc"] - peer["quality"]["auc"], abs=1e-5)
    assert abs(quality["auc_diff_vs_sklearn"]) < 0.03
