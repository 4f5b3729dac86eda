"""The backend layer: the one place that chooses between the GPU and CPU stacks.

``resolve_backend("auto" | "cpu" | "gpu")`` returns a frozen :class:`Backend` holding
the array namespace (cupy | numpy), the dataframe namespace (cudf | pandas), estimator
factories (cuml | scikit-learn) and the Dask dataframe backend name. ``dask_client``
opens the matching Dask cluster (``dask_cuda.LocalCUDACluster`` or
``distributed.LocalCluster``) or connects to an existing scheduler, and always closes
what it opened.

cudf, cuml, cupy and dask_cuda are imported here only, and lazily, so that
``import engine`` works on a machine with no CUDA.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .exceptions import BackendUnavailableError, UsageError, one_line

__all__ = [
    # resolution
    "Backend",
    "resolve_backend",
    "BACKEND_CHOICES",
    "array_namespace",
    "dataframe_namespace",
    "frame_from_arrow",
    "frame_to_arrow",
    "to_array",
    "to_host",
    "to_host_array",
    # detection
    "GpuDevice",
    "GpuProbe",
    "probe_gpu",
    "usable_cores",
    # Dask
    "dask_client",
    "SCHEDULER_ENV_VAR",
]

logger = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "cpu", "gpu")
SCHEDULER_ENV_VAR = "DASK_SCHEDULER_ADDRESS"

# Estimator name -> (scikit-learn module, cuML module). Both sides share the class name,
# and cuML keeps scikit-learn's parameter names for these, so stages build either one
# with the same arguments.
_ESTIMATORS = {
    "KMeans": ("sklearn.cluster", "cuml.cluster"),
    "DBSCAN": ("sklearn.cluster", "cuml.cluster"),
    "RandomForestClassifier": ("sklearn.ensemble", "cuml.ensemble"),
    "LogisticRegression": ("sklearn.linear_model", "cuml.linear_model"),
    "NearestNeighbors": ("sklearn.neighbors", "cuml.neighbors"),
    "PCA": ("sklearn.decomposition", "cuml.decomposition"),
}


@dataclass(frozen=True)
class GpuDevice:
    """One CUDA device as seen by the driver."""

    index: int
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class GpuProbe:
    """What the GPU stack on this machine looks like.

    ``versions`` maps each GPU package (cudf, cuml, cupy, dask_cuda, rmm) to its version,
    or None when it does not import. ``problems`` lists, in words, what keeps the GPU
    backend from being usable; it is empty when the backend can be used.
    """

    versions: dict[str, str | None]
    devices: tuple[GpuDevice, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def available(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Backend:
    """The compute stack every stage works with.

    Attributes
    ----------
    name : {"cpu", "gpu"}
    xp : module
        Array namespace: numpy or cupy.
    df : module
        Dataframe namespace: pandas or cudf.
    dataframe_backend : {"pandas", "cudf"}
        The value for Dask's ``dataframe.backend`` config, so ``dd.read_parquet`` returns
        partitions of the right kind without branching in the stages.
    """

    name: str
    xp: ModuleType
    df: ModuleType
    dataframe_backend: str

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def estimator(self, name: str) -> type:
        """Return the estimator class ``name`` from cuML (gpu) or scikit-learn (cpu).

        Parameters
        ----------
        name : str
            One of ``KMeans``, ``DBSCAN``, ``RandomForestClassifier``,
            ``LogisticRegression``, ``NearestNeighbors``, ``PCA``.
        """
        try:
            cpu_module, gpu_module = _ESTIMATORS[name]
        except KeyError:
            raise ValueError(
                f"unknown estimator {name!r}; known: {', '.join(sorted(_ESTIMATORS))}"
            ) from None
        module = importlib.import_module(gpu_module if self.is_gpu else cpu_module)
        return getattr(module, name)


def dataframe_namespace(frame) -> ModuleType:
    """The dataframe module a frame or series belongs to: cudf or pandas (STYLE 3).

    Partition functions call this on their input, so the same function runs on both backends
    without being told which one it is on.
    """
    if type(frame).__module__.split(".")[0] == "cudf":
        import cudf

        return cudf
    import pandas

    return pandas


def array_namespace(data) -> ModuleType:
    """The array module matching a frame, series or array: cupy for cuDF and CuPy, else numpy."""
    if type(data).__module__.split(".")[0] in ("cudf", "cupy"):
        import cupy

        return cupy
    import numpy

    return numpy


def frame_from_arrow(table, backend_name: str, *, arrow_strings: bool = True):
    """A pyarrow Table as a dataframe of the backend: cudf on ``gpu``; pandas on ``cpu``.

    On the CPU, strings stay Arrow-backed (no Python objects) and dictionary columns become
    pandas categoricals; with ``arrow_strings=False`` the frame gets the dtypes pandas' own
    Parquet reader would give it. On the GPU the columns move to the device once.
    """
    if backend_name == "gpu":
        import cudf

        return cudf.DataFrame.from_arrow(table)
    if not arrow_strings:
        return table.to_pandas()
    import pandas
    import pyarrow

    def arrow_strings_of(arrow_type):
        if pyarrow.types.is_string(arrow_type) or pyarrow.types.is_large_string(arrow_type):
            return pandas.ArrowDtype(arrow_type)
        return None

    return table.to_pandas(types_mapper=arrow_strings_of)


def frame_to_arrow(frame):
    """A pandas or cuDF frame as a pyarrow Table in host memory, without its index."""
    if dataframe_namespace(frame).__name__ == "cudf":
        return frame.to_arrow(preserve_index=False)
    import pyarrow

    return pyarrow.Table.from_pandas(frame, preserve_index=False)


def to_array(series, dtype=None, na_value=None):
    """A column as an array of its backend's array namespace: CuPy for cuDF, else NumPy.

    ``na_value`` fills missing values first, which nullable columns need before a cast.
    """
    if hasattr(series, "to_cupy"):
        return series.to_cupy(dtype=dtype, na_value=na_value)
    if na_value is None:
        return series.to_numpy(dtype=dtype)
    return series.to_numpy(dtype=dtype, na_value=na_value)


def to_host(frame):
    """A cuDF frame, series or index copied to pandas; a pandas one as it is."""
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def to_host_array(array):
    """A CuPy array copied to NumPy; anything else as a NumPy array."""
    import numpy

    return array.get() if hasattr(array, "get") else numpy.asarray(array)


def connected_components(sources, targets, vertices: int):
    """The component of every vertex of the undirected graph with edges ``sources[i]-targets[i]``.

    Parameters
    ----------
    sources, targets : array of int, shape (edges,)
        Vertex numbers in ``0..vertices-1``; NumPy, or CuPy for the GPU.
    vertices : int

    Returns
    -------
    array of int, shape (vertices,)
        Component numbers, of the inputs' array namespace. SciPy's csgraph solves NumPy input;
        CuPy input is solved on the device by CuPy's csgraph, which calls cuGraph
        (``pylibcugraph``), with the same interface.
    """
    if array_namespace(sources).__name__ == "cupy":
        import cupy as xp
        from cupyx.scipy.sparse import coo_matrix
        from cupyx.scipy.sparse.csgraph import connected_components as solve
    else:
        import numpy as xp
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components as solve
    weights = xp.ones(len(sources), dtype=xp.float32)
    graph = coo_matrix((weights, (sources, targets)), shape=(vertices, vertices)).tocsr()
    _, labels = solve(graph, directed=False)
    return labels


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 CPU controller: the mask is the limit
        pass
    return cores


def _import_version(module_name: str) -> tuple[str | None, str | None]:
    """Import a module; return (version, None) or (None, why it failed)."""
    if importlib.util.find_spec(module_name) is None:
        return None, "not installed"
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a broken CUDA install fails in many ways
        # This text ends up in one-line UsageError messages.
        return None, f"fails to import ({type(error).__name__}: {one_line(error)})"
    return getattr(module, "__version__", "unknown"), None


def _cuda_devices_from_cupy() -> tuple[GpuDevice, ...] | None:
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        devices = []
        for index in range(count):
            properties = cupy.cuda.runtime.getDeviceProperties(index)
            name = properties["name"]
            devices.append(
                GpuDevice(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_bytes=int(properties["totalGlobalMem"]),
                )
            )
        return tuple(devices)
    except Exception:  # no driver, no device, or a CUDA version mismatch
        return None


def _cuda_devices_from_nvidia_smi() -> tuple[GpuDevice, ...]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return ()
    try:
        completed = subprocess.run(
            [executable, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    devices = []
    for line in completed.stdout.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue  # a warning or an unexpected line: a report, not a reason to fail
        index, name, memory_mib = parts
        try:
            memory_bytes = int(float(memory_mib)) * 2**20
        except ValueError:  # "[N/A]" on some virtualised or MIG setups
            memory_bytes = 0
        devices.append(GpuDevice(int(index), name, memory_bytes))
    return tuple(devices)


@functools.lru_cache(maxsize=1)
def probe_gpu() -> GpuProbe:
    """Detect cuDF, cuML, CuPy, dask-cuda and CUDA devices (once per process)."""
    versions: dict[str, str | None] = {}
    problems: list[str] = []
    for module_name in ("cudf", "cuml", "cupy", "dask_cuda", "rmm"):
        version, why = _import_version(module_name)
        versions[module_name] = version
        # rmm comes with cudf; dask_cuda is needed only for a local GPU cluster.
        if why is not None and module_name in ("cudf", "cuml", "cupy"):
            problems.append(f"{module_name} {why}")
    devices = _cuda_devices_from_cupy()
    if devices is None:
        devices = _cuda_devices_from_nvidia_smi()
    if not devices:
        problems.append("no CUDA device visible (check the driver with nvidia-smi)")
    return GpuProbe(versions=versions, devices=devices, problems=tuple(problems))


@functools.lru_cache(maxsize=None)
def resolve_backend(name: str = "auto") -> Backend:
    """Resolve ``auto | cpu | gpu`` to a :class:`Backend`.

    ``auto`` picks the GPU when cuDF, cuML, CuPy and a CUDA device are all present and
    otherwise falls back to the CPU with a logged warning. ``gpu`` without them raises
    :class:`~engine.exceptions.BackendUnavailableError` naming what is missing; it never
    falls back silently.
    """
    if name not in BACKEND_CHOICES:
        raise UsageError(f"unknown backend {name!r}: use one of {', '.join(BACKEND_CHOICES)}")
    if name in ("auto", "gpu"):
        probe = probe_gpu()
        if probe.available:
            import cudf
            import cupy

            return Backend(name="gpu", xp=cupy, df=cudf, dataframe_backend="cudf")
        if name == "gpu":
            raise BackendUnavailableError(probe.problems)
        if any(version is not None for version in probe.versions.values()) or probe.devices:
            # Part of a GPU stack is here, so the user likely expected it to be used.
            logger.warning("GPU backend not usable (%s); using the CPU", "; ".join(probe.problems))
        else:
            logger.info("no GPU stack installed; using the CPU backend")
    import numpy
    import pandas

    return Backend(name="cpu", xp=numpy, df=pandas, dataframe_backend="pandas")


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


@contextlib.contextmanager
def dask_client(
    backend: Backend,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: int | str | None = None,
    local_directory: str | os.PathLike | None = None,
    rmm_pool_size: int | str | None = None,
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
        Spill and scratch directory; defaults to ``$TMPDIR/segscale-dask``.
    rmm_pool_size : int or str, optional
        GPU only: pre-allocate an RMM pool of this size on each worker.

    Yields
    ------
    distributed.Client
        With Dask's ``dataframe.backend`` set to ``backend.dataframe_backend``.
    """
    import dask
    from distributed import Client

    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    address = scheduler or os.environ.get(SCHEDULER_ENV_VAR) or None
    local_directory = Path(local_directory or Path(tempfile.gettempdir()) / "segscale-dask")
    cluster = None
    client = None
    # Workers sample the stack of every running task for the dashboard's profile and keep the
    # last 1000 s of samples: memory no task needs, growing with the run. Over 60 ingest tasks
    # it doubled the growth of a worker's resident floor (+58 against +27 MiB). Nannies start
    # workers, and restart those that die (past their memory limit, say), with this process's
    # config of the moment, so it stays set while a local cluster lives; an existing cluster
    # keeps its owner's settings.
    settings = {} if address is not None else {"distributed.worker.profile.enabled": False}
    with dask.config.set(settings):
        try:
            if address is not None:
                _check_scheduler_address(address)
                try:
                    client = Client(address, timeout="20s")
                except (OSError, ValueError) as error:
                    raise UsageError(
                        f"cannot reach Dask scheduler at {address}: {error} "
                        f"(check --scheduler or {SCHEDULER_ENV_VAR})"
                    ) from error
            else:
                local_directory.mkdir(parents=True, exist_ok=True)
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
