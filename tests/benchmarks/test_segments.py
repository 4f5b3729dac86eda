"""The k-means benchmark: segscale against scikit-learn's KMeans on the same matrix."""

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from benchmarks import _segments, format_table, run_benchmarks
from benchmarks._measure import Clock

CUSTOMERS = 2_000
# Below the tiny world's customer count, so segscale fits on a sample as it does at 1M.
SAMPLE = 500


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-kmeans")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_segments, "SAMPLE", SAMPLE)
        document = run_benchmarks(
            stages=("kmeans",),
            sizes=(CUSTOMERS,),
            workers=1,
            out_dir=out,
            keep_data=True,
            baselines=("kmeans-sklearn",),
        )
    return document, out / "data" / f"_kmeans-matrix-{CUSTOMERS}"


def _result(document, case):
    return next(r for r in document["results"] if r["case"] == case)


def test_both_cases_cluster_every_customer(document):
    document, dataset = document
    customers = json.loads((dataset / "features" / "_features.json").read_text())["customers"]
    assert [r["case"] for r in document["results"]] == ["kmeans-sklearn", "kmeans", "kmeans-distributed"]
    for result in document["results"]:
        assert result["status"] == "ok", result["reason"]
        assert result["rows_by_table"] == {"customers": customers} and result["median_seconds"] > 0
    assert np.load(dataset / "matrix.npy").shape == (customers, len(_prepared_columns(dataset)))


def _prepared_columns(dataset):
    from engine.segments import DEFAULT_FEATURES

    present = pq.read_schema(dataset / "features" / "part-00000.parquet").names
    return [column for column in DEFAULT_FEATURES if column in present]


def test_quality_is_inertia_and_relative_to_the_peer(document):
    document, _ = document
    ours, peer = _result(document, "kmeans")["quality"], _result(document, "kmeans-sklearn")["quality"]
    assert ours["inertia"] > 0 and peer["inertia"] > 0
    assert ours["inertia_vs_sklearn"] == pytest.approx(ours["inertia"] / peer["inertia"], abs=1e-5)
    # Fitted on a quarter of the rows, the centres are near the full fit's, not equal.
    assert ours["inertia_vs_sklearn"] < 1.1 and 0.5 < ours["ari_vs_sklearn"] < 1.0
    assert _result(document, "kmeans")["fastest_peer"] == "kmeans-sklearn"
    assert _result(document, "kmeans")["time_vs_fastest_peer"] > 0
    # Fitted on every row, the distributed k-means matches the full fit's inertia.
    distributed = _result(document, "kmeans-distributed")["quality"]
    assert distributed["inertia_vs_sklearn"] < 1.005 and distributed["ari_vs_sklearn"] > 0.9


def test_table_and_json_show_both_cases_with_their_quality(document):
    document, _ = document
    console = Console(width=220, record=True)
    console.print(format_table(document))
    text = console.export_text()
    assert "kmeans-sklearn" in text and "(sklearn)" in text and "inertia_vs_sklearn" in text
    saved = json.loads(Path(document["paths"]["json"]).read_text())
    assert {r["case"]: r["quality"] for r in saved["results"]} == {r["case"]: r["quality"] for r in document["results"]}


def test_the_fit_sample_is_the_one_build_segments_draws(document):
    from engine.segments._pipeline import _sample_task

    _, dataset = document
    features = dataset / "features"
    rows = json.loads((features / "_features.json").read_text())["rows_per_partition"]
    every = max(1, math.ceil(sum(rows) / SAMPLE))
    pipeline = np.concatenate(
        [_sample_task(str(features), n, r, every)["customer_key"].to_numpy() for n, r in enumerate(rows) if r]
    )
    keys = pq.read_table(features, columns=["customer_key"])["customer_key"].to_numpy()
    assert np.array_equal(keys[_segments._pipeline_sample(rows, SAMPLE)], pipeline)


# --- the two cases on a hand-made matrix ---------------------------------------------------


@pytest.fixture
def blobs(tmp_path):
    """Three separated blobs in 4 dimensions, in two parts; the sample is every row."""
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, (3, 4))
    matrix = np.concatenate([centre + rng.normal(0, 1, (100, 4)) for centre in centres])
    matrix = matrix[rng.permutation(len(matrix))]
    np.save(tmp_path / "matrix.npy", matrix)
    data = {
        "matrix": tmp_path / "matrix.npy",
        "rows_per_part": [180, 120],
        "sample_index": np.arange(300),
        "sklearn": None,
    }
    return data


def test_same_rows_same_settings_give_the_same_clustering(blobs, tmp_path):
    data = blobs
    alone = _segments.run_segscale_kmeans(300, tmp_path, "cpu", 1, Clock(), data)
    assert set(alone["quality"]) == {"inertia", "iterations"}  # no peer ran: nothing to compare with
    peer = _segments.run_sklearn_kmeans(300, tmp_path, "cpu", 1, Clock(), data)
    ours = _segments.run_segscale_kmeans(300, tmp_path, "cpu", 1, Clock(), data)
    assert ours["rows"] == peer["rows"] == {"customers": 300}
    assert ours["quality"]["inertia"] == pytest.approx(peer["quality"]["inertia"], rel=1e-9)
    assert ours["quality"]["inertia_vs_sklearn"] == 1.0 and ours["quality"]["ari_vs_sklearn"] == 1.0


def test_inertia_sums_squared_distances_to_the_assigned_centre():
    matrix = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    centres = np.array([[0.0, 0.0], [10.0, 1.0]])
    assert _segments._inertia(matrix, np.array([0, 0, 1]), centres, [2, 1]) == pytest.approx(25.0 + 1.0)
