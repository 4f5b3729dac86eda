"""compare_runs on segment outputs written by hand: small frames, no world."""

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.exceptions import InputDataError, UsageError
from engine.segments._compare import adjusted_rand_from_counts, compare_runs

NAMES = ["Dormant", "High-value loyal", "Browsers", "New customers"]


def write_run(directory, keys, segments, names, z=None, parts=2):
    """A segment output as build_segments lays it out: assignment parts and a profile table."""
    (directory / "assignments").mkdir(parents=True)
    frame = pd.DataFrame({"customer_key": keys, "segment": np.asarray(segments, dtype="int32")})
    frame["segment_name"] = frame["segment"].map(dict(enumerate(names)))
    frame["distance"] = 0.5
    for number, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[part].to_parquet(directory / "assignments" / f"part-{number:05d}.parquet", index=False)
    counts = np.bincount(np.asarray(segments), minlength=len(names))
    profile = pd.DataFrame(
        {
            "segment": np.arange(len(names), dtype="int32"),
            "segment_name": names,
            "customers": counts,
            "share_customers": counts / counts.sum(),
        }
    )
    z = np.arange(len(names) * 3, dtype=float).reshape(len(names), 3) if z is None else np.asarray(z, dtype=float)
    for column, feature in enumerate(("recency_days", "frequency", "monetary_total")):
        profile[f"z_{feature}"] = z[:, column]
    profile.to_parquet(directory / "profiles.parquet", index=False)
    return directory


def keys(n, start=0):
    return [f"k{i:06d}" for i in range(start, start + n)]


@pytest.fixture
def labels():
    """400 customers in 4 segments of 100, in shuffled order."""
    return np.random.default_rng(3).permutation(np.repeat(np.arange(4), 100))


def test_identical_runs_match_perfectly(tmp_path, labels):
    a = write_run(tmp_path / "a", keys(400), labels, NAMES)
    b = write_run(tmp_path / "b", keys(400), labels, NAMES, parts=3)
    result = compare_runs(a, b, out=tmp_path / "cmp")
    assert result.adjusted_rand == pytest.approx(1.0)
    assert result.movers == 0 and result.moves == [] and result.suggestions == []
    assert [(m["segment_a"], m["segment_b"], m["jaccard"]) for m in result.matches] == [(i, i, 1.0) for i in range(4)]
    assert result.unmatched_a == [] and result.unmatched_b == [] and result.psi == pytest.approx(0.0)
    assert (result.gone, result.new, result.common) == (0, 0, 400)
    assert np.array_equal(result.transitions.to_numpy(), np.diag([100] * 4))
    assert list(result.transitions.index) == NAMES and list(result.transitions.columns) == NAMES
    assert pq.read_table(tmp_path / "cmp" / "movers.parquet").num_rows == 0


def test_relabelled_runs_still_match(tmp_path, labels):
    permutation = np.array([2, 0, 3, 1])
    names_b = [NAMES[i] for i in np.argsort(permutation)]
    z = np.arange(12.0).reshape(4, 3)
    a = write_run(tmp_path / "a", keys(400), labels, NAMES, z=z)
    b = write_run(tmp_path / "b", keys(400)[::-1], permutation[labels][::-1], names_b, z=z[np.argsort(permutation)])
    result = compare_runs(a, b)
    assert result.adjusted_rand == pytest.approx(1.0) and result.movers == 0 and result.suggestions == []
    assert [(m["segment_a"], m["segment_b"]) for m in result.matches] == [(i, int(permutation[i])) for i in range(4)]
    assert all(m["name_a"] == m["name_b"] and m["jaccard"] == 1.0 for m in result.matches)


def test_a_planted_split_is_suggested(tmp_path, labels):
    after = labels.copy()
    members = np.flatnonzero(labels == 1)
    after[members[:40]] = 3
    after[np.flatnonzero(labels == 3)] = 0
    a = write_run(tmp_path / "a", keys(400), np.where(labels == 3, 0, labels), NAMES[:3])
    b = write_run(tmp_path / "b", keys(400), after, NAMES)
    result = compare_runs(a, b)
    assert [(s["kind"], s["basis"], s["segments_a"], s["segments_b"]) for s in result.suggestions] == [
        ("split", "members", [1], [1, 3])
    ]
    assert "60% to 'High-value loyal', 40% to 'New customers'" in result.suggestions[0]["message"]
    assert "100 customers" in result.suggestions[0]["message"]
    assert result.unmatched_b == [{"segment": 3, "name": "New customers"}]
    assert result.movers == 40 and result.moves[0]["customers"] == 40


def test_a_higher_split_share_hides_the_split(tmp_path, labels):
    after = labels.copy()
    after[np.flatnonzero(labels == 1)[:30]] = 2
    a = write_run(tmp_path / "a", keys(400), labels, NAMES)
    b = write_run(tmp_path / "b", keys(400), after, NAMES)
    assert [s["segments_b"] for s in compare_runs(a, b).suggestions] == [[1, 2]]
    assert compare_runs(a, b, split_share=0.35).suggestions == []


def test_a_planted_merge_is_suggested(tmp_path, labels):
    after = np.where(labels == 2, 0, labels)
    after[np.flatnonzero(labels == 2)[:20]] = 1
    a = write_run(tmp_path / "a", keys(400), labels, NAMES)
    b = write_run(tmp_path / "b", keys(400), after, NAMES)
    result = compare_runs(a, b)
    members = [s for s in result.suggestions if s["basis"] == "members"]
    assert [(s["kind"], s["segments_a"], s["segments_b"]) for s in members] == [("merge", [0, 2], [0])]
    assert "'Dormant' (100% of its 100) and 'Browsers' (80% of its 100)" in members[0]["message"]
    assert result.unmatched_a == [{"segment": 2, "name": "Browsers"}]
    assert result.unmatched_b == [{"segment": 2, "name": "Browsers"}]
    assert result.movers == 100


def test_profiles_that_drew_together_suggest_a_merge(tmp_path, labels):
    z_a = [[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, -3.0, 3.0]]
    z_b = [[0.5, 0.0, 0.0], [-0.5, 0.0, np.nan], [0.0, 3.0, 0.0], [0.0, -3.0, 3.0]]
    a = write_run(tmp_path / "a", keys(400), labels, NAMES, z=z_a)
    b = write_run(tmp_path / "b", keys(400), labels, NAMES, z=z_b)
    result = compare_runs(a, b)
    assert [(s["kind"], s["basis"], s["segments_a"], s["segments_b"]) for s in result.suggestions] == [
        ("merge", "profiles", [0, 1], [0, 1])
    ]
    assert (
        "4.00 apart in A" in result.suggestions[0]["message"] and "1.00 apart in B" in result.suggestions[0]["message"]
    )
    assert "over 2 features" in result.suggestions[0]["message"]
    assert compare_runs(a, b, converge_ratio=0.2).suggestions == []


def test_movers_file_lists_who_moved_with_both_segments(tmp_path, labels):
    after = labels.copy()
    moved = np.array([5, 17, 230])
    after[moved] = (labels[moved] + 1) % 4
    a = write_run(tmp_path / "a", keys(400), labels, NAMES)
    b = write_run(tmp_path / "b", keys(400), after, NAMES)
    result = compare_runs(a, b, out=tmp_path / "cmp")
    movers = pq.read_table(tmp_path / "cmp" / "movers.parquet").to_pandas().sort_values("customer_key")
    assert list(movers.columns) == ["customer_key", "segment_a", "name_a", "segment_b", "name_b"]
    assert list(movers["customer_key"]) == [keys(400)[i] for i in moved]
    assert list(movers["segment_a"]) == labels[moved].tolist() and list(movers["segment_b"]) == after[moved].tolist()
    assert list(movers["name_a"].astype(str)) == [NAMES[s] for s in labels[moved]]
    assert list(movers["name_b"].astype(str)) == [NAMES[s] for s in after[moved]]
    assert result.movers == 3 and result.movers_path == tmp_path / "cmp" / "movers.parquet"
    document = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert document["movers"] == 3 and document["movers_path"] == str(result.movers_path)
    assert document["transitions"]["row_shares"][labels[5]][after[5]] > 0


def test_new_and_gone_customers_and_drift(tmp_path):
    a = write_run(tmp_path / "a", keys(100), [0] * 50 + [1] * 50, NAMES[:2])
    b = write_run(tmp_path / "b", keys(130, start=10), [0] * 40 + [1] * 90, NAMES[:2])
    result = compare_runs(a, b)
    assert (result.common, result.gone, result.new) == (90, 10, 40)
    assert result.transitions.to_numpy().tolist() == [[40, 0], [0, 50]] and result.movers == 0
    drift = {d["segment_a"]: d for d in result.drift}
    assert (drift[0]["share_a"], drift[0]["share_b"]) == (0.5, round(40 / 130, 4))
    assert drift[1]["difference"] == round(90 / 130 - 0.5, 4)
    expected = sum((b - a) * math.log(b / a) for a, b in [(0.5, 40 / 130), (0.5, 90 / 130)])
    assert result.psi == pytest.approx(expected)


def test_adjusted_rand_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 5, 2000), rng.integers(0, 3, 2000)
    second[:1500] = first[:1500] % 3
    counts = np.zeros((5, 3), dtype=np.int64)
    np.add.at(counts, (first, second), 1)
    assert adjusted_rand_from_counts(counts) == pytest.approx(adjusted_rand_score(first, second))


def test_a_run_directory_holding_segments_is_accepted(tmp_path, labels):
    write_run(tmp_path / "run" / "segments", keys(400), labels, NAMES)
    b = write_run(tmp_path / "b", keys(400), labels, NAMES)
    assert compare_runs(tmp_path / "run", b).run_a == tmp_path / "run" / "segments"


def test_bad_inputs(tmp_path, labels):
    a = write_run(tmp_path / "a", keys(400), labels, NAMES)
    with pytest.raises(InputDataError, match=r"empty: not a segscale segment output.*run segscale segments"):
        compare_runs(a, (tmp_path / "empty"))
    elsewhere = write_run(tmp_path / "elsewhere", keys(10, start=1000), [0] * 10, NAMES[:1])
    with pytest.raises(InputDataError, match="share no customer_key"):
        compare_runs(a, elsewhere)
    duplicated = write_run(tmp_path / "duplicated", keys(2) * 2, [0, 1, 0, 1], NAMES[:2])
    with pytest.raises(InputDataError, match="not unique in the assignments"):
        compare_runs(a, duplicated)
    with pytest.raises(UsageError, match="split share"):
        compare_runs(a, a, split_share=0.6)
    with pytest.raises(UsageError, match="would replace the input"):
        compare_runs(a, a, out=tmp_path)
    assert (a / "profiles.parquet").exists()


def test_unknown_segments_in_assignments_are_an_input_error(tmp_path, labels):
    a = write_run(tmp_path / "a", keys(400), labels, NAMES)
    b = write_run(tmp_path / "b", keys(400), labels, NAMES)
    pq.write_table(
        pa.table({"segment": pa.array([0, 1], pa.int32()), "segment_name": NAMES[:2]}), b / "profiles.parquet"
    )
    with pytest.raises(InputDataError, match=r"segments \[2, 3\] that profiles.parquet does not list"):
        compare_runs(a, b)
