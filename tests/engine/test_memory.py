"""Tests for engine._memory: the process-tree RSS sampler."""

import subprocess
import sys
import time

import numpy as np
import psutil

from engine._memory import PeakMemory, tree_rss

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
        # The child's 150 MB show as the largest descendant, not as this process.
        assert memory.peak_descendant_rss_bytes >= 140 * MB
        assert memory.peak_own_rss_bytes < memory.peak_rss_bytes - 140 * MB
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
