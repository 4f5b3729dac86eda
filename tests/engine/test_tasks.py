"""What every stage shares: checkpoints, staged output, releasing worker memory."""

import os

import dask
import dask.dataframe as dd
import pandas as pd
import pytest

from engine import _tasks
from engine._tasks import checkpoint, compute_tasks, release_memory, staged_output, trimmed
from engine.backend import dask_client, resolve_backend


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


def _pid_of(number):
    return number, os.getpid()


def test_tasks_per_worker_restarts_the_workers_of_a_cluster_segscale_started(tmp_path):
    seen = []
    tasks = [dask.delayed(_pid_of)(number) for number in range(5)]
    with dask_client(resolve_backend("cpu"), workers=1, local_directory=tmp_path) as client:
        results = compute_tasks(tasks, client, lambda done, total: seen.append((done, total)), "test", tasks_per_worker=2)
    # Every result, in the order of the tasks, though they ran in three waves of processes.
    assert [number for number, _ in results] == list(range(5))
    pids = [pid for _, pid in results]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    assert seen == [(done, 5) for done in range(1, 6)]


def test_tasks_per_worker_leaves_the_workers_of_an_existing_cluster_alone():
    from distributed import Client, LocalCluster

    tasks = [dask.delayed(_pid_of)(number) for number in range(4)]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            results = compute_tasks(tasks, client, None, "test", tasks_per_worker=1)
    assert [number for number, _ in results] == list(range(4))
    assert len({pid for _, pid in results}) == 1


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
