"""Tests for benchmarks._measure: the process-tree RSS sampler and the clock."""

import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from benchmarks._measure import Clock, PeakMemory, tree_rss

MB = 10**6


def test_peak_covers_a_200_mb_array():
    with PeakMemory(interval=0.01) as memory:
        array = np.ones(200 * MB // 8)  # ones, not zeros: the pages are touched
        time.sleep(0.1)
        current = psutil.Process().memory_info().rss
    assert memory.peak_rss_bytes >= current
    assert memory.peak_rss_bytes - memory.start_rss_bytes >= 190 * MB
    assert memory.samples >= 3
    del array


def test_children_count():
    code = "import numpy as np, sys, time; a = np.ones(150_000_000 // 8); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child_rss = psutil.Process(child.pid).memory_info().rss
        own = psutil.Process().memory_info().rss
        assert tree_rss() >= own + child_rss - 5 * MB
        with PeakMemory() as memory:
            pass
        assert memory.peak_rss_bytes >= own + 140 * MB
    finally:
        child.kill()
        child.wait()


def test_vanished_children_are_tolerated():
    with PeakMemory(interval=0.005) as memory:
        for _ in range(20):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert memory.peak_rss_bytes > 0


def test_gpu_reader_is_sampled():
    readings = iter(range(100, 10**6))
    with PeakMemory(interval=0.01, gpu_used_bytes=lambda: next(readings)) as memory:
        time.sleep(0.05)
    assert memory.peak_gpu_bytes == 100 + memory.samples - 1


def test_clock_times_its_region_and_syncs_around_it():
    synced = []
    clock = Clock(sync=lambda: synced.append(time.perf_counter()))
    time.sleep(0.02)
    with clock:
        time.sleep(0.05)
    assert 0.05 <= clock.seconds < 0.5
    assert len(synced) == 2
    with pytest.raises(RuntimeError, match="one region"):
        with clock:
            pass


def test_clock_does_not_sync_on_error():
    synced = []
    clock = Clock(sync=lambda: synced.append(1))
    with pytest.raises(KeyError):
        with clock:
            raise KeyError("x")
    assert synced == [1] and clock.seconds is not None


def test_clock_limits_peak_memory_to_the_timed_region():
    import numpy as np

    from benchmarks._measure import Clock, PeakMemory

    with PeakMemory(0.01) as memory:
        setup = np.ones(300 * 2**20 // 8)  # 300 MiB of set-up, freed before the clock starts
        del setup
        clock = Clock(memory=memory)
        with clock:
            small = np.ones(2**20)
        cleanup = np.ones(300 * 2**20 // 8)  # and 300 MiB after it stops
        del cleanup, small
    assert memory.peak_rss_bytes - memory.start_rss_bytes < 100 * 2**20
