"""Running a stage's tasks and publishing its output: what every stage shares."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import dask

from .layout import staging_path

__all__ = [
    "checkpoint", "coarsened", "compute_tasks", "disk_full", "publish", "release_memory", "staged_output", "trim_heap",
    "trimmed",
]  # fmt: skip

logger = logging.getLogger(__name__)


def compute_tasks(tasks, client, progress, label):
    """Compute delayed tasks, on the client's cluster when there is one, reporting progress."""
    if not tasks:
        return []
    if client is None:
        results = dask.compute(*tasks)
        if progress is not None:
            progress(len(tasks), len(tasks))
        return list(results)
    from distributed import as_completed

    futures = client.compute(tasks)
    position = {future.key: i for i, future in enumerate(futures)}
    results = [None] * len(futures)
    # Only as_completed holds the futures: each is let go once its result is here, so a
    # worker forgets a finished task then instead of keeping every one until the last.
    completed = as_completed(futures)
    del futures
    for done, future in enumerate(completed, start=1):
        results[position[future.key]] = future.result()
        if progress is not None:
            progress(done, len(results))
    logger.debug("%s: %d tasks done", label, len(results))
    return results


def disk_full(error: OSError) -> bool:
    """Whether ``error`` says the disk is full: errno ENOSPC, or its text, as Arrow's write
    errors come back from a worker without the number."""
    return error.errno == errno.ENOSPC or "[Errno 28]" in str(error) or "No space left on device" in str(error)


def checkpoint(frame, directory: Path | None, name: str):
    """``frame`` computed once, for several later uses.

    Without a directory it is persisted in the workers' memory. With one, it is written there
    as Parquet (``directory/name``, one file per partition) and read back lazily: its size then
    costs disk instead of memory, and later uses stream it a partition at a time. Reading back
    follows Dask's ``dataframe.backend``, so cuDF frames come back as cuDF.
    """
    if directory is None:
        return frame.persist()
    import dask.dataframe as dd

    path = Path(directory) / name
    frame.to_parquet(path, write_index=False)
    return dd.read_parquet(path)


def coarsened(frame, partitions: int):
    """``frame`` with adjacent partitions concatenated down to ``partitions`` (never split):
    for frames read from many small files before a shuffle, whose work grows with
    input x output partitions."""
    return frame.repartition(npartitions=partitions) if partitions < frame.npartitions else frame


def trim_heap() -> None:
    """Hand the memory this process has freed back to the operating system.

    Freed pages stay with the allocator that served them: glibc for NumPy and pandas, Arrow's
    own pool (mimalloc) for Arrow buffers and pandas' Arrow-backed text. Neither reuses the
    other's, so a worker that alternates between them keeps the high-water mark of both
    under its next task. Dask's documentation advises ``malloc_trim`` for this "unmanaged
    memory"; Arrow's pool has ``release_unused``.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (macOS, musl): nothing to trim this way
    try:
        import pyarrow
    except ImportError:
        return
    pyarrow.default_memory_pool().release_unused()


def trimmed(function):
    """``function``, followed by `trim_heap` once its locals are gone: for task functions
    whose working set is several times their input."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            trim_heap()

    return run


def release_memory(client) -> None:
    """Run `trim_heap` on every worker: after a phase that allocated and freed a lot, the
    next would otherwise run on top of the pages it kept. Without a client (Dask's local
    scheduler) there are no workers."""
    if client is not None:
        client.run(trim_heap)


def publish(staging: Path, out: Path) -> None:
    """Swap the finished output into place; a previous output is replaced only on success."""
    previous = out.with_name(out.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        out.rename(previous)
    staging.rename(out)
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """An empty staging directory beside ``out``, published as ``out`` when the block succeeds
    and removed when it fails, so a stage's output appears whole or not at all."""
    staging = staging_path(out, os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    publish(staging, out)
