"""What one benchmark run is measured with: a clock for the timed region and a memory sampler.

The clock is started and stopped by the case itself (``with clock: ...``) so that set-up a
case needs but does not own, such as starting a Dask cluster, stays outside the timing. On
the GPU the clock synchronises the device before it starts and before it stops, so queued
kernels are billed to the region that launched them.

Peak memory is the resident set of the whole process tree, sampled by
``engine._memory.PeakMemory`` (which run manifests use too).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine._memory import DEFAULT_INTERVAL_S, PeakMemory, tree_rss

__all__ = ["Clock", "PeakMemory", "tree_rss", "DEFAULT_INTERVAL_S"]


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
