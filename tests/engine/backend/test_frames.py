"""engine.backend._frames: array namespaces and graph components on either backend."""


import numpy as np
import pandas as pd

from engine.backend import (
    array_namespace,
    connected_components,
    frame_from_arrow,
    positions_in,
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
