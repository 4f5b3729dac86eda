"""A stage whose tasks cannot run fails with the reason instead of waiting for ever.

A cluster with no workers, or whose workers are all paused (their memory above Dask's pause
fraction of their limit), accepts tasks and never runs them: the client waits without a
word. :class:`StallWatch` asks the scheduler, every few seconds, whether anything happened
(its transition counter moved) and whether tasks are waiting while none is processing. When
that has lasted ``stall_seconds`` it signals the waiting main thread (SIGUSR1, handled while
the watch runs), which raises :class:`StalledError` naming the cause, and the stage fails. A
long task, or the client fitting a model while the scheduler idles with nothing queued, is
not a stall.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter

from .exceptions import SegscaleError

__all__ = ["StallWatch", "StalledError", "stall_cause"]

logger = logging.getLogger(__name__)

_PENDING = ("waiting", "no-worker", "queued")
_SIGNAL = signal.SIGUSR1


class StalledError(SegscaleError):
    """A stage's tasks made no progress for the configured time, with none running (exit 1)."""


def _scheduler_state(dask_scheduler) -> dict:
    """What the watch needs from the scheduler, computed there (runs on the scheduler)."""
    states = Counter(task.state for task in dask_scheduler.tasks.values())
    return {
        "transitions": dask_scheduler.transition_counter,
        "pending": sum(states[state] for state in _PENDING),
        "processing": states["processing"],
        "workers": [
            {"status": worker.status.name, "memory_limit": worker.memory_limit, "memory": worker.memory.process}
            for worker in dask_scheduler.workers.values()
        ],
    }


def stall_cause(state: dict) -> str | None:
    """Why tasks wait with none running, from one ``_scheduler_state``; None when they do not."""
    if not state["pending"] or state["processing"]:
        return None
    workers = state["workers"]
    if not workers:
        return f"{state['pending']} tasks wait and no worker is connected (start workers, or check --scheduler)"
    paused = [worker for worker in workers if worker["status"] == "paused"]
    if paused:  # the others wait on data the paused ones hold, or have nothing left to run
        limit = max(worker["memory_limit"] or 0 for worker in paused) / 2**30
        used = max(worker["memory"] for worker in paused) / 2**30
        who = f"all {len(workers)}" if len(paused) == len(workers) else f"{len(paused)} of {len(workers)}"
        return (
            f"{state['pending']} tasks wait, none runs: {who} workers are paused for memory (up to {used:.1f} GiB used of a "
            f"{limit:.1f} GiB limit); raise --memory-limit or [run] memory_limit, or run more workers"
        )
    statuses = ", ".join(f"{count} {status}" for status, count in Counter(w["status"] for w in workers).items())
    return f"{state['pending']} tasks wait and none runs (workers: {statuses})"


class StallWatch:
    """Watch ``client``'s scheduler while the block runs; see the module docstring.

    Use as a context manager around a stage, in the main thread; when it fires, the block
    raises :class:`StalledError` with the cause (``stalled`` holds it too).
    """

    def __init__(self, client, stall_seconds: float, *, check_seconds: float = 5.0):
        self.client = client
        self.stall_seconds = stall_seconds
        self.check_seconds = min(check_seconds, stall_seconds)
        self.stalled: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous = None
        self._main = None

    def _watch(self) -> None:
        last, since = None, time.monotonic()
        while not self._stop.wait(self.check_seconds):
            try:
                state = self.client.run_on_scheduler(_scheduler_state)
            except Exception:  # a scheduler going away is the stage's error to report, not ours
                logger.debug("stall watch: the scheduler did not answer", exc_info=True)
                continue
            cause = stall_cause(state)
            if cause is None or state["transitions"] != last:
                last, since = state["transitions"], time.monotonic()
                continue
            if time.monotonic() - since >= self.stall_seconds:
                self.stalled = f"no progress for {self.stall_seconds:.0f} s: {cause}"
                # A signal of our own, whose handler raises in the main thread: a real signal
                # wakes the client's wait (it waits in 10-second slices), and SIGINT cannot be
                # used, as a job started in the background by a shell ignores it.
                signal.pthread_kill(self._main, _SIGNAL)
                return

    def _raise(self, signum, frame):
        signal.signal(_SIGNAL, signal.SIG_IGN)  # once
        raise StalledError(self.stalled)

    def __enter__(self) -> StallWatch:
        if self.client is None or self.stall_seconds <= 0:
            return self
        try:
            self._previous = signal.signal(_SIGNAL, self._raise)
        except ValueError:  # not the main thread: there is no waiting main thread to wake
            logger.debug("stall watch: not in the main thread, not watching")
            return self
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name="segscale-stall-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            signal.signal(_SIGNAL, self._previous)
        return False
