"""A stage whose tasks cannot run fails with the reason instead of waiting for ever."""

import signal

import dask
import pytest
from distributed import Client, LocalCluster

from engine._liveness import StallWatch, StalledError, stall_cause

GIB = 2**30


def _state(*statuses, pending=5, processing=0, transitions=7):
    workers = [{"status": status, "memory_limit": 4 * GIB, "memory": int(3.5 * GIB)} for status in statuses]
    return {"transitions": transitions, "pending": pending, "processing": processing, "workers": workers}


def test_the_cause_names_what_keeps_tasks_from_running():
    assert "no worker is connected" in stall_cause(_state())
    paused = stall_cause(_state("paused", "paused"))
    assert "5 tasks wait, none runs: all 2 workers are paused for memory" in paused
    assert "(up to 3.5 GiB used of a 4.0 GiB limit)" in paused
    assert "--memory-limit" in paused
    assert "1 of 2 workers are paused for memory" in stall_cause(_state("paused", "running"))
    assert "5 tasks wait and none runs (workers: 1 running, 1 closing)" == stall_cause(_state("running", "closing"))


def test_running_or_idle_is_not_a_stall():
    assert stall_cause(_state("running", processing=2)) is None  # a long task
    assert stall_cause(_state("running", pending=0)) is None  # the client works, the cluster idles
    assert stall_cause(_state(pending=0)) is None


def test_a_cluster_without_workers_fails_the_wait_with_the_cause():
    # As in a job a shell started in the background: SIGINT ignored, the watch still wakes the wait.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _wait_without_workers()
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_without_workers():
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        future = client.compute(dask.delayed(sum)([1, 2]))
        with pytest.raises(StalledError, match="no progress for 1 s: 1 tasks wait and no worker is connected"):
            with StallWatch(client, 1.0, check_seconds=0.2):
                future.result()
        client.cancel(future)  # nothing will run it: let the cluster close at once


def test_a_block_that_finishes_is_left_alone():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        with StallWatch(client, 0.5, check_seconds=0.1) as watch:
            assert client.compute(dask.delayed(sum)([1, 2])).result() == 3
        assert watch.stalled is None
