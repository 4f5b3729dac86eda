"""Reading the store ingest wrote: its metadata, one part of a table, the default as-of.

Every stage after ingest reads the store through these, so what the store's files look like
is known here, in ``_store`` (which writes them) and in ``_append`` (which adds to them) only.

A part is ``<table>/part-NNNNN.parquet`` and the delta files ``segscale update`` added to it,
``<table>/_deltas/part-NNNNN/NNNNNN.parquet`` (oldest first; the leading underscore keeps
them out of any reader that lists the table's directory). Each delta holds new rows in the
store's order among themselves; :func:`read_part` merges them into the part's order, stored
rows first where they tie, which is the order a full ingest of the old inputs and then the
new gives. Appending a small file instead of rewriting a part keeps an update's cost to the
rows it brings.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..contract import TABLES
from ..exceptions import InputDataError
from ..layout import StoreLayout
from ._pseudonym import KEY_WIDTH, key_bytes
from ._store import sort_order

__all__ = [
    "default_as_of", "delta_files", "first_transaction", "has_amounts", "latest_ts", "next_delta_file", "read_part",
    "read_store_files", "read_store_meta", "read_store_table", "rows_of", "store_part_files", "stored_order",
]  # fmt: skip

logger = logging.getLogger(__name__)

# Parquet stores these dictionary-encoded: reading them so skips building strings.
_DICTIONARY_COLUMNS = ("category", "channel", "event_type")


def read_store_meta(store: str | os.PathLike) -> dict:
    """The store's ``_store.json``: partitions, tables with their columns, rows and time span.

    Raises
    ------
    InputDataError
        ``store`` is not a store, or one without a transactions table.
    """
    layout = StoreLayout(store)
    if not layout.meta.exists():
        raise InputDataError(f"{layout.root}: not a segscale store (no {layout.meta.name}); run segscale ingest first")
    meta = json.loads(layout.meta.read_text())
    if "transactions" not in meta.get("tables", {}):
        raise InputDataError(f"{layout.meta}: the store has no transactions table")
    return meta


def default_as_of(store: str | os.PathLike, meta: dict | None = None) -> date:
    """The as-of date a run without one uses: the day after the store's last transaction."""
    meta = meta if meta is not None else read_store_meta(store)
    latest = meta["tables"]["transactions"].get("max_ts")
    if latest is None:
        raise InputDataError(f"{store}: the store holds no transactions, so it has no default as_of; nothing to compute from")
    as_of = datetime.fromisoformat(latest).date() + timedelta(days=1)
    logger.info("no as_of given: using %s, the day after the store's last transaction", as_of)
    return as_of


def first_transaction(meta: dict) -> datetime | None:
    """When the store's first transaction was (UTC), from its metadata; None without any."""
    earliest = meta["tables"]["transactions"].get("min_ts")
    return None if earliest is None else datetime.fromisoformat(earliest)


def has_amounts(meta: dict) -> bool:
    """Whether the store's transactions carry amounts; False for a counts-only source, whose
    ``amount`` column is all null (unknown, never 0). Stores written before the flag have them."""
    return bool(meta.get("has_amount", True))


def _is_text(arrow_type) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _delta_directory(part: str | os.PathLike) -> Path:
    return Path(part).parent / "_deltas" / Path(part).stem


def delta_files(part: str | os.PathLike) -> list[Path]:
    """The delta files of the store part ``part``, oldest first; none for a part without."""
    directory = _delta_directory(part)
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


def next_delta_file(part: str | os.PathLike) -> Path:
    """Where the next delta file of the store part ``part`` goes: after every one it has."""
    return _delta_directory(part) / f"{len(delta_files(part)) + 1:06d}.parquet"


def latest_ts(part: str | os.PathLike) -> pa.Scalar | None:
    """The latest ``ts`` of a store part and its deltas, from the files' column statistics
    (nothing decoded); None where a file has no ``ts`` statistics to tell."""
    latest = None
    for path in store_part_files(part):
        parquet = pq.ParquetFile(path)
        if "ts" not in parquet.schema_arrow.names:
            return None
        column = parquet.schema_arrow.get_field_index("ts")
        for group in range(parquet.metadata.num_row_groups):
            row_group = parquet.metadata.row_group(group)
            if row_group.num_rows == 0:
                continue
            statistics = row_group.column(column).statistics
            if statistics is None or not statistics.has_min_max:
                return None
            high = pa.scalar(statistics.max, type=parquet.schema_arrow.field("ts").type)
            latest = high if latest is None or pc.greater(high, latest).as_py() else latest
    return latest


def _fixed_width_keys(keys: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """The keys as a NumPy array of fixed-width bytes, which sorts as the text does; None
    unless every key has the width pseudonymous keys have."""
    text = key_bytes(keys)
    return None if text is None else text.view(f"S{KEY_WIDTH}").ravel()


def _runs(stored_keys: np.ndarray, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each of the sorted distinct ``customers`` has its rows among the sorted
    ``stored_keys``: the first row, the row count, and every such row's position in order."""
    low, high = np.searchsorted(stored_keys, customers, "left"), np.searchsorted(stored_keys, customers, "right")
    runs = high - low
    return low, runs, np.repeat(low - np.cumsum(runs) + runs, runs) + np.arange(runs.sum())


def rows_of(stored_keys: pa.ChunkedArray | pa.Array, customers: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Positions, in order, of the rows of a store part (its ``customer_key`` column) that
    belong to ``customers``: found by binary search in the sorted keys, without hashing them."""
    stored, wanted = _fixed_width_keys(stored_keys), _fixed_width_keys(customers)
    if stored is None or wanted is None:
        wanted_keys = pc.unique(customers).cast(stored_keys.type)
        return np.flatnonzero(pc.is_in(stored_keys, value_set=wanted_keys).to_numpy(zero_copy_only=False))
    return _runs(stored, np.unique(wanted))[2]


def stored_order(table: str, names) -> list[str]:
    """The columns of ``names`` that the store's rows of ``table`` are sorted by, in order, the
    key as text (ingest's phase 2 sorts by its number, the same order)."""
    return [column for column in ("customer_key", *sort_order(table)[1:]) if column in names]


def _merged_order(stored: pa.Table, added: pa.Table, sort_keys: list[str]) -> np.ndarray:
    """Positions in ``stored`` + ``added`` (concatenated) of the rows in the part's order.

    Only the customers of ``added`` are sorted again (their stored rows and new ones, a stable
    sort: stored rows first where they tie); every other customer's rows stay where they are.
    """
    by = [(column, "ascending") for column in sort_keys]
    stored_keys, added_keys = _fixed_width_keys(stored["customer_key"]), _fixed_width_keys(added["customer_key"])
    if stored_keys is None or added_keys is None:  # keys ingest did not make: sort the lot
        return pc.sort_indices(pa.concat_tables([stored, added]), sort_keys=by).to_numpy()
    customers = np.unique(added_keys)
    low, runs, theirs = _runs(stored_keys, customers)
    kept = np.ones(stored.num_rows, dtype=bool)
    kept[theirs] = False
    block = pa.concat_tables([stored.take(theirs), added])
    order = pc.sort_indices(block, sort_keys=by).to_numpy()
    positions = np.concatenate([theirs, stored.num_rows + np.arange(added.num_rows)])[order]
    # Each customer's sorted rows go where its stored run began, among the rows kept.
    customer = np.searchsorted(customers, np.concatenate([stored_keys[theirs], added_keys])[order])
    return np.insert(np.flatnonzero(kept), (low - (np.cumsum(runs) - runs))[customer], positions)


def read_part(part: str | os.PathLike, table: str, columns=None, where=None, dictionary_columns=()) -> pa.Table:
    """The rows of store part ``part`` of ``table`` and of its delta files, in the part's order.

    ``columns`` (None: all), ``where`` (a dataset filter) and ``dictionary_columns`` (text read
    dictionary-encoded) apply to every file; the sort columns a merge needs are read too.
    """
    deltas = delta_files(part)
    reader = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(dictionary_columns)))
    wanted = list(columns) if columns is not None else pq.read_schema(part).names
    if not deltas:  # most parts: one file, read as it is
        return ds.dataset(part, format=reader).to_table(columns=wanted, filter=where)
    sort_keys = stored_order(table, pq.read_schema(part).names)
    needed = wanted + [c for c in sort_keys if c not in wanted]
    pieces = [ds.dataset(path, format=reader).to_table(columns=needed, filter=where) for path in [part, *deltas]]
    stored, added = pieces[0], pa.concat_tables(pieces[1:])
    if not added.num_rows:
        return stored.select(wanted)
    both = pa.concat_tables([stored, added.cast(stored.schema)]).unify_dictionaries()
    return _in_order(both.select(wanted), _merged_order(stored, added, sort_keys))


def _in_order(table: pa.Table, order: np.ndarray) -> pa.Table:
    """``table.take(order)``, copied a run at a time where ``order`` mostly counts up by one, as
    a merge of a few new rows leaves it: copying runs costs less than gathering every row's
    values one by one (text above all)."""
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    if not len(order) or len(breaks) > len(order) // 64:
        return table.take(order)
    starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(order)]])
    return pa.concat_tables([table.slice(order[s], e - s) for s, e in zip(starts, ends)]).combine_chunks()


def _before(schema: pa.Schema, table: str, as_of_us: int | None):
    """The dataset filter ``ts < as-of`` for a store file of ``table`` (None: no filter)."""
    if as_of_us is None or "ts" not in schema.names:
        return None
    # A typed scalar: comparing a tz-aware column with a naive literal is an error in Arrow.
    where = ds.field("ts") < pa.scalar(as_of_us, type=pa.timestamp("us", tz="UTC"))
    if table in TABLES and "ts" in TABLES[table].optional:
        where = where | ds.field("ts").is_null()
    return where


def _in_micros(data: pa.Table) -> pa.Table:
    """Every timestamp column as int64 microseconds (UTC)."""
    for name in data.column_names:
        if pa.types.is_timestamp(data.schema.field(name).type):
            micros = pc.cast(pc.cast(data[name], pa.timestamp("us", tz="UTC")), pa.int64())
            data = data.set_column(data.schema.get_field_index(name), name, micros)
    return data


def read_store_table(store: str | os.PathLike, table: str, number: int, columns, as_of_us: int | None) -> pa.Table:
    """Part ``number`` of a store table as a pyarrow Table, rows before as-of only.

    With ``as_of_us`` None every row is read. A table without ``ts`` (customers, outcomes)
    is read whole whatever the as-of; where ``ts`` is optional (suppressions), rows without
    one are read too: an undated suppression is not known to come after as-of.
    ``ts`` (and any other timestamp column) comes back as int64 microseconds (UTC);
    ``category``, ``channel`` and ``event_type`` come back dictionary-encoded, which the
    backends read as categoricals. Rows ``segscale update`` appended are merged in order.
    """
    path = StoreLayout(store).table_part(table, number)
    schema = pq.read_schema(path)
    present = [c for c in columns if c in schema.names] if columns is not None else schema.names
    coded = [c for c in _DICTIONARY_COLUMNS if c in present and _is_text(schema.field(c).type)]
    return _in_micros(read_part(path, table, present, _before(schema, table, as_of_us), coded).unify_dictionaries())


def read_store_files(paths: list[Path], table: str, columns, as_of_us: int | None) -> pa.Table:
    """The rows of some of a store part's files (`store_part_files`), as `read_store_table`
    reads them, sorted by the part's order: for reading only the files a part gained."""
    schema = pq.read_schema(paths[0])
    present = [c for c in columns if c in schema.names]
    wanted = pa.schema([schema.field(c) for c in present])
    where = _before(schema, table, as_of_us)
    data = pa.concat_tables([ds.dataset(path).to_table(columns=present, filter=where).cast(wanted) for path in paths])
    by = [(column, "ascending") for column in stored_order(table, present)]
    return _in_micros(data.take(pc.sort_indices(data, sort_keys=by)))


def store_part_files(part: str | os.PathLike) -> list[Path]:
    """A store part's files: the part and its delta files, oldest first."""
    return [Path(part), *delta_files(part)]
