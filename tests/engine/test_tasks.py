"""What every stage shares: checkpoints, staged output, releasing worker memory."""

import dask.dataframe as dd
import pandas as pd
import pytest

from engine import _tasks
from engine._tasks import checkpoint, coarsened, release_memory, staged_output, trimmed


@pytest.fixture
def frame():
    data = pd.DataFrame({"customer_id": [f"c{i}" for i in range(40)], "node": range(40)})
    return dd.from_pandas(data, npartitions=4)


def test_a_checkpoint_on_disk_reads_back_the_same_rows_lazily(frame, tmp_path):
    stored = checkpoint(frame[frame["node"] % 2 == 0], tmp_path, "even")
    assert sorted((tmp_path / "even").glob("*.parquet"))
    result = stored.compute().reset_index(drop=True)
    assert result["node"].tolist() == list(range(0, 40, 2))
    assert result["customer_id"].astype(str).tolist() == [f"c{i}" for i in range(0, 40, 2)]
    assert stored.npartitions == 4


def test_without_a_directory_a_checkpoint_is_persisted(frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stored = checkpoint(frame, None, "unused")
    assert stored["node"].sum().compute() == sum(range(40))
    assert not list(tmp_path.iterdir())


def test_release_memory_runs_on_every_worker_and_without_a_client():
    from distributed import Client, LocalCluster

    release_memory(None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            release_memory(client)
            assert client.submit(sum, [1, 2]).result() == 3
            # Wrapped task functions travel to workers like plain ones.
            assert client.submit(trimmed(sum), [1, 2]).result() == 3


def test_trimmed_trims_after_the_task_returns_or_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(_tasks, "trim_heap", lambda: calls.append("trim"))

    def task(value):
        calls.append("task")
        if value < 0:
            raise ValueError("negative")
        return value * 2

    wrapped = trimmed(task)
    assert wrapped.__name__ == "task"  # Dask names the task's keys after it
    assert wrapped(3) == 6
    with pytest.raises(ValueError, match="negative"):
        wrapped(-1)
    assert calls == ["task", "trim", "task", "trim"]


def test_staged_output_replaces_the_target_only_on_success(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with staged_output(out) as staging:
            (staging / "a.txt").write_text("second")
            raise RuntimeError("stage failed")
    assert (out / "a.txt").read_text() == "first"


def test_coarsened_concatenates_adjacent_partitions_and_never_splits(frame):
    fewer = coarsened(frame, 2)
    assert fewer.npartitions == 2
    pd.testing.assert_frame_equal(fewer.compute(), frame.compute())
    assert coarsened(frame, frame.npartitions + 5).npartitions == frame.npartitions
