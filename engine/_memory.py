"""Peak memory of the process tree: this process and every descendant.

Dask worker processes and the generator's children do the work, and ``ru_maxrss`` of this
process never sees them, so a background thread samples the resident set of the whole tree.
Run manifests report each stage's peak with it; benchmarks each run's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psutil

__all__ = ["DEFAULT_INTERVAL_S", "PeakMemory", "tree_rss"]

DEFAULT_INTERVAL_S = 0.05
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def tree_rss(process: psutil.Process | None = None) -> int:
    """Resident bytes of ``process`` (default: this one) plus all its descendants.

    Processes that end between listing and reading are skipped. Pages shared between
    processes (the interpreter, forked copies) count once per process, so this is an upper
    bound on the physical memory the tree holds.
    """
    return _tree_rss_parts(process or psutil.Process())[0]


def _tree_rss_parts(process: psutil.Process) -> tuple[int, int, int]:
    """(tree total, ``process`` itself, its largest descendant) resident bytes."""
    own = process.memory_info().rss
    try:
        children = process.children(recursive=True)
    except _GONE:
        children = []
    largest = total = 0
    for child in children:
        try:
            rss = child.memory_info().rss
        except _GONE:
            continue
        total += rss
        largest = max(largest, rss)
    return own + total, own, largest


class PeakMemory:
    """Sample the process tree's RSS (and optionally GPU memory) until the block ends.

    Use as a context manager; one sample is taken on entry and one on exit, so even a
    region shorter than ``interval`` is measured.

    Parameters
    ----------
    interval : float, default 0.05
        Seconds between samples.
    gpu_used_bytes : callable, optional
        Returns the device memory in use, in bytes (e.g. total minus free from
        ``cupy.cuda.runtime.memGetInfo``); sampled alongside the RSS when given.

    Attributes
    ----------
    start_rss_bytes, peak_rss_bytes : int
        Tree RSS on entry and the highest sample.
    peak_own_rss_bytes, peak_descendant_rss_bytes : int
        The highest RSS of this process alone (the client, and the scheduler of a local
        cluster), and of the largest single descendant (a worker): where a peak sits.
    peak_gpu_bytes : int or None
        Highest GPU sample; None without ``gpu_used_bytes``.
    samples : int
        How many samples were taken.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL_S, gpu_used_bytes: Callable[[], int] | None = None):
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self._gpu_used_bytes = gpu_used_bytes
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.start_rss_bytes = 0
        self.peak_rss_bytes = 0
        self.peak_own_rss_bytes = 0
        self.peak_descendant_rss_bytes = 0
        self.peak_gpu_bytes: int | None = None
        self.samples = 0
        self._frozen = False
        # A sample read before a restart or freeze must not land after it: the sampler
        # thread can be preempted between reading the RSS and recording it.
        self._lock = threading.Lock()
        self._generation = 0

    def restart(self) -> None:
        """Forget the peaks so far: the measured region starts now (set-up is not counted)."""
        with self._lock:
            self._generation += 1
            self._frozen = False
            self.peak_rss_bytes = self.peak_own_rss_bytes = self.peak_descendant_rss_bytes = 0
            self.peak_gpu_bytes = None
        self.start_rss_bytes = self.sample()

    def freeze(self) -> None:
        """Keep the peaks as they are: the measured region has ended (clean-up is not counted)."""
        self.sample()
        with self._lock:
            self._generation += 1
            self._frozen = True

    def sample(self) -> int:
        """Take one sample now; return the tree RSS in bytes."""
        generation = self._generation
        rss, own, descendant = _tree_rss_parts(self._process)
        used = None if self._gpu_used_bytes is None else int(self._gpu_used_bytes())
        with self._lock:
            if self._frozen or generation != self._generation:
                return rss
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
            self.peak_own_rss_bytes = max(self.peak_own_rss_bytes, own)
            self.peak_descendant_rss_bytes = max(self.peak_descendant_rss_bytes, descendant)
            if used is not None:
                self.peak_gpu_bytes = used if self.peak_gpu_bytes is None else max(self.peak_gpu_bytes, used)
            self.samples += 1
        return rss

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.sample()
        except BaseException as error:  # reported on exit rather than lost with the thread
            self._error = error

    def __enter__(self) -> PeakMemory:
        self.start_rss_bytes = self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="segscale-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stop.set()
        self._thread.join()
        self.sample()
        if self._error is not None and exc_type is None:
            raise RuntimeError("memory sampling failed") from self._error
        return False
