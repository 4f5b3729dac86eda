"""Inter-purchase gap statistics per segment: mean, median and population std of t[i+1] - t[i].

CPU path: ``_gap_stats_cpu``, the reference's bincount sums with medians sorted per block of
equal-length segments instead of one lexsort (about 5x the reference; numbers there).
GPU path: one CUDA thread per segment writes its gaps into its own slice of a scratch buffer,
sums them in row order (the order ``numpy.bincount`` uses, so the results are bit-identical),
and finds the median in place with Wirth's selection, O(gaps) per segment.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ._common import (
    C_TYPES,
    NVRTC_OPTIONS,
    as_rows,
    check_offsets,
    cupy_module,
    is_cupy,
    launch_geometry,
    segment_ids,
)

__all__ = ["GapStats", "gap_stats", "gap_stats_ref"]


class GapStats(NamedTuple):
    """Per-segment gap statistics; each field float64 of shape (n_segments,)."""

    mean: object
    median: object
    std: object


def _gaps(t, offsets):
    """Checked inputs -> (gaps, segment of each gap, gap count per segment), NumPy."""
    t = as_rows(np, t, "t").astype(np.float64, copy=False)
    offsets = check_offsets(np, offsets, t.shape[0])
    n_gaps = np.maximum(np.diff(offsets) - 1, 0)
    # A gap t[i+1] - t[i] belongs to a segment when both rows do.
    seg = segment_ids(offsets)
    same = seg[1:] == seg[:-1]
    return np.diff(t)[same], seg[1:][same], n_gaps


def _mean_std(gaps, gap_seg, n_gaps):
    n_segments = n_gaps.size
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 -> NaN for < 2 rows
        mean = np.bincount(gap_seg, weights=gaps, minlength=n_segments) / n_gaps
        dev = gaps - mean[gap_seg]
        std = np.sqrt(np.bincount(gap_seg, weights=dev * dev, minlength=n_segments) / n_gaps)
    return mean, std


def gap_stats_ref(t, offsets) -> GapStats:
    """NumPy reference for :func:`gap_stats`; it defines the result."""
    gaps, gap_seg, n_gaps = _gaps(t, offsets)
    mean, std = _mean_std(gaps, gap_seg, n_gaps)
    # Median: sort gaps by (segment, gap) and average the two middle ones (the same one twice
    # when the count is odd).
    sorted_gaps = gaps[np.lexsort((gaps, gap_seg))]
    first = np.cumsum(n_gaps) - n_gaps
    has = n_gaps > 0
    lower = first[has] + (n_gaps[has] - 1) // 2
    upper = first[has] + n_gaps[has] // 2
    median = np.full(n_gaps.size, np.nan)
    median[has] = 0.5 * (sorted_gaps[lower] + sorted_gaps[upper])
    return GapStats(mean, median, std)


def _gap_stats_cpu(t, offsets) -> GapStats:
    """The CPU path: the reference's sums, with medians taken per block of equal-length segments.

    Segments with the same gap count m are gathered into one (n, m) array and sorted along
    axis 1, which is several times faster than one lexsort over all gaps. There are at most
    about sqrt(2 * n_rows) distinct counts, so the Python loop stays short. Bit-identical to
    the reference. Measured on 1M rows, 2-core CPU, NumPy 2.4, best of 5:

    - 50k segments, mean 20 rows, a third with < 2 rows: reference 96 ms, this 20 ms
    - 1,413 segments of lengths 1..1,413 (most distinct counts): 229 ms, 41 ms
    - 50k segments of 20 rows each: 184 ms, 14 ms

    The lexsort is 80-90% of the reference's time.
    """
    gaps, gap_seg, n_gaps = _gaps(t, offsets)
    mean, std = _mean_std(gaps, gap_seg, n_gaps)
    first = np.cumsum(n_gaps) - n_gaps
    median = np.full(n_gaps.size, np.nan)
    by_count = np.argsort(n_gaps, kind="stable")
    counts, starts = np.unique(n_gaps[by_count], return_index=True)
    stops = np.append(starts[1:], by_count.size)[: starts.size]
    for m, lo, hi in zip(counts.tolist(), starts.tolist(), stops.tolist(), strict=True):
        if m == 0:
            continue
        segs = by_count[lo:hi]
        block = np.sort(gaps[first[segs, None] + np.arange(m)], axis=1)
        median[segs] = 0.5 * (block[:, (m - 1) // 2] + block[:, m // 2])
    return GapStats(mean, median, std)


# t_type is typedef'd per dtype by the factory. Outputs arrive filled with NaN; segments with
# fewer than two rows leave them so.
GAP_STATS_SOURCE = r"""
/* k-th smallest of a[0..m-1], rearranging a in place (N. Wirth, Algorithms + Data Structures
   = Programs, 1976). On return a[i] <= a[k] for i < k and a[i] >= a[k] for i > k. Expected
   O(m); ties stop both scans and are split between the two sides, so long runs of equal gaps
   (same-day orders) do not degrade it. */
__device__ double select_kth(double* a, const long long m, const long long k)
{
    long long l = 0;
    long long r = m - 1;
    while (l < r) {
        const double x = a[k];
        long long i = l;
        long long j = r;
        do {
            while (a[i] < x) ++i;
            while (x < a[j]) --j;
            if (i <= j) {
                const double tmp = a[i];
                a[i] = a[j];
                a[j] = tmp;
                ++i;
                --j;
            }
        } while (i <= j);
        if (j < k) l = i;
        if (k < i) r = j;
    }
    return a[k];
}

extern "C" __global__ void segscale_gap_stats(
    const t_type* __restrict__ t,
    const long long* __restrict__ offsets,
    const long long n_segments,
    double* __restrict__ scratch,
    double* __restrict__ mean_out,
    double* __restrict__ median_out,
    double* __restrict__ std_out)
{
    const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments) return;
    const long long first = offsets[s];
    const long long m = offsets[s + 1] - first - 1;  /* number of gaps */
    if (m < 1) return;

    /* This segment's m gaps go to scratch[first, first + m): inside its own row range, so no
       other thread writes there. */
    double* g = scratch + first;
    double sum = 0.0;
    for (long long i = 0; i < m; ++i) {
        const double gap = (double)t[first + i + 1] - (double)t[first + i];
        g[i] = gap;
        sum += gap;
    }
    const double mean = sum / (double)m;
    double squares = 0.0;
    for (long long i = 0; i < m; ++i) {
        const double dev = g[i] - mean;
        squares += dev * dev;
    }
    mean_out[s] = mean;
    std_out[s] = sqrt(squares / (double)m);

    const long long k = (m - 1) / 2;
    const double lower = select_kth(g, m, k);
    double upper = lower;
    if (m % 2 == 0) {  /* the next order statistic is the smallest gap above position k */
        upper = g[k + 1];
        for (long long i = k + 2; i < m; ++i) {
            if (g[i] < upper) upper = g[i];
        }
    }
    median_out[s] = 0.5 * (lower + upper);
}
"""


@functools.lru_cache(maxsize=None)
def _gap_stats_kernel(t_dtype: str):
    """The compiled gap-stats kernel for rows of dtype ``t_dtype`` (compiled once per dtype)."""
    cupy = cupy_module()
    code = f"typedef {C_TYPES[t_dtype]} t_type;\n" + GAP_STATS_SOURCE
    return cupy.RawKernel(code, "segscale_gap_stats", options=NVRTC_OPTIONS)


def _gap_stats_cupy(t, offsets) -> GapStats:
    cupy = cupy_module()
    t = as_rows(cupy, t, "t")
    offsets = check_offsets(cupy, offsets, t.shape[0])
    n_segments = offsets.size - 1
    mean = cupy.full(n_segments, np.nan, dtype=np.float64)
    median = cupy.full(n_segments, np.nan, dtype=np.float64)
    std = cupy.full(n_segments, np.nan, dtype=np.float64)
    if n_segments > 0 and t.shape[0] > 0:
        scratch = cupy.empty(t.shape[0], dtype=np.float64)
        grid, block = launch_geometry(n_segments)
        _gap_stats_kernel(t.dtype.name)(
            grid, block, (t, offsets, np.int64(n_segments), scratch, mean, median, std)
        )
    return GapStats(mean, median, std)


def gap_stats(t, offsets) -> GapStats:
    """Mean, median and standard deviation of the gaps between consecutive rows of each segment.

    A segment's gaps are ``t[i + 1] - t[i]`` for consecutive rows ``i, i + 1`` inside it; with
    one row per order they are the inter-purchase gaps, in the unit of ``t`` (days).

    Parameters
    ----------
    t : ndarray of float64 or float32, shape (n_rows,)
        Row times in segment order, non-decreasing within each segment and finite (neither is
        checked; NaN gives unspecified results). Other dtypes are cast to float64.
    offsets : ndarray of int, shape (n_segments + 1,)
        Segment boundaries: segment ``i`` is rows ``offsets[i]:offsets[i + 1]``; ``offsets[0]``
        is 0, ``offsets[-1]`` is ``n_rows``, non-decreasing (empty segments allowed). See
        :func:`segment_offsets`.

    Returns
    -------
    GapStats
        ``(mean, median, std)``, each float64 of shape (n_segments,), in the namespace of ``t``.
        ``median`` of an even number of gaps is the mean of the two middle ones; ``std`` is the
        population standard deviation (ddof=0). Segments with fewer than two rows (no gaps)
        get NaN in all three.

    Raises
    ------
    ValueError
        If ``t`` is not 1-D or ``offsets`` does not describe its rows.
    TypeError
        If ``offsets`` is not integer, or the arrays live on different devices.
    """
    if is_cupy(t):
        return _gap_stats_cupy(t, offsets)
    return _gap_stats_cpu(t, offsets)
