"""Tests for kernels: segment offsets, gap statistics, window sums and monthly slopes.

Three tiers: hand-computed tiny cases for the public functions; the NumPy references against
a per-segment Python loop that states each definition literally, and the CPU paths against
the references, on random segment layouts; the CuPy kernels against the references (GPU only).
"""

import itertools
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import kernels
from kernels import (
    gap_stats,
    gap_stats_ref,
    monthly_slope,
    monthly_slope_ref,
    segment_offsets,
    segment_offsets_ref,
    window_sums,
    window_sums_ref,
)

NAN = math.nan
SEEDS = [0, 1, 2, 3, 4]
WINDOWS = [30.0, 90.0, 365.0]


def offsets_of(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def random_layout(seed, n_segments=None):
    """Rows in segment order: many empty and one-row segments, a few long ones.

    Times are non-decreasing within each segment, on a coarse grid so that equal
    timestamps (gap 0) and rows exactly on window edges occur; values have NaNs.
    """
    rng = np.random.default_rng(seed)
    if n_segments is None:
        n_segments = int(rng.integers(1, 300))
    kind = rng.random(n_segments)
    lengths = np.where(kind < 0.3, 0, np.where(kind < 0.55, 1, rng.integers(2, 25, n_segments)))
    lengths[rng.integers(0, n_segments, 2)] = rng.integers(100, 400, 2)
    offsets = offsets_of(lengths)
    n_rows = int(offsets[-1])
    gaps = rng.choice([0.0, 0.5, 1.0, 7.0, 30.0, 45.5], n_rows)
    # Each segment starts at a whole day and accumulates its own gaps.
    origin = np.repeat(rng.integers(0, 800, n_segments).astype(np.float64), lengths)
    cum = np.cumsum(gaps)
    t = origin + cum - cum[np.repeat(offsets[:-1], lengths)]
    values = rng.normal(50.0, 40.0, n_rows)
    values[rng.random(n_rows) < 0.1] = NAN
    return t, values, offsets


# ---------------------------------------------------------------- literal definitions


def segments(offsets):
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(offsets)]


def gap_stats_loop(t, offsets):
    out = []
    for rows in segments(offsets):
        gaps = [float(b - a) for a, b in zip(t[rows][:-1], t[rows][1:])]
        if not gaps:
            out.append((NAN, NAN, NAN))
        else:
            out.append((statistics.fmean(gaps), statistics.median(gaps), statistics.pstdev(gaps)))
    return np.array(out, dtype=np.float64).reshape(-1, 3).T


def window_sums_loop(t, values, offsets, end, windows):
    counts = np.zeros((len(offsets) - 1, len(windows)), dtype=np.int64)
    sums = np.zeros((len(offsets) - 1, len(windows)))
    for s, rows in enumerate(segments(offsets)):
        for j, w in enumerate(windows):
            for ti, vi in zip(t[rows], values[rows]):
                if end - w <= ti < end:
                    counts[s, j] += 1
                    sums[s, j] += 0.0 if math.isnan(vi) else vi
    return counts, sums


def monthly_slope_loop(t, offsets, end, months, month_days):
    start = end - months * month_days
    x = np.arange(months)
    out = []
    for rows in segments(offsets):
        counts = np.zeros(months)
        for ti in t[rows]:
            if start <= ti < end:
                counts[min(int((ti - start) // month_days), months - 1)] += 1
        out.append(np.polyfit(x, counts, 1)[0])
    return np.array(out)


# ---------------------------------------------------------------- segment_offsets


@pytest.mark.parametrize(
    "keys, expected",
    [
        (np.array([7, 7, 3, 9, 9, 9]), [0, 2, 3, 6]),
        (np.array(["b", "b", "a", "c"]), [0, 2, 3, 4]),
        (np.array(["b", "a", "a"], dtype=object), [0, 1, 3]),
        (["x"], [0, 1]),
        (np.array([], dtype=np.int64), [0]),
    ],
)
def test_segment_offsets_hand(keys, expected):
    got = segment_offsets(keys)
    assert got.dtype == np.int64
    assert_array_equal(got, expected)


def test_segment_offsets_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        segment_offsets(np.zeros((2, 2)))


@pytest.mark.parametrize("seed", SEEDS)
def test_segment_offsets_round_trip(seed):
    _, _, offsets = random_layout(seed)
    lengths = np.diff(offsets)
    keys = np.repeat(np.arange(lengths.size) * 3, lengths)
    assert_array_equal(segment_offsets_ref(keys), offsets[np.r_[True, lengths > 0]])


# ---------------------------------------------------------------- gap_stats


def test_gap_stats_hand():
    # segments: 3 gaps (5, 0, 7) | empty | one row | one gap | 4 gaps (1, 2, 4, 1)
    t = np.array([0.0, 5.0, 5.0, 12.0, 40.0, 3.0, 4.5, 1.0, 2.0, 4.0, 8.0, 9.0])
    offsets = np.array([0, 4, 4, 5, 7, 12])
    mean, median, std = gap_stats(t, offsets)
    assert_allclose(mean, [4.0, NAN, NAN, 1.5, 2.0], rtol=1e-15)
    assert_allclose(median, [5.0, NAN, NAN, 1.5, 1.5], rtol=1e-15)
    assert_allclose(std, [math.sqrt(26 / 3), NAN, NAN, 0.0, math.sqrt(1.5)], rtol=1e-15)
    assert all(a.dtype == np.float64 and a.shape == (5,) for a in (mean, median, std))


def test_gap_stats_all_equal_times():
    mean, median, std = gap_stats(np.full(4, 10.0), np.array([0, 4]))
    assert (mean[0], median[0], std[0]) == (0.0, 0.0, 0.0)


def test_gap_stats_no_segments():
    result = gap_stats(np.array([]), np.array([0]))
    assert all(a.shape == (0,) for a in result)


@pytest.mark.parametrize("seed", SEEDS)
def test_gap_stats_ref_is_the_definition(seed):
    t, _, offsets = random_layout(seed, n_segments=60)
    assert_allclose(np.array(gap_stats_ref(t, offsets)), gap_stats_loop(t, offsets), rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_gap_stats_cpu_path_equals_ref(seed):
    t, _, offsets = random_layout(seed)
    for got, want in zip(gap_stats(t, offsets), gap_stats_ref(t, offsets), strict=True):
        assert_array_equal(got, want)  # bit-identical: same sums, exact medians


def test_gap_stats_float32_rows_match_float64():
    t, _, offsets = random_layout(9)
    t32 = t.astype(np.float32)
    for got, want in zip(gap_stats(t32, offsets), gap_stats_ref(t32.astype(np.float64), offsets)):
        assert_array_equal(got, want)


# ---------------------------------------------------------------- window_sums


def test_window_sums_hand():
    end = 100.0
    # segment 0: 70 is exactly end - 30 (in the 30-day window only), 90 exactly end - 10 (in
    # both), 95 has a NaN value (counted, not summed), 100 is end (excluded), 120 after it.
    t = np.array([10.0, 70.0, 90.0, 95.0, 100.0, 120.0, 99.5])
    values = np.array([1.0, 2.0, 4.0, NAN, 8.0, 16.0, 32.0])
    offsets = np.array([0, 6, 6, 7])  # segment 1 empty, segment 2 one row
    counts, sums = window_sums(t, values, offsets, end=end, windows=[10.0, 30.0])
    assert counts.dtype == np.int32 and sums.dtype == np.float64
    assert_array_equal(counts, [[2, 3], [0, 0], [1, 1]])
    assert_array_equal(sums, [[4.0, 6.0], [0.0, 0.0], [32.0, 32.0]])


def test_window_sums_all_nan_values_sum_to_zero():
    counts, sums = window_sums(
        np.array([1.0, 2.0]), np.array([NAN, NAN]), np.array([0, 2]), end=3.0, windows=[5.0]
    )
    assert counts.tolist() == [[2]] and sums.tolist() == [[0.0]]


@pytest.mark.parametrize("seed", SEEDS)
def test_window_sums_ref_is_the_definition(seed):
    t, values, offsets = random_layout(seed, n_segments=60)
    counts, sums = window_sums_ref(t, values, offsets, end=700.0, windows=WINDOWS)
    want_counts, want_sums = window_sums_loop(t, values, offsets, 700.0, WINDOWS)
    assert_array_equal(counts, want_counts)
    assert_allclose(sums, want_sums, rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_window_sums_cpu_path_equals_ref(seed):
    t, values, offsets = random_layout(seed)
    got = window_sums(t, values, offsets, end=650.0, windows=WINDOWS)
    want = window_sums_ref(t, values, offsets, end=650.0, windows=WINDOWS)
    assert_array_equal(got.counts, want.counts)
    assert_array_equal(got.sums, want.sums)


def test_window_sums_no_windows():
    one = np.array([1.0])
    counts, sums = window_sums(one, one, np.array([0, 1]), end=2.0, windows=[])
    assert counts.shape == sums.shape == (1, 0)


# ---------------------------------------------------------------- monthly_slope


def test_monthly_slope_hand():
    # 3 bins of 10 days before end=30: [0, 10), [10, 20), [20, 30)
    # segment 0: -0.1 before the range, bins 0, 1, 2, 2; 30 is end (excluded) -> counts 1, 1, 2
    # segment 1: empty; segment 2: all rows out of range; segment 3: counts 3, 0, 0
    t = np.array([-0.1, 0.0, 15.0, 25.0, 29.9, 30.0, 31.0, 1.0, 2.0, 9.99])
    offsets = np.array([0, 6, 6, 7, 10])
    slope = monthly_slope(t, offsets, end=30.0, months=3, month_days=10.0)
    assert slope.dtype == np.float64
    assert_allclose(slope, [0.5, 0.0, 0.0, -1.5], rtol=1e-15)
    assert_allclose(slope[0], np.polyfit([0, 1, 2], [1, 1, 2], 1)[0], rtol=1e-12)


def test_monthly_slope_last_instant_stays_in_last_bin():
    # end - 7 * 30.4375 is inexact: the row just before end divides out to bin 7, clipped to 6.
    end = 100.1
    t = np.array([np.nextafter(end, -np.inf)])
    slope = monthly_slope(t, np.array([0, 1]), end=end, months=7, month_days=30.4375)
    assert_allclose(slope, [(6 - 3) / 28.0], rtol=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
def test_monthly_slope_ref_is_the_definition(seed):
    t, _, offsets = random_layout(seed, n_segments=60)
    got = monthly_slope_ref(t, offsets, end=700.0, months=12, month_days=30.0)
    assert_allclose(got, monthly_slope_loop(t, offsets, 700.0, 12, 30.0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("months, month_days", [(12, 30.0), (2, 7.5), (24, 30.4375)])
def test_monthly_slope_cpu_path_equals_ref(seed, months, month_days):
    t, _, offsets = random_layout(seed)
    kw = {"end": 600.0, "months": months, "month_days": month_days}
    assert_array_equal(monthly_slope(t, offsets, **kw), monthly_slope_ref(t, offsets, **kw))


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "offsets, error, match",
    [
        (np.array([1, 3]), ValueError, "offsets"),
        (np.array([0, 2]), ValueError, "offsets"),
        (np.array([0, 3, 2, 3]), ValueError, "decreasing=True"),
        (np.array([], dtype=np.int64), ValueError, "at least one"),
        (np.array([0.0, 3.0]), TypeError, "integers"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda t, o: gap_stats(t, o),
        lambda t, o: window_sums(t, t, o, end=1.0, windows=[1.0]),
        lambda t, o: monthly_slope(t, o, end=1.0),
    ],
    ids=["gap_stats", "window_sums", "monthly_slope"],
)
def test_bad_offsets_are_rejected(call, offsets, error, match):
    with pytest.raises(error, match=match):
        call(np.array([1.0, 2.0, 3.0]), offsets)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"windows": [30.0, 0.0]}, "positive"),
        ({"windows": [NAN]}, "positive"),
        ({"windows": [[1.0]]}, "1-D"),
        ({"end": NAN}, "finite"),
    ],
)
def test_window_sums_bad_arguments(kwargs, match):
    args = {"end": 10.0, "windows": [1.0]} | kwargs
    with pytest.raises(ValueError, match=match):
        window_sums(np.array([1.0]), np.array([1.0]), np.array([0, 1]), **args)


def test_window_sums_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        window_sums(np.array([1.0]), np.array([1.0, 2.0]), np.array([0, 1]), end=2, windows=[1])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"months": 1}, ValueError),
        ({"month_days": 0.0}, ValueError),
        ({"months": 2.5}, TypeError),
    ],
)
def test_monthly_slope_bad_arguments(kwargs, error):
    with pytest.raises(error):
        monthly_slope(np.array([1.0]), np.array([0, 1]), end=10.0, **kwargs)


def test_import_does_not_load_cupy():
    code = "import sys, kernels; sys.exit('cupy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_public_surface():
    assert sorted(kernels.__all__) == sorted(
        [
            "segment_offsets",
            "gap_stats",
            "window_sums",
            "monthly_slope",
            "GapStats",
            "WindowSums",
            "segment_offsets_ref",
            "gap_stats_ref",
            "window_sums_ref",
            "monthly_slope_ref",
        ]
    )


# ---------------------------------------------------------------- CuPy kernels (GPU only)


@pytest.fixture
def cupy():
    return pytest.importorskip("cupy")


def _to_device(cupy, *arrays):
    return tuple(cupy.asarray(a) for a in arrays)


@pytest.mark.gpu
@pytest.mark.parametrize("seed", SEEDS)
def test_segment_offsets_cupy_equals_ref(cupy, seed):
    _, _, offsets = random_layout(seed)
    keys = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    got = segment_offsets(cupy.asarray(keys))
    assert isinstance(got, cupy.ndarray) and got.dtype == np.int64
    assert_array_equal(got.get(), segment_offsets_ref(keys))


@pytest.mark.gpu
def test_segment_offsets_cupy_rejects_non_integer_keys(cupy):
    with pytest.raises(TypeError, match="integer codes"):
        segment_offsets(cupy.asarray([1.0, 1.0]))


@pytest.mark.gpu
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gap_stats_cupy_equals_ref(cupy, seed, dtype):
    t, _, offsets = random_layout(seed)
    t = t.astype(dtype)
    got = gap_stats(*_to_device(cupy, t, offsets))
    for g, want in zip(got, gap_stats_ref(t, offsets), strict=True):
        assert isinstance(g, cupy.ndarray) and g.dtype == np.float64
        assert_allclose(g.get(), want, rtol=1e-12)


@pytest.mark.gpu
def test_gap_stats_cupy_hand(cupy):
    t = np.array([0.0, 5.0, 5.0, 12.0, 40.0, 3.0, 4.5, 1.0, 2.0, 4.0, 8.0, 9.0])
    offsets = np.array([0, 4, 4, 5, 7, 12])
    for g, want in zip(gap_stats(*_to_device(cupy, t, offsets)), gap_stats_ref(t, offsets)):
        assert_allclose(g.get(), want, rtol=1e-12)
    empty = gap_stats(cupy.asarray(np.array([])), cupy.asarray(np.array([0])))
    assert all(a.shape == (0,) for a in empty)


@pytest.mark.gpu
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t_dtype, v_dtype", [(np.float64, np.float64), (np.float32, np.float32)])
def test_window_sums_cupy_equals_ref(cupy, seed, t_dtype, v_dtype):
    t, values, offsets = random_layout(seed)
    t, values = t.astype(t_dtype), values.astype(v_dtype)
    got = window_sums(*_to_device(cupy, t, values, offsets), end=650.0, windows=WINDOWS)
    want = window_sums_ref(t, values, offsets, end=650.0, windows=WINDOWS)
    assert isinstance(got.counts, cupy.ndarray) and got.counts.dtype == np.int32
    assert_array_equal(got.counts.get(), want.counts)
    assert_allclose(got.sums.get(), want.sums, rtol=1e-12)


@pytest.mark.gpu
def test_window_sums_cupy_edges(cupy):
    t = np.array([10.0, 70.0, 90.0, 95.0, 100.0, 120.0, 99.5])
    values = np.array([1.0, 2.0, 4.0, NAN, 8.0, 16.0, 32.0])
    offsets = np.array([0, 6, 6, 7])
    got = window_sums(*_to_device(cupy, t, values, offsets), end=100.0, windows=[10.0, 30.0])
    assert_array_equal(got.counts.get(), [[2, 3], [0, 0], [1, 1]])
    assert_array_equal(got.sums.get(), [[4.0, 6.0], [0.0, 0.0], [32.0, 32.0]])


@pytest.mark.gpu
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("months, month_days", [(12, 30.0), (24, 30.4375)])
def test_monthly_slope_cupy_equals_ref(cupy, seed, months, month_days):
    t, _, offsets = random_layout(seed)
    kw = {"end": 600.0, "months": months, "month_days": month_days}
    got = monthly_slope(*_to_device(cupy, t, offsets), **kw)
    assert isinstance(got, cupy.ndarray) and got.dtype == np.float64
    assert_allclose(got.get(), monthly_slope_ref(t, offsets, **kw), rtol=1e-12)


@pytest.mark.gpu
def test_cupy_rows_accept_host_offsets(cupy):
    t, _, offsets = random_layout(0)
    got = gap_stats(cupy.asarray(t), offsets)  # offsets moved to the device by the wrapper
    assert_allclose(got.mean.get(), gap_stats_ref(t, offsets).mean, rtol=1e-12)
