"""Frames and arrays between Arrow, pandas or cuDF, and NumPy or CuPy; graph components.

Partition functions call these on their input, so the same function runs on both backends
without being told which one it is on.
"""

from __future__ import annotations

from types import ModuleType

__all__ = [
    "array_namespace", "connected_components", "dataframe_namespace", "frame_from_arrow", "frame_to_arrow",
    "joined_on", "positions_in", "run_starts", "to_array", "to_host", "to_host_array",
]  # fmt: skip


def dataframe_namespace(frame) -> ModuleType:
    """The dataframe module a frame or series belongs to: cudf or pandas (STYLE 3).

    Partition functions call this on their input, so the same function runs on both backends
    without being told which one it is on.
    """
    if type(frame).__module__.split(".")[0] == "cudf":
        import cudf

        return cudf
    import pandas

    return pandas


def array_namespace(data) -> ModuleType:
    """The array module matching a frame, series or array: cupy for cuDF and CuPy, else numpy."""
    if type(data).__module__.split(".")[0] in ("cudf", "cupy"):
        import cupy

        return cupy
    import numpy

    return numpy


def frame_from_arrow(table, backend_name: str, *, arrow_strings: bool = True):
    """A pyarrow Table as a dataframe of the backend: cudf on ``gpu``; pandas on ``cpu``.

    On the CPU, strings stay Arrow-backed (no Python objects) and dictionary columns become
    pandas categoricals; with ``arrow_strings=False`` the frame gets the dtypes pandas' own
    Parquet reader would give it. On the GPU the columns move to the device once.
    """
    if backend_name == "gpu":
        import cudf

        return cudf.DataFrame.from_arrow(table)
    if not arrow_strings:
        return table.to_pandas()
    import pandas
    import pyarrow

    def arrow_strings_of(arrow_type):
        if pyarrow.types.is_string(arrow_type) or pyarrow.types.is_large_string(arrow_type):
            return pandas.ArrowDtype(arrow_type)
        return None

    return table.to_pandas(types_mapper=arrow_strings_of)


def frame_to_arrow(frame):
    """A pandas or cuDF frame as a pyarrow Table in host memory, without its index (a pyarrow
    Table as it is)."""
    if type(frame).__module__.startswith("pyarrow"):
        return frame
    if dataframe_namespace(frame).__name__ == "cudf":
        return frame.to_arrow(preserve_index=False)
    import pyarrow

    return pyarrow.Table.from_pandas(frame, preserve_index=False)


def positions_in(values, keys):
    """The position in ``keys`` (a series of distinct values) of each of ``values`` (a series
    of the same backend, every value among the keys), as int64 in the frames' array namespace.

    pandas: Arrow's hash lookup, a few ms for a partition's keys where a merge of two frames
    on text took 13; cuDF: a merge, then the rows put back in order (a GPU merge does not
    keep it).
    """
    namespace = dataframe_namespace(values)
    if namespace.__name__ == "cudf":
        located = values.reset_index(drop=True).to_frame(name="_value")
        located["_row"] = namespace.Series(range(len(values)), dtype="int64")
        table = keys.reset_index(drop=True).to_frame(name="_value")
        table["_position"] = namespace.Series(range(len(keys)), dtype="int64")
        located = located.merge(table, on="_value", how="left").sort_values("_row")
        return located["_position"].to_cupy()
    import pyarrow
    import pyarrow.compute

    wanted = pyarrow.array(values)
    positions = pyarrow.compute.index_in(wanted, value_set=pyarrow.array(keys).cast(wanted.type))
    return positions.to_numpy(zero_copy_only=False).astype("int64")


def run_starts(values):
    """True where a value of the series ``values`` differs from the one before it (missing
    values differ from everything), and on the first row: where each run of equal values
    starts, as a bool array of the frames' array namespace.

    pandas: Arrow compares each value with its neighbour in place, where the series against
    its shift made a shifted copy of the text first (6.5 to 4.8 ms for 480k keys);
    cuDF: the series against its shift.
    """
    if dataframe_namespace(values).__name__ == "cudf":
        return to_array(values.ne(values.shift()), "bool", na_value=True)
    import numpy
    import pyarrow
    import pyarrow.compute

    array = pyarrow.array(values)
    starts = numpy.ones(len(array), dtype=bool)
    if len(array) > 1:
        differs = pyarrow.compute.not_equal(array[1:], array[:-1])
        starts[1:] = differs.fill_null(True).to_numpy(zero_copy_only=False)
    return starts


def joined_on(frame, other, key: str):
    """``frame`` with the other columns of ``other`` (one row per ``key``) joined on ``key``:
    a left join, missing values where ``other`` has no row for a key.

    pandas: each key found by Arrow's hash lookup, then ``other``'s columns taken by position
    and filled as a merge fills them (integers become floats, booleans objects), beside
    ``frame``'s own; a merge hashed the text keys of both sides and copied ``frame`` (15 ms a
    partition of 24k customers against 5). Where a column name is on both sides, and on cuDF,
    a merge.
    """
    namespace = dataframe_namespace(frame)
    added = [column for column in other.columns if column != key]
    if namespace.__name__ == "cudf" or set(added) & set(frame.columns):
        return frame.merge(other, on=key, how="left")
    import pyarrow
    import pyarrow.compute

    keys = pyarrow.array(frame[key])
    found = pyarrow.compute.index_in(keys, value_set=pyarrow.array(other[key]).cast(keys.type))
    columns = other[added].reset_index(drop=True).reindex(found.fill_null(-1).to_numpy(zero_copy_only=False))
    return namespace.concat([frame.reset_index(drop=True), columns.reset_index(drop=True)], axis=1)


def to_array(series, dtype=None, na_value=None):
    """A column (or frame) as an array of its backend's array namespace: CuPy for cuDF, else NumPy.

    ``na_value`` fills missing values. On cuDF the cast comes first: cuDF fills nulls in the
    column's own dtype and refuses a value that does not fit it (NaN into int64, -1 into the
    unsigned codes of a categorical, NaN into datetimes; RAPIDS 26.06 ``core/frame.py:863-870``).
    """
    if hasattr(series, "to_cupy"):
        if dtype is not None:
            dtypes = [series.dtype] if hasattr(series, "dtype") else list(series.dtypes)
            if any(str(current) != str(dtype) for current in dtypes):
                if hasattr(series, "dtype") and str(series.dtype).startswith("datetime64"):
                    series = series.astype("int64")  # cuDF casts times to numbers through int64 only
                series = series.astype(dtype)
        return series.to_cupy(na_value=na_value)
    if na_value is None:
        return series.to_numpy(dtype=dtype)
    return series.to_numpy(dtype=dtype, na_value=na_value)


def to_host(frame):
    """A cuDF frame, series or index copied to pandas; a pandas one as it is."""
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def to_host_array(array):
    """A CuPy array copied to NumPy; anything else as a NumPy array."""
    import numpy

    return array.get() if hasattr(array, "get") else numpy.asarray(array)


def connected_components(sources, targets, vertices: int):
    """The component of every vertex of the undirected graph with edges ``sources[i]-targets[i]``.

    Parameters
    ----------
    sources, targets : array of int, shape (edges,)
        Vertex numbers in ``0..vertices-1``; NumPy, or CuPy for the GPU.
    vertices : int

    Returns
    -------
    array of int, shape (vertices,)
        Component numbers, of the inputs' array namespace. SciPy's csgraph solves NumPy input;
        CuPy input is solved on the device by CuPy's csgraph, which calls cuGraph
        (``pylibcugraph``), with the same interface.
    """
    if array_namespace(sources).__name__ == "cupy":
        import cupy as xp
        from cupyx.scipy.sparse import coo_matrix
        from cupyx.scipy.sparse.csgraph import connected_components as solve
    else:
        import numpy as xp
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components as solve
    weights = xp.ones(len(sources), dtype=xp.float32)
    graph = coo_matrix((weights, (sources, targets)), shape=(vertices, vertices)).tocsr()
    _, labels = solve(graph, directed=False)
    return labels
