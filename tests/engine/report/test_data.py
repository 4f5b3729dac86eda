"""What the report reads from a run's outputs."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.layout import RunLayout, part_name
from engine.report import _data


def test_value_columns_stride_across_parts_as_over_one_table(tmp_path, monkeypatch):
    monkeypatch.setattr(_data, "_PLOT_ROWS", 1_000)
    customers = RunLayout(tmp_path).value.customers
    customers.mkdir(parents=True)
    clv = np.arange(7_003, dtype="float64")
    for number, (start, stop) in enumerate([(0, 2_501), (2_501, 2_502), (2_502, 7_003)]):
        rows = clv[start:stop]
        pq.write_table(pa.table({"clv": rows, "p_alive": rows / 7_003}), customers / part_name(number))
    read = _data.value_columns(tmp_path)
    assert np.array_equal(read["clv"], clv[::7]) and np.allclose(read["p_alive"], clv[::7] / 7_003)
