"""What one benchmark run is measured with: a clock for the timed region and a memory sampler.

The clock is started and stopped by the case itself (``with clock: ...``) so that set-up a
case needs but does not own, such as starting a Dask cluster, stays outside the timing. On
the GPU the clock synchronises the device before it starts and before it stops, so queued
kernels are billed to the region that launched them.

Peak memory is the resident set of the whole process tree, sampled by
``engine._memory.PeakMemory`` (which run manifests use too). Out-of-core cases also report
the disk they took beside their inputs (`PeakDisk`): at 10M customers the pipeline first
failed for want of disk, not memory.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine._memory import DEFAULT_INTERVAL_S, PeakMemory, tree_rss

__all__ = ["Clock", "PeakDisk", "PeakMemory", "tree_rss", "DEFAULT_INTERVAL_S"]


class Clock:
    """Time exactly one region of a benchmark run.

    Parameters
    ----------
    sync : callable, optional
        Called with no arguments before the clock starts and before it stops, e.g.
        ``cupy.cuda.Device().synchronize``; None on the CPU.
    memory : PeakMemory, optional
        Restarted when the clock starts and frozen when it stops, so peak memory, like
        time, covers the timed region only.

    Attributes
    ----------
    seconds : float or None
        Wall seconds (``time.perf_counter``) spent in the region; None until it is left.
    """

    def __init__(self, sync: Callable[[], object] | None = None, memory: PeakMemory | None = None):
        self._sync = sync
        self._memory = memory
        self._started: float | None = None
        self.seconds: float | None = None

    def __enter__(self) -> Clock:
        if self._started is not None:
            raise RuntimeError("a Clock times one region per run; it was already started")
        if self._sync is not None:
            self._sync()  # earlier device work is not this region's
        if self._memory is not None:
            self._memory.restart()
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._sync is not None and exc_type is None:
            self._sync()
        self.seconds = time.perf_counter() - self._started
        if self._memory is not None:
            self._memory.freeze()
        return False


class PeakDisk:
    """Sample the bytes used on the file system holding ``path`` until the block ends.

    ``peak_bytes`` is the highest use above the use on entry: the room a run's staging files
    and outputs need beside what was there before it. Anything else writing to the same file
    system counts too, so this is the machine's view, as ``df`` would show it.

    Parameters
    ----------
    path : path
        An existing file or directory on the file system to watch.
    interval : float, default 1.0
        Seconds between samples; one is also taken on entry and on exit.
    """

    def __init__(self, path, interval: float = 1.0):
        self.path, self.interval = Path(path), interval
        self.peak_bytes = 0
        self._start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, shutil.disk_usage(self.path).used - self._start)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakDisk:
        self._start = shutil.disk_usage(self.path).used
        self._thread = threading.Thread(target=self._run, name="peak-disk", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stop.set()
        self._thread.join()
        self._sample()
        return False
