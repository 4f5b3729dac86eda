"""Our own compute kernels: NumPy references and CuPy twins side by side (STYLE 8).

Per-customer reductions that dataframe groupby APIs do poorly, written as segment reductions
over a customer-sorted partition: the rows are flat 1-D arrays in segment order and
``offsets`` (int64, length n_segments + 1) marks where each customer's rows start and end
(:func:`segment_offsets` makes it from the key column).

Every public function dispatches on the namespace of its row array: CuPy arrays run a CUDA
kernel (CuPy is imported only then, so this package imports without CUDA) and give CuPy
results; anything else runs on the CPU and gives NumPy results. Each ``*_ref`` function is the
NumPy reference that defines the result; the CPU and GPU paths are tested against it.
"""

from ._gaps import GapStats, gap_stats, gap_stats_ref
from ._offsets import segment_offsets, segment_offsets_ref
from ._slope import monthly_slope, monthly_slope_ref
from ._windows import WindowSums, window_sums, window_sums_ref

__all__ = [
    # segment layout
    "segment_offsets",
    # segment reductions
    "gap_stats",
    "window_sums",
    "monthly_slope",
    # result types
    "GapStats",
    "WindowSums",
    # NumPy references (the definitions the kernels are tested against)
    "segment_offsets_ref",
    "gap_stats_ref",
    "window_sums_ref",
    "monthly_slope_ref",
]
