"""Reading the store ingest wrote: its metadata, one part of a table, the default as-of.

Every stage after ingest reads the store through these, so what the store's files look like
is known here and in ``_store`` (which writes them) only.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..contract import TABLES
from ..exceptions import InputDataError
from ..layout import StoreLayout

__all__ = ["default_as_of", "first_transaction", "has_amounts", "read_store_meta", "read_store_table"]

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


def read_store_table(store: str | os.PathLike, table: str, number: int, columns, as_of_us: int | None) -> pa.Table:
    """Part ``number`` of a store table as a pyarrow Table, rows before as-of only.

    With ``as_of_us`` None every row is read. A table without ``ts`` (customers, outcomes)
    is read whole whatever the as-of; where ``ts`` is optional (suppressions), rows without
    one are read too: an undated suppression is not known to come after as-of.
    ``ts`` (and any other timestamp column) comes back as int64 microseconds (UTC);
    ``category``, ``channel`` and ``event_type`` come back dictionary-encoded, which the
    backends read as categoricals.
    """
    path = StoreLayout(store).table_part(table, number)
    schema = pq.read_schema(path)
    present = [c for c in columns if c in schema.names] if columns is not None else schema.names
    coded = [c for c in _DICTIONARY_COLUMNS if c in present and _is_text(schema.field(c).type)]
    reader = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=coded))
    where = None
    if as_of_us is not None and "ts" in schema.names:
        # A typed scalar: comparing a tz-aware column with a naive literal is an error in Arrow.
        where = ds.field("ts") < pa.scalar(as_of_us, type=pa.timestamp("us", tz="UTC"))
        if table in TABLES and "ts" in TABLES[table].optional:
            where = where | ds.field("ts").is_null()
    data = ds.dataset(path, format=reader).to_table(columns=present, filter=where).unify_dictionaries()
    for name in data.column_names:
        if pa.types.is_timestamp(data.schema.field(name).type):
            micros = pc.cast(pc.cast(data[name], pa.timestamp("us", tz="UTC")), pa.int64())
            data = data.set_column(data.schema.get_field_index(name), name, micros)
    return data
