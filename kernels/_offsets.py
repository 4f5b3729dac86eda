"""Segment boundaries from a customer-sorted key column.

No CUDA source here: finding run boundaries is one comparison and one compaction, which CuPy's
array operations already do at memory speed, so the reference logic runs unchanged on both
namespaces.
"""

from __future__ import annotations

import numpy as np

from ._common import cupy_module, is_cupy

__all__ = ["segment_offsets", "segment_offsets_ref"]


def _offsets(xp, keys):
    n_rows = keys.shape[0]
    # Row i starts a new segment when its key differs from row i-1's.
    starts = xp.flatnonzero(keys[1:] != keys[:-1]) + 1
    head = xp.zeros(1, dtype=np.int64)
    tail = xp.full(1, n_rows, dtype=np.int64)
    if n_rows == 0:
        return head
    return xp.concatenate([head, starts.astype(np.int64, copy=False), tail])


def _check_keys(keys):
    if keys.ndim != 1:
        raise ValueError(f"keys must be 1-D, got shape {keys.shape}")
    return keys


def segment_offsets_ref(keys) -> np.ndarray:
    """NumPy reference for :func:`segment_offsets`; it defines the result."""
    return _offsets(np, _check_keys(np.asarray(keys)))


def _segment_offsets_cupy(keys):
    cupy = cupy_module()
    keys = _check_keys(cupy.asarray(keys))
    if keys.dtype.kind not in "iub":
        raise TypeError(
            f"CuPy keys must be integer codes, got dtype {keys.dtype} "
            "(factorize string keys first, e.g. cudf's .codes)"
        )
    return _offsets(cupy, keys)


def segment_offsets(keys):
    """Boundaries of the runs of equal keys in a grouped key column.

    Parameters
    ----------
    keys : ndarray, shape (n_rows,)
        The customer key of every row, with equal keys contiguous (the customer-sorted
        partition; only grouping matters, the order of the groups does not, and it is not
        checked). A NumPy array (or anything ``numpy.asarray`` accepts) may hold integers or
        strings; a CuPy array must hold integer codes. Keys must not be missing: NaN never
        equals itself, so each NaN row would become its own segment.

    Returns
    -------
    offsets : ndarray of int64, shape (n_segments + 1,)
        ``offsets[0] == 0``, ``offsets[-1] == n_rows``, strictly increasing: segment ``i`` is
        rows ``offsets[i]:offsets[i + 1]``. An empty ``keys`` gives ``[0]`` (no segments).
        Same namespace as ``keys``.
    """
    if is_cupy(keys):
        return _segment_offsets_cupy(keys)
    return segment_offsets_ref(keys)
