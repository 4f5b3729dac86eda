"""Store parts with delta files: read in the order a full ingest of every row would give."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from engine.ingest import read_store_table
from engine.ingest._append import commit
from engine.ingest._pseudonym import key_text
from engine.ingest._stored import delta_files, read_part
from engine.layout import StoreLayout

ORDER = [("customer_key", "ascending"), ("ts", "ascending"), ("order_id", "ascending")]


def _rows(rng, count: int, customers: np.ndarray, first_id: int) -> pa.Table:
    """Transactions of ``customers`` in the store's order, few times so that rows tie."""
    rows = pa.table({
        "customer_key": key_text(rng.choice(customers, count)),
        "ts": pa.array(rng.integers(0, 20, count) * 86_400_000_000, pa.timestamp("us", tz="UTC")),
        "order_id": pa.array(rng.choice(["a", "b"], count)),
        "category": pa.array(rng.choice(["shoes", "toys", "food"], count)),
        "row": pa.array(np.arange(first_id, first_id + count)),
    })  # fmt: skip
    return rows.take(pc.sort_indices(rows, sort_keys=ORDER))


@pytest.fixture
def store(tmp_path):
    """A part of 5,000 rows and two deltas: of its customers, of new ones, tying with stored rows."""
    rng = np.random.default_rng(3)
    customers = rng.integers(0, 2**63, 400).astype(np.uint64)
    layout = StoreLayout(tmp_path)
    part = layout.table_part("transactions", 0)
    part.parent.mkdir(parents=True)
    pieces = [_rows(rng, 5_000, customers, 0)]
    pq.write_table(pieces[0], part, store_schema=False)
    newcomers = rng.integers(0, 2**63, 5).astype(np.uint64)
    for number in (1, 2):
        pieces.append(_rows(rng, 300, np.concatenate([customers[:40], newcomers]), 10_000 * number))
        delta = part.parent / "_deltas" / part.stem / f"{number:06d}.parquet"
        delta.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pieces[-1], delta, store_schema=False)
    every = pa.concat_tables(pieces)
    # Arrow's sort is stable: stored rows, then the first delta's, then the second's, where they tie.
    return layout, every.take(pc.sort_indices(every, sort_keys=ORDER))


def test_a_part_and_its_deltas_read_as_one_sorted_part(store):
    layout, expected = store
    merged = read_part(layout.table_part("transactions", 0), "transactions")
    assert merged["row"].to_pylist() == expected["row"].to_pylist()
    assert merged["customer_key"].to_pylist() == expected["customer_key"].to_pylist()


def test_a_few_new_rows_are_merged_by_runs_of_the_stored_part(tmp_path):
    rng = np.random.default_rng(4)
    customers = rng.integers(0, 2**63, 400).astype(np.uint64)
    part = StoreLayout(tmp_path).table_part("transactions", 0)
    (part.parent / "_deltas" / part.stem).mkdir(parents=True)
    stored, added = _rows(rng, 5_000, customers, 0), _rows(rng, 6, customers[:3], 10_000)
    pq.write_table(stored, part, store_schema=False)
    pq.write_table(added, part.parent / "_deltas" / part.stem / "000001.parquet", store_schema=False)
    every = pa.concat_tables([stored, added])
    expected = every.take(pc.sort_indices(every, sort_keys=ORDER))
    merged = read_part(part, "transactions", ["row", "category"])
    assert merged.column_names == ["row", "category"] and merged["row"].num_chunks == 1
    assert merged["row"].to_pylist() == expected["row"].to_pylist()
    assert merged["category"].to_pylist() == expected["category"].to_pylist()


def test_columns_and_filters_apply_to_the_deltas_too(store):
    layout, expected = store
    late = pa.scalar(10 * 86_400_000_000, pa.timestamp("us", tz="UTC"))
    read = read_part(layout.table_part("transactions", 0), "transactions", ["row"], ds.field("ts") >= late)
    assert read.column_names == ["row"]
    assert read["row"].to_pylist() == expected.filter(pc.greater_equal(expected["ts"], late))["row"].to_pylist()
    # The stages' reader: as-of, timestamps as microseconds, categories dictionary-encoded.
    table = read_store_table(layout.root, "transactions", 0, ["customer_key", "ts", "category"], 10 * 86_400_000_000)
    before = expected.filter(pc.less(expected["ts"], late))
    assert table["customer_key"].to_pylist() == before["customer_key"].to_pylist()
    assert pa.types.is_dictionary(table.schema.field("category").type)
    assert table["category"].to_pylist() == before["category"].to_pylist()


def test_keys_that_are_not_pseudonyms_still_merge_in_order(tmp_path):
    part = tmp_path / "events" / "part-00000.parquet"
    (part.parent / "_deltas" / part.stem).mkdir(parents=True)
    pq.write_table(pa.table({"customer_key": ["a", "c", "c"], "ts": [1, 1, 2]}), part)
    pq.write_table(pa.table({"customer_key": ["b", "c"], "ts": [5, 1]}), part.parent / "_deltas" / part.stem / "000001.parquet")
    merged = read_part(part, "events")
    assert list(zip(merged["customer_key"].to_pylist(), merged["ts"].to_pylist())) == [
        ("a", 1), ("b", 5), ("c", 1), ("c", 1), ("c", 2)]  # fmt: skip


def test_a_commit_renames_the_staged_files_then_removes_the_deltas_of_rewritten_parts(store, tmp_path):
    layout, _ = store
    part = layout.table_part("transactions", 0)
    staged = tmp_path / "staged.parquet"
    pq.write_table(read_part(part, "transactions"), staged)
    (tmp_path / "update").mkdir()
    commit(tmp_path / "update", [(str(staged), str(part))], [str(path) for path in delta_files(part)])
    assert not staged.exists() and delta_files(part) == []
    assert pq.read_table(part).num_rows == 5_600
    assert commit(tmp_path / "update")  # run again (a crash after it): nothing left to do, nothing breaks
