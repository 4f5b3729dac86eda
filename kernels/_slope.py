"""Trend of monthly activity per segment: the least-squares slope of rows per month.

The rows with ``end - months * month_days <= t < end`` fall into ``months`` bins of
``month_days`` each (bin 0 oldest); the slope of the bin counts ``c_k`` against the bin index
``k`` is ``sum_k (k - k_mean) * c_k / sum_k (k - k_mean)**2``. The numerator equals
``sum over rows of (bin(row) - k_mean)``, a sum of multiples of 0.5 that float64 holds
exactly, so every path gives the same bits whatever order it adds in.

CPU path: ``_monthly_slope_cpu``, a weighted bincount of that numerator (2-3x the reference).
GPU path: one CUDA thread per segment adds ``bin - k_mean`` over its rows.
"""

from __future__ import annotations

import functools
import math
import operator

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

__all__ = ["monthly_slope", "monthly_slope_ref"]


def _design(end, months, month_days):
    """Checked scalars -> (start, end, months, month_days, k_mean, sxx).

    Computed once on the host, so the CPU and GPU paths bin against the same float64 bounds.
    """
    end = check_end(end)
    months = operator.index(months)
    if months < 2:
        raise ValueError(f"months must be at least 2 to define a slope, got {months}")
    month_days = float(month_days)
    if not (math.isfinite(month_days) and month_days > 0):
        raise ValueError(f"month_days must be positive and finite, got {month_days}")
    start = end - months * month_days
    k_mean = 0.5 * (months - 1)
    sxx = months * (months * months - 1) / 12.0  # sum over k of (k - k_mean)**2
    return start, end, months, month_days, k_mean, sxx


def _bins(t, start, end, months, month_days):
    """Bin of every row in range (int64) and the mask of those rows, NumPy."""
    inside = (t >= start) & (t < end)
    bins = np.floor((t[inside] - start) / month_days).astype(np.int64)
    # t < end can still round up to bin `months` when end - start is not exact; keep it last.
    np.minimum(bins, months - 1, out=bins)
    return bins, inside


def monthly_slope_ref(t, offsets, *, end, months=12, month_days=30.0) -> np.ndarray:
    """NumPy reference for :func:`monthly_slope`; it defines the result."""
    t = as_rows(np, t, "t").astype(np.float64, copy=False)
    offsets = check_offsets(np, offsets, t.shape[0])
    start, end, months, month_days, k_mean, sxx = _design(end, months, month_days)
    n_segments = offsets.size - 1
    bins, inside = _bins(t, start, end, months, month_days)
    seg = segment_ids(offsets)[inside]
    counts = np.bincount(seg * months + bins, minlength=n_segments * months)
    counts = counts.reshape(n_segments, months)
    centred_k = np.arange(months, dtype=np.float64) - k_mean
    return (counts @ centred_k) / sxx


def _monthly_slope_cpu(t, offsets, *, end, months=12, month_days=30.0) -> np.ndarray:
    """The CPU path: the numerator summed per row with one weighted bincount, no count matrix.

    Bit-identical to the reference (see the module docstring). Measured on 1M rows, 2-core
    CPU, NumPy 2.4, best of 7 : 50k segments 8.4 ms -> 3.7 ms; 500k segments
    35.9 ms -> 11.2 ms (the reference's (n_segments, months) count matrix is what costs).
    """
    t = as_rows(np, t, "t").astype(np.float64, copy=False)
    offsets = check_offsets(np, offsets, t.shape[0])
    start, end, months, month_days, k_mean, sxx = _design(end, months, month_days)
    bins, inside = _bins(t, start, end, months, month_days)
    seg = segment_ids(offsets)[inside]
    numerator = np.bincount(seg, weights=bins - k_mean, minlength=offsets.size - 1)
    return numerator / sxx


# t_type is typedef'd per dtype by the factory.
MONTHLY_SLOPE_SOURCE = r"""
extern "C" __global__ void segscale_monthly_slope(
    const t_type* __restrict__ t,
    const long long* __restrict__ offsets,
    const long long n_segments,
    const double start,
    const double end,
    const double month_days,
    const long long months,
    const double k_mean,
    const double sxx,
    double* __restrict__ slope)
{
    const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments) return;
    double numerator = 0.0;  /* sum over rows in range of (bin - k_mean): exact in float64 */
    for (long long r = offsets[s]; r < offsets[s + 1]; ++r) {
        const double tr = (double)t[r];
        if (tr >= start && tr < end) {
            long long bin = (long long)floor((tr - start) / month_days);
            if (bin > months - 1) bin = months - 1;
            numerator += (double)bin - k_mean;
        }
    }
    slope[s] = numerator / sxx;
}
"""


@functools.lru_cache(maxsize=None)
def _monthly_slope_kernel(t_dtype: str):
    """The compiled slope kernel for rows of dtype ``t_dtype`` (compiled once per dtype)."""
    cupy = cupy_module()
    code = f"typedef {C_TYPES[t_dtype]} t_type;\n" + MONTHLY_SLOPE_SOURCE
    return cupy.RawKernel(code, "segscale_monthly_slope", options=NVRTC_OPTIONS)


def _monthly_slope_cupy(t, offsets, *, end, months, month_days):
    cupy = cupy_module()
    t = as_rows(cupy, t, "t")
    offsets = check_offsets(cupy, offsets, t.shape[0])
    start, end, months, month_days, k_mean, sxx = _design(end, months, month_days)
    n_segments = offsets.size - 1
    slope = cupy.zeros(n_segments, dtype=np.float64)
    if n_segments > 0:
        grid, block = launch_geometry(n_segments)
        _monthly_slope_kernel(t.dtype.name)(
            grid,
            block,
            (
                t,
                offsets,
                np.int64(n_segments),
                np.float64(start),
                np.float64(end),
                np.float64(month_days),
                np.int64(months),
                np.float64(k_mean),
                np.float64(sxx),
                slope,
            ),
        )
    return slope


def monthly_slope(t, offsets, *, end, months=12, month_days=30.0):
    """Least-squares slope of the monthly row count over the ``months`` before ``end``.

    The range ``end - months * month_days <= t < end`` is cut into ``months`` consecutive
    bins of ``month_days`` (bin 0 the oldest); each segment's rows are counted per bin and
    the ordinary least-squares slope of count against bin index is returned.

    Parameters
    ----------
    t : ndarray of float64 or float32, shape (n_rows,)
        Row times in segment order (days). Other dtypes are cast to float64. NaN times fall
        in no bin.
    offsets : ndarray of int, shape (n_segments + 1,)
        Segment boundaries (see :func:`gap_stats`, :func:`segment_offsets`).
    end : float
        Exclusive end of the range, in the unit and epoch of ``t`` (the as-of time).
    months : int, default 12
        Number of bins; at least 2.
    month_days : float, default 30.0
        Bin width, positive, in the unit of ``t``.

    Returns
    -------
    slope : ndarray of float64, shape (n_segments,)
        Rows per bin gained per bin (orders per month per month), in the namespace of ``t``.
        A segment with no rows in the range has slope 0.0 (a flat line of zeros).

    Raises
    ------
    ValueError
        If ``offsets`` does not describe the rows, ``end`` is not finite, ``months < 2`` or
        ``month_days`` is not positive and finite.
    TypeError
        If ``offsets`` or ``months`` is not integer, or the arrays live on different devices.
    """
    if is_cupy(t):
        return _monthly_slope_cupy(t, offsets, end=end, months=months, month_days=month_days)
    return _monthly_slope_cpu(t, offsets, end=end, months=months, month_days=month_days)
