"""``dask_client``: the Dask cluster a run's tasks go to, local or existing, closed after."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..exceptions import UsageError
from ._device import Backend, usable_cores

__all__ = ["SCHEDULER_ENV_VAR", "dask_client"]

SCHEDULER_ENV_VAR = "DASK_SCHEDULER_ADDRESS"


def _local_cpu_cluster(workers, memory_limit, local_directory):
    from distributed import LocalCluster
    from distributed.system import MEMORY_LIMIT

    n_workers = workers or usable_cores()
    if memory_limit is None:
        # MEMORY_LIMIT honours cgroup and rlimit caps. Leave headroom for the client process
        # and the page cache; workers spill past their share.
        memory_limit = int(MEMORY_LIMIT * 0.85 / n_workers)
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        local_directory=str(local_directory),
        dashboard_address=":0",  # any free port: two clusters on one node must not clash over 8787
        silence_logs=logging.ERROR,
    )


def _local_cuda_cluster(workers, memory_limit, local_directory, rmm_pool_size):
    from dask_cuda import LocalCUDACluster

    return LocalCUDACluster(
        n_workers=workers,  # None: one worker per visible GPU
        memory_limit=memory_limit if memory_limit is not None else "auto",
        local_directory=str(local_directory),
        rmm_pool_size=rmm_pool_size,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )


@contextlib.contextmanager
def _own_thread_settings():
    """Keep this process's thread settings through the start of a local cluster.

    A nanny sets ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS=1`` and the like,
    meant for its single-threaded workers) in its parent's environment before it spawns one:
    this process. A library loaded after that read it, so the client fitted its models on one
    core while the workers sat idle (propensity's training at 1M customers took 94 s instead of
    49 s). The variables go back to what they were, set or not.
    """
    import dask

    names = list(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_scheduler_address(address: str) -> None:
    """Reject a malformed address before connecting: Client can hang on one instead of failing."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as error:
        raise UsageError(
            f"cannot reach Dask scheduler at {address}: {error} (check --scheduler or {SCHEDULER_ENV_VAR})"
        ) from None


# Dask's nannies give their workers MALLOC_TRIM_THRESHOLD_=65536 so that glibc hands freed
# memory back sooner. Setting that variable at all also turns off glibc's sliding mmap
# threshold: every allocation over 128 KiB becomes its own mmap, faulted in page by page and
# unmapped when freed, and our tasks allocate and free arrays of megabytes all the time. It
# cost 1.5-2x the CPU of the same tasks in one process (1M customers, one worker: placing
# segments 7.2 s against 3.7 s, scoring value 9.9 against 6.0). The tasks that allocate the
# most hand their memory back themselves (``_tasks.trimmed``); None unsets the variable.
_KEEP_MALLOC_DEFAULTS = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextlib.contextmanager
def dask_client(
    backend: Backend,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: int | str | None = None,
    local_directory: str | os.PathLike | None = None,
    rmm_pool_size: int | str | None = None,
    connect_timeout: str = "20s",
):
    """Open a Dask client for ``backend`` and close it, and any cluster it started, on exit.

    Parameters
    ----------
    backend : Backend
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:8786``). Defaults to the
        ``DASK_SCHEDULER_ADDRESS`` environment variable; when neither is set a local
        cluster is started.
    workers : int, optional
        Local cluster size. CPU: one single-threaded worker process per usable core.
        GPU: one worker per visible GPU.
    memory_limit : int or str, optional
        Per-worker host memory limit in bytes (or a Dask string such as ``"4GB"``);
        workers spill to ``local_directory`` past it. CPU default: 85% of the memory this
        process may use (RAM, or the container's limit) shared between workers.
    local_directory : path, optional
        Spill and scratch directory; defaults to a new private directory (mode 0700) under
        ``$TMPDIR``, removed on exit: spilled partitions hold customer rows, and a shared
        scratch directory would let other users of the machine read them.
    rmm_pool_size : int or str, optional
        GPU only: pre-allocate an RMM pool of this size on each worker.
    connect_timeout : str, default "20s"
        How long to keep trying an existing scheduler before giving up (a UsageError).

    Yields
    ------
    distributed.Client
        With Dask's ``dataframe.backend`` set to ``backend.dataframe_backend``.
    """
    import dask
    from distributed import Client

    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    if isinstance(memory_limit, str):
        from dask.utils import parse_bytes

        try:
            parse_bytes(memory_limit)
        except ValueError:
            raise UsageError(f"memory limit {memory_limit!r} is not a size such as 4GB or 6GiB") from None
    address = scheduler or os.environ.get(SCHEDULER_ENV_VAR) or None
    private = None
    cluster = None
    client = None
    # Workers sample the stack of every running task for the dashboard's profile and keep the
    # last 1000 s of samples: memory no task needs, growing with the run. Over 60 ingest tasks
    # it doubled the growth of a worker's resident floor (+58 against +27 MiB). Nannies start
    # workers, and restart those that die (past their memory limit, say), with this process's
    # config of the moment, so it stays set while a local cluster lives; an existing cluster
    # keeps its owner's settings.
    settings = {} if address is not None else {"distributed.worker.profile.enabled": False, **_KEEP_MALLOC_DEFAULTS}
    with dask.config.set(settings):
        try:
            if address is not None:
                _check_scheduler_address(address)
                try:
                    client = Client(address, timeout=connect_timeout)
                except (OSError, ValueError) as error:
                    raise UsageError(
                        f"cannot reach Dask scheduler at {address}: {error} "
                        f"(check --scheduler or {SCHEDULER_ENV_VAR})"
                    ) from error
            else:
                if local_directory is None:
                    local_directory = private = Path(tempfile.mkdtemp(prefix="segscale-dask-"))
                Path(local_directory).mkdir(parents=True, exist_ok=True)
                # Dask's p2p shuffle feeds Arrow buffers that Acero warns about, a line per
                # batch on stderr; Arrow copies them either way. Workers inherit this.
                os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "ignore")
                with _own_thread_settings():
                    if backend.is_gpu:
                        cluster = _local_cuda_cluster(workers, memory_limit, local_directory, rmm_pool_size)
                    else:
                        cluster = _local_cpu_cluster(workers, memory_limit, local_directory)
                client = Client(cluster)
            with dask.config.set({"dataframe.backend": backend.dataframe_backend}):
                yield client
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
            if private is not None:
                shutil.rmtree(private, ignore_errors=True)
