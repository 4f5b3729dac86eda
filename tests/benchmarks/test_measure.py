"""Tests for benchmarks._measure: the clock, and the peak memory it limits to its region."""

import os
import time

import pytest

from benchmarks._measure import Clock, PeakDisk, PeakMemory


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

    with PeakMemory(0.01) as memory:
        setup = np.ones(300 * 2**20 // 8)  # 300 MiB of set-up, freed before the clock starts
        del setup
        clock = Clock(memory=memory)
        with clock:
            small = np.ones(2**20)
        cleanup = np.ones(300 * 2**20 // 8)  # and 300 MiB after it stops
        del cleanup, small
    assert memory.peak_rss_bytes - memory.start_rss_bytes < 100 * 2**20


def test_peak_disk_sees_a_file_that_came_and_went(tmp_path):
    size = 32 * 2**20
    with PeakDisk(tmp_path, interval=0.01) as disk:
        path = tmp_path / "staging.bin"
        with path.open("wb") as file:
            file.write(b"\x01" * size)
            file.flush()
            os.fsync(file.fileno())
        time.sleep(0.2)
        path.unlink()
    assert disk.peak_bytes >= 0.9 * size
