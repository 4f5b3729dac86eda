"""What this machine is: the facts a user on a GPU node checks first.

Used by ``segscale doctor``, benchmark metadata and run manifests.
"""

import importlib.metadata
import platform
import sys
from pathlib import Path

import psutil

from . import __version__
from .backend import probe_gpu, usable_cores

__all__ = ["describe_environment", "CPU_PACKAGES"]

CPU_PACKAGES = ("numpy", "pandas", "pyarrow", "dask", "distributed", "scikit-learn", "scipy")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_environment() -> dict:
    """Python, OS, CPU, memory, package versions and the GPU stack, as a JSON-ready dict."""
    probe = probe_gpu()
    return {
        "segscale": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": {"model": _cpu_model(), "usable_cores": usable_cores(), "logical_cores": psutil.cpu_count()},
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "packages": {name: _distribution_version(name) for name in CPU_PACKAGES},
        "gpu": {
            "available": probe.available,
            "packages": probe.versions,
            "devices": [
                {"index": d.index, "name": d.name, "memory_gib": round(d.memory_bytes / 2**30, 1)}
                for d in probe.devices
            ],
            "problems": list(probe.problems),
        },
    }
