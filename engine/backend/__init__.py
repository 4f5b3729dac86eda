"""The backend layer: the one place that chooses between the GPU and CPU stacks.

A stage is handed a :class:`Backend` (``resolve_backend("auto" | "cpu" | "gpu")``, resolved
once per process) and asks it for everything that differs between the stacks: the array
namespace (cupy | numpy), the dataframe namespace (cudf | pandas), the estimators it fits
(cuML | scikit-learn, with the same parameters) and the Dask dataframe backend. The rooms:

- ``_device``: what this machine has (``probe_gpu``, ``usable_cores``) and the ``Backend``;
- ``_estimators``: the models stages fit, built for the backend's device;
- ``_frames``: frames and arrays between Arrow, pandas or cuDF, NumPy or CuPy; graph components;
- ``_timestamps``: text timestamps on cuDF, bad values null (what pandas' ``errors="coerce"`` does);
- ``_cluster``: ``dask_client``, the Dask cluster a run's tasks go to.

cudf, cuml, cupy and dask_cuda are imported in this package only, and lazily, so that
``import engine`` works on a machine with no CUDA.
"""

from ._cluster import SCHEDULER_ENV_VAR, dask_client
from ._device import (
    BACKEND_CHOICES,
    Backend,
    GpuDevice,
    GpuProbe,
    probe_gpu,
    resolve_backend,
    usable_cores,
)
from ._frames import (
    array_namespace,
    connected_components,
    dataframe_namespace,
    frame_from_arrow,
    frame_to_arrow,
    joined_on,
    positions_in,
    run_starts,
    to_array,
    to_host,
    to_host_array,
)  # fmt: skip
from ._timestamps import device_to_datetime

__all__ = [
    # resolution
    "Backend",
    "resolve_backend",
    "BACKEND_CHOICES",
    # frames and arrays
    "array_namespace",
    "dataframe_namespace",
    "frame_from_arrow",
    "positions_in",
    "run_starts",
    "joined_on",
    "frame_to_arrow",
    "to_array",
    "to_host",
    "to_host_array",
    "device_to_datetime",
    "connected_components",
    # detection
    "GpuDevice",
    "GpuProbe",
    "probe_gpu",
    "usable_cores",
    # Dask
    "dask_client",
    "SCHEDULER_ENV_VAR",
]
