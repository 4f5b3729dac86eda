"""Windowed counts and sums per segment: rows and value totals in [end - w, end) for each w.

CPU path: the reference. Measured on 1M rows / 50k segments, windows 30/90/365 days holding 27%
of the rows, 2-core CPU, NumPy 2.4, best of 5: reference 11.3 ms; masking the rows of the
widest window once before the per-window bincounts 8.3 ms; one bincount over (segment, window
class) then a cumsum across windows 8.4 ms (and not bit-identical). A second implementation is
kept only where it wins by ~2x or more, so the reference is the CPU path.
GPU path: one CUDA thread per segment scans its rows once per window and adds values in row
order, the order ``numpy.bincount`` adds them in, so sums are bit-identical to the reference.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ._common import (
    C_TYPES,
    NVRTC_OPTIONS,
    as_rows,
    check_end,
    check_offsets,
    cupy_module,
    is_cupy,
    launch_geometry,
    segment_ids,
)

__all__ = ["WindowSums", "window_sums", "window_sums_ref"]


class WindowSums(NamedTuple):
    """Per-segment window totals, each of shape (n_segments, n_windows).

    ``counts`` is int32, ``sums`` float64; column ``j`` belongs to ``windows[j]``.
    """

    counts: object
    sums: object


def _check_windows(windows) -> np.ndarray:
    if is_cupy(windows):
        windows = windows.get()
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 1:
        raise ValueError(f"windows must be a 1-D sequence of lengths, got shape {windows.shape}")
    if not np.all(np.isfinite(windows) & (windows > 0)):
        raise ValueError(f"windows must be positive and finite, got {windows.tolist()}")
    return windows


def _inputs(xp, t, values, offsets, end, windows):
    t = as_rows(xp, t, "t")
    values = as_rows(xp, values, "values")
    if values.shape != t.shape:
        raise ValueError(f"values has shape {values.shape}, t has shape {t.shape}")
    offsets = check_offsets(xp, offsets, t.shape[0])
    end = check_end(end)
    # Window starts are computed once, on the host, so every path compares against the
    # same float64 bounds.
    starts = end - _check_windows(windows)
    return t, values, offsets, end, starts


def window_sums_ref(t, values, offsets, *, end, windows) -> WindowSums:
    """NumPy reference for :func:`window_sums`; it defines the result."""
    t, values, offsets, end, starts = _inputs(np, t, values, offsets, end, windows)
    t = t.astype(np.float64, copy=False)
    values = values.astype(np.float64, copy=False)
    n_segments = offsets.size - 1
    seg = segment_ids(offsets)
    present = ~np.isnan(values)
    counts = np.zeros((n_segments, starts.size), dtype=np.int32)
    sums = np.zeros((n_segments, starts.size), dtype=np.float64)
    for j, start in enumerate(starts):
        inside = (t >= start) & (t < end)
        counts[:, j] = np.bincount(seg[inside], minlength=n_segments)
        summed = inside & present
        sums[:, j] = np.bincount(seg[summed], weights=values[summed], minlength=n_segments)
    return WindowSums(counts, sums)


# t_type and v_type are typedef'd per dtype pair by the factory.
WINDOW_SUMS_SOURCE = r"""
extern "C" __global__ void segscale_window_sums(
    const t_type* __restrict__ t,
    const v_type* __restrict__ values,
    const long long* __restrict__ offsets,
    const long long n_segments,
    const double* __restrict__ starts,
    const long long n_windows,
    const double end,
    int* __restrict__ counts,
    double* __restrict__ sums)
{
    const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments) return;
    const long long first = offsets[s];
    const long long last = offsets[s + 1];
    for (long long j = 0; j < n_windows; ++j) {
        const double start = starts[j];
        int count = 0;
        double sum = 0.0;
        for (long long r = first; r < last; ++r) {
            const double tr = (double)t[r];
            if (tr >= start && tr < end) {
                ++count;
                const double v = (double)values[r];
                if (v == v) sum += v;  /* false only for NaN: NaN values are skipped */
            }
        }
        counts[s * n_windows + j] = count;
        sums[s * n_windows + j] = sum;
    }
}
"""


@functools.lru_cache(maxsize=None)
def _window_sums_kernel(t_dtype: str, v_dtype: str):
    """The compiled window kernel for one (t dtype, values dtype) pair, compiled once each."""
    cupy = cupy_module()
    code = (
        f"typedef {C_TYPES[t_dtype]} t_type;\n"
        f"typedef {C_TYPES[v_dtype]} v_type;\n" + WINDOW_SUMS_SOURCE
    )
    return cupy.RawKernel(code, "segscale_window_sums", options=NVRTC_OPTIONS)


def _window_sums_cupy(t, values, offsets, *, end, windows) -> WindowSums:
    cupy = cupy_module()
    t, values, offsets, end, starts = _inputs(cupy, t, values, offsets, end, windows)
    n_segments = offsets.size - 1
    counts = cupy.zeros((n_segments, starts.size), dtype=np.int32)
    sums = cupy.zeros((n_segments, starts.size), dtype=np.float64)
    if n_segments > 0 and starts.size > 0:
        grid, block = launch_geometry(n_segments)
        _window_sums_kernel(t.dtype.name, values.dtype.name)(
            grid,
            block,
            (
                t,
                values,
                offsets,
                np.int64(n_segments),
                cupy.asarray(starts),
                np.int64(starts.size),
                np.float64(end),
                counts,
                sums,
            ),
        )
    return WindowSums(counts, sums)


def window_sums(t, values, offsets, *, end, windows) -> WindowSums:
    """Row counts and value sums per segment over trailing windows ending at ``end``.

    Row ``i`` is in window ``w`` when ``end - w <= t[i] < end``: the window includes its
    start and excludes ``end``, so rows at or after ``end`` never count (point in time).

    Parameters
    ----------
    t : ndarray of float64 or float32, shape (n_rows,)
        Row times in segment order (days). Other dtypes are cast to float64. NaN times fall
        in no window.
    values : ndarray of float64 or float32, shape (n_rows,)
        The value summed per row (spend). Same namespace as ``t``.
    offsets : ndarray of int, shape (n_segments + 1,)
        Segment boundaries (see :func:`gap_stats`, :func:`segment_offsets`).
    end : float
        Exclusive end of every window, in the unit and epoch of ``t`` (the as-of time).
    windows : sequence of float, length n_windows
        Window lengths, positive and finite, in the unit of ``t``; any order.

    Returns
    -------
    WindowSums
        ``(counts, sums)`` of shape (n_segments, n_windows) in the namespace of ``t``.
        ``counts`` (int32) counts every row in the window, whatever its value; ``sums``
        (float64) adds the values that are not NaN (NaN values are skipped; ±inf propagate),
        and is 0.0 where no row with a value falls in the window.

    Raises
    ------
    ValueError
        If the shapes disagree, ``offsets`` does not describe the rows, ``end`` is not
        finite, or a window length is not positive and finite.
    TypeError
        If ``offsets`` is not integer, or the arrays live on different devices.
    """
    if is_cupy(t):
        return _window_sums_cupy(t, values, offsets, end=end, windows=windows)
    return window_sums_ref(t, values, offsets, end=end, windows=windows)
