"""What every segment kernel shares: namespace dispatch, input checks, launch geometry.

CuPy is imported here lazily, inside :func:`cupy_module`, and only when an input is already a
CuPy array, so ``import kernels`` works on a machine with no CUDA (STYLE 1).
"""

from __future__ import annotations

import math

import numpy as np

# Row dtypes the CUDA sources are compiled for (keyed by dtype name in each module's
# lru_cache'd factory). Anything else is cast to float64 before the launch.
C_TYPES = {"float32": "float", "float64": "double"}

# One thread per segment; 128 threads a block keeps enough blocks in flight on partitions of a
# few thousand customers.
THREADS_PER_BLOCK = 128

# NVRTC contracts a*b + c into one fused multiply-add by default, which rounds differently from
# NumPy. Turning it off makes the kernels' sums of squares bit-identical to the references.
NVRTC_OPTIONS = ("--fmad=false",)


def is_cupy(array) -> bool:
    """True when ``array`` is a CuPy array (checked by module name, so CuPy is not imported)."""
    return type(array).__module__.startswith("cupy")


def cupy_module():
    """Import CuPy; only called on the CuPy code path, where the input already is a CuPy array."""
    import cupy

    return cupy


def launch_geometry(n_segments: int) -> tuple[tuple[int], tuple[int]]:
    """``(grid, block)`` for one thread per segment; callers skip the launch when n is 0."""
    return (math.ceil(n_segments / THREADS_PER_BLOCK),), (THREADS_PER_BLOCK,)


def as_rows(xp, array, name: str):
    """A 1-D contiguous float32/float64 array of ``xp`` (other dtypes are cast to float64)."""
    if xp is np and is_cupy(array):
        raise TypeError(f"{name} is a CuPy array but t is not: pass all arrays on one device")
    array = xp.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype.name not in C_TYPES:
        array = array.astype(np.float64)
    return xp.ascontiguousarray(array)


def check_offsets(xp, offsets, n_rows: int):
    """``offsets`` as a contiguous int64 array of ``xp``, after checking it describes the rows.

    Malformed offsets would send a CUDA thread outside its arrays, so they are checked on both
    paths (on the GPU this costs one small reduction and a device-to-host sync).
    """
    if xp is np and is_cupy(offsets):
        raise TypeError("offsets is a CuPy array but t is not: pass all arrays on one device")
    offsets = xp.asarray(offsets)
    if offsets.ndim != 1 or offsets.size == 0:
        raise ValueError(f"offsets must be 1-D with at least one entry, got shape {offsets.shape}")
    if offsets.dtype.kind not in "iu":
        raise TypeError(f"offsets must be integers, got dtype {offsets.dtype}")
    offsets = xp.ascontiguousarray(offsets.astype(np.int64, copy=False))
    # One small array, so the CuPy path syncs once.
    decreasing = xp.any(offsets[1:] < offsets[:-1]).astype(np.int64)
    first, last, decreasing = xp.stack([offsets[0], offsets[-1], decreasing]).tolist()
    if first != 0 or last != n_rows or decreasing:
        raise ValueError(
            f"offsets must be non-decreasing from 0 to the row count ({n_rows}); "
            f"got offsets[0]={first}, offsets[-1]={last}, decreasing={bool(decreasing)}"
        )
    return offsets


def check_end(end) -> float:
    """``end`` as a finite Python float."""
    end = float(end)
    if not math.isfinite(end):
        raise ValueError(f"end must be finite, got {end}")
    return end


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """The segment index of every row (int64, length ``offsets[-1]``); NumPy only."""
    n_segments = offsets.size - 1
    return np.repeat(np.arange(n_segments, dtype=np.int64), np.diff(offsets))
