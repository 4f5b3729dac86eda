"""What this machine has (GPU packages and devices, usable cores) and the :class:`Backend`
a run uses, resolved from ``auto | cpu | gpu`` once per process."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from ..exceptions import BackendUnavailableError, UsageError, one_line
from ._estimators import Estimators

__all__ = ["BACKEND_CHOICES", "Backend", "GpuDevice", "GpuProbe", "probe_gpu", "resolve_backend", "usable_cores"]

logger = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "cpu", "gpu")


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
class Backend(Estimators):
    """The compute stack every stage works with; its estimators come from :class:`Estimators`.

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


# The oldest RAPIDS release the engine's calls work on (docs/gpu.md: cuML's RandomForest takes
# max_depth=None from 26.04).
RAPIDS_FLOOR = (26, 4)


def _release(version: str) -> tuple[int, ...] | None:
    """(26, 6) from "26.06.00" or "26.6.0a"; None when the text says no release."""
    parts = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(parts[1]), int(parts[2])) if parts else None


@functools.lru_cache(maxsize=1)
def probe_gpu() -> GpuProbe:
    """Detect cuDF, cuML, CuPy, dask-cudf, dask-cuda and CUDA devices (once per process)."""
    versions: dict[str, str | None] = {}
    problems: list[str] = []
    for module_name in ("cudf", "cuml", "cupy", "dask_cudf", "dask_cuda", "rmm"):
        version, why = _import_version(module_name)
        versions[module_name] = version
        # rmm comes with cudf; dask_cuda is needed only for a local GPU cluster.
        if why is not None and module_name in ("cudf", "cuml", "cupy", "dask_cudf"):
            problems.append(f"{module_name} {why}")
        release = _release(version) if module_name in ("cudf", "cuml") and version else None
        if release is not None and release < RAPIDS_FLOOR:
            problems.append(
                f"{module_name} {version} is older than the {RAPIDS_FLOOR[0]}.{RAPIDS_FLOOR[1]:02d} release segscale "
                "needs (install the gpu-cu12 or gpu-cu13 extra, or conda-env.yml)"
            )
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
