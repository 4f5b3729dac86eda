"""engine.backend._frames: array namespaces and graph components on either backend."""


import numpy as np
import pandas as pd

from engine.backend import (
    array_namespace,
    connected_components,
    frame_from_arrow,
    joined_on,
    positions_in,
    run_starts,
    to_host,
    to_host_array,
)


def test_array_namespace_follows_frames_and_arrays(backend):
    frame = backend.df.DataFrame({"a": [1.0, 2.0]})
    assert array_namespace(frame) is backend.xp
    assert array_namespace(frame["a"]) is backend.xp
    assert array_namespace(backend.xp.zeros(2)) is backend.xp
    assert array_namespace(np.zeros(2)) is np


def test_connected_components_number_each_vertex_by_its_component(backend):
    # Vertices 0-1-2 joined, 3 and 7 alone, 4-5, 6 with a loop onto itself.
    sources = backend.xp.asarray([0, 2, 4, 6])
    targets = backend.xp.asarray([1, 1, 5, 6])
    labels = to_host_array(connected_components(sources, targets, 8))
    assert labels.shape == (8,)
    groups = pd.Series(range(8)).groupby(labels).apply(list).sort_values().tolist()
    assert groups == [[0, 1, 2], [3], [4, 5], [6], [7]]


def test_positions_in_finds_each_value_among_the_keys_in_order(backend):
    import pyarrow as pa

    keys = frame_from_arrow(pa.table({"k": pa.array(["a", "c", "d", "f"], pa.large_string())}), backend.name)["k"]
    values = frame_from_arrow(pa.table({"k": ["f", "a", "a", "d", "c", "f"]}), backend.name)["k"]
    positions = positions_in(values, keys)
    assert array_namespace(positions) is backend.xp
    assert to_host_array(positions).tolist() == [3, 0, 0, 2, 1, 3]


def test_run_starts_marks_each_change_of_value(backend):
    import pyarrow as pa

    column = frame_from_arrow(pa.table({"k": ["a", "a", None, None, "b", "b", "a"]}), backend.name)["k"]
    starts = run_starts(column)
    assert array_namespace(starts) is backend.xp
    assert to_host_array(starts).tolist() == [True, False, True, True, True, False, True]
    for rows in ([], ["a"]):
        short = frame_from_arrow(pa.table({"k": pa.array(rows, pa.string())}), backend.name)["k"]
        assert to_host_array(run_starts(short)).tolist() == [True] * len(rows)


def test_joined_on_is_a_left_join_in_the_frames_order(backend):
    import pandas as pd
    import pyarrow as pa

    frame = frame_from_arrow(pa.table({"k": ["c", "a", "x", "b"], "v": [1.0, 2.0, 3.0, 4.0]}), backend.name)
    other = frame_from_arrow(pa.table({"k": ["a", "b", "c"], "n": [1, 2, 3], "flag": [True, False, True],
                                       "region": ["north", "south", None]}), backend.name)  # fmt: skip
    joined = to_host(joined_on(frame, other, "k")).sort_values("v").reset_index(drop=True)
    expected = to_host(frame).merge(to_host(other), on="k", how="left")
    pd.testing.assert_frame_equal(joined, expected)
    assert joined["n"].tolist()[:2] == [3, 1] and np.isnan(joined["n"][2])
    assert joined["flag"].isna().tolist() == [False, False, True, False]
    # Every key found: the columns keep their types; a name on both sides: the merge's suffixes.
    pd.testing.assert_frame_equal(to_host(joined_on(frame.iloc[[0, 1, 3]], other, "k")).reset_index(drop=True),
                                  to_host(frame.iloc[[0, 1, 3]]).merge(to_host(other), on="k", how="left"))  # fmt: skip
    both = to_host(joined_on(frame, other.rename(columns={"n": "v"}), "k"))
    assert sorted(both.columns) == ["flag", "k", "region", "v_x", "v_y"]
