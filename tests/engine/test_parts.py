"""write_part: text dictionary-encoded, the key alone with statistics, LZ4, the same rows back."""

import pandas as pd
import pyarrow.parquet as pq

from engine._parts import write_part


def test_a_part_keeps_its_rows_and_is_encoded_for_whole_reads(tmp_path):
    frame = pd.DataFrame({"customer_key": [f"k{n:03d}" for n in range(300)], "score": [n / 7 for n in range(300)],
                          "band": ["high", "low", "medium"] * 100})  # fmt: skip
    write_part(frame, tmp_path / "part-00000.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "part-00000.parquet"), frame, check_dtype=False)
    group = pq.ParquetFile(tmp_path / "part-00000.parquet").metadata.row_group(0)
    chunks = {chunk.path_in_schema: chunk for chunk in map(group.column, range(group.num_columns))}
    assert {name: chunk.compression for name, chunk in chunks.items()} == dict.fromkeys(chunks, "LZ4")
    assert [name for name, chunk in chunks.items() if chunk.is_stats_set] == ["customer_key"]
    assert [name for name, chunk in chunks.items() if chunk.has_dictionary_page] == ["band"]
    # An Arrow table is written as it is.
    write_part(pq.read_table(tmp_path / "part-00000.parquet"), tmp_path / "again.parquet")
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(tmp_path / "part-00000.parquet"))
