"""``segscale compare`` on two hand-written segment outputs."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from .conftest import invoke

NAMES = ["Dormant", "High-value loyal", "Browsers"]
def _write_run(directory, segments):
    """A segment output as build_segments lays it out, customers k000..k299."""
    (directory / "assignments").mkdir(parents=True)
    frame = pd.DataFrame({"customer_key": [f"k{i:03d}" for i in range(len(segments))], "segment": segments})
    frame.astype({"segment": "int32"}).to_parquet(directory / "assignments" / "part-00000.parquet", index=False)
    profile = pd.DataFrame(
        {"segment": np.arange(3, dtype="int32"), "segment_name": NAMES, "z_frequency": [0.0, 2.0, 5.0]}
    )
    profile.to_parquet(directory / "profiles.parquet", index=False)
    return directory


@pytest.fixture
def runs(tmp_path):
    before = np.repeat(np.arange(3), 100)
    after = before.copy()
    after[100:140] = 2
    return _write_run(tmp_path / "a", before), _write_run(tmp_path / "b", after)


def test_compare_prints_matches_moves_and_suggestions(runs, tmp_path):
    a, b = runs
    result = invoke("compare", a, b, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.stderr
    assert "adjusted Rand index" in result.stdout and "300 customers in both runs" in result.stdout
    assert "Matched segments" in result.stdout and "33.3% -> 20.0%" in result.stdout
    assert "suggest split: 'High-value loyal' of A looks split in B" in result.stdout
    assert f"40 customers moved; movers written to {tmp_path / 'cmp' / 'movers.parquet'}" in result.stdout
    assert pq.read_table(tmp_path / "cmp" / "movers.parquet").num_rows == 40


def test_compare_json_is_one_document(runs):
    a, b = runs
    result = invoke("compare", a, b, "--json", "--split-share", 0.45)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["movers"] == 40 and document["movers_path"] is None and document["suggestions"] == []
    assert document["transitions"]["counts"] == [[100, 0, 0], [0, 60, 40], [0, 0, 100]]
    assert [m["name_b"] for m in document["matches"]] == NAMES


def test_compare_identical_runs(runs):
    a, _ = runs
    result = invoke("compare", a, a)
    assert result.exit_code == 0, result.stderr
    assert "adjusted Rand index 1.000" in result.stdout and "no split or merge suggested" in result.stdout
    assert "0 customers moved; movers not written" in result.stdout


@pytest.mark.parametrize("args", [("{missing}", "{a}"), ("{a}", "{a}", "--merge-share", "0")])
def test_compare_bad_input_exits_2_with_one_line(runs, tmp_path, args):
    a, _ = runs
    result = invoke("compare", *(arg.format(a=a, missing=tmp_path / "missing") for arg in args))
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
