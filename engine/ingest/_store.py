"""The customer-clustered store, written in two phases so memory stays bounded by partition.

Phase 1, per input partition: validate, send invalid rows (original text and a reason) to
quarantine, drop direct identifiers, give valid rows their pseudonymous customer key and store
partition, and write them as one bucket file whose shard N holds store partition N's rows.
Phase 2, per store partition: read that shard from every bucket file, sort by (customer key,
timestamp), drop exact duplicates (unless the input keeps them), set sensitive columns apart,
and write one part per table. A customer's rows therefore sit in the same part number in
every table.

Bucket files are staging, written once and read once. The number of files grows with the
input alone; a file per (input partition, store partition) grew with their product, and at
4M customers phase 1 spent most of its time creating ~160k small Parquet files that phase 2
then opened one by one. Shards still number files x partitions, both growing with the data
(504k at 10M customers), so a shard is cheap to find and read: each is an Arrow IPC stream
compressed whole with zstd, and the file ends with an index of where each lies, so a reader
makes three reads at known offsets and one decompression. As an IPC file with a batch per
shard, compressed buffer by buffer, a shard cost ~0.7 ms to open and read, which made phase 2
at 10M customers spend over 10 minutes in it. Compressed, buckets take 4x less disk than raw
Arrow, which took 7x the Parquet inputs and filled a 51 GB disk at 10M customers.

What a bucket row holds is what phase 2 needs and no more, because every byte of it is
gathered twice (into batch order, then into key order), compressed, written and read: the
customer key as its 64-bit value (``_key_order``), which sorts as its text does and becomes
text only when phase 2 writes it; text columns that are not sort keys dictionary-encoded
(an event type is four bytes, not its text, in every gather); the source row's fingerprint;
not the source customer id, which the accounts bucket maps to the key once per account. Phase 2 works on those Arrow tables in host
memory on both backends: its work is a sort and a gather between files it reads and writes,
and its time went to pandas' multi-column sort and hash-based duplicate search (1.6 s of a
1.4M-row partition, against 0.9 s now).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy
import pandas
import pyarrow
import pyarrow.compute
import pyarrow.ipc
import pyarrow.parquet

from ..backend import array_namespace, dataframe_namespace, frame_from_arrow, frame_to_arrow, to_array, to_host
from ..layout import IngestLayout, part_name
from ._pseudonym import key_order, key_text, pseudonymise
from ._validate import SUPPRESSION_REASON, as_text, validate_partition

__all__ = [
    "SENSITIVE_TABLE",
    "FINGERPRINT",
    "KEY_ORDER",
    "ACCOUNTS",
    "attach_keys",
    "bucket_rows",
    "bucket_table",
    "reduce_bucket",
    "reduce_accounts",
    "row_fingerprints",
    "sort_order",
]

SENSITIVE_TABLE = "customers_sensitive"
# Bucket of (customer_id, customer_key) pairs seen by phase 1, for the identity map.
ACCOUNTS = "_accounts"
# Bucket rows carry the fingerprint of their source row until duplicates are dropped.
FINGERPRINT = "_source_row"
# Bucket rows carry their key's 64-bit value, which sorts as the key's text does.
KEY_ORDER = "_key_order"
_CODEC = pyarrow.Codec("zstd")
# A bucket file's index: per store partition, where its shard starts, its compressed size and
# its size once decompressed; then the number of partitions, as the file's last 8 bytes.
_SHARD = numpy.dtype([("offset", "<i8"), ("size", "<i8"), ("raw_size", "<i8")])
_COUNT = numpy.dtype("<i8")


def _bucket_name(index: int) -> str:
    return f"part-{index:05d}.shards"


def _host(values):
    """A host-side list of str from a pandas or cuDF series."""
    return to_host(values).tolist()


def attach_keys(frame, merged, key: bytes, partitions: int, kept=None):
    """Give every row of ``frame`` its customer key (as its uint64 value) and store partition.

    ``merged`` (:class:`~engine.ingest._merged.MergedAccounts`) holds the accounts that
    identity resolution merged; every other account is its own customer. Work is done once
    per distinct account of the partition (a few thousand, against millions of event rows)
    and spread to the rows by position, so no frame-sized join or copy is made. Rows carry
    the key as a number until phase 2 writes them (see :func:`key_text`): its text would be
    gathered, compressed and read again for every row.

    Parameters
    ----------
    kept : boolean Series, optional
        The rows to key; the others (quarantined, perhaps without an id) get partition
        ``partitions``, one past the last, which no bucket batch holds. Default: every row.

    Returns
    -------
    keyed : DataFrame
        ``frame`` with ``KEY_ORDER`` (the key's uint64 value) and ``partition`` added.
    accounts : DataFrame
        ``customer_id``, ``customer_key`` (text), ``partition``: each distinct account of the
        kept rows once.

    Raises
    ------
    ValueError
        A kept row has no customer id (validation quarantines those before this).
    """
    namespace = dataframe_namespace(frame)
    codes, distinct = frame["customer_id"].factorize()
    xp = array_namespace(codes)
    keep = None if kept is None else to_array(kept, dtype=bool)
    used = codes if keep is None else codes[keep]
    if len(used) and int(used.min()) < 0:
        raise ValueError("attach_keys: rows without a customer id must be quarantined first")
    keys, partition = pseudonymise(merged.resolve(_host(distinct)), key, partitions)
    accounts = namespace.DataFrame({
        "customer_id": namespace.Series(distinct, dtype=frame["customer_id"].dtype),
        # Built with the id's dtype so the key keeps it even with no rows.
        "customer_key": namespace.Series(keys, dtype=frame["customer_id"].dtype),
        "partition": namespace.Series(partition, dtype="int32"),
    })  # fmt: skip
    # One value past the accounts' for the rows not kept.
    row_partition = namespace.Series(numpy.append(partition, partitions), dtype="int32")
    row_key = namespace.Series(numpy.append(key_order(keys), numpy.uint64(0)), dtype="uint64")
    if keep is not None:
        codes = xp.where(keep, codes, len(distinct))
        accounts = accounts.take(xp.unique(used)).reset_index(drop=True)
    keyed = frame.assign(**{
        KEY_ORDER: _spread(row_key, codes, frame.index),
        "partition": _spread(row_partition, codes, frame.index),
    })  # fmt: skip
    return keyed, accounts


def _spread(values, codes, index):
    """``values[codes]`` as a series on ``index``: per-account values given to their rows."""
    spread = values.take(codes)
    spread.index = index
    return spread


def row_fingerprints(raw):
    """A 64-bit hash of each whole source row: what "exact duplicate" is judged on.

    A row's hash depends on its values and the column types alone, so rows of different
    partitions of one input compare. On pandas, polars hashes the rows: pandas hashes text
    through an array of Python str objects (0.50 s for 1.5M event rows, against 0.08 s).
    """
    if dataframe_namespace(raw).__name__ == "cudf":
        return raw.hash_values(method="xxhash64")
    import polars

    table = pyarrow.Table.from_pandas(raw, preserve_index=False)
    # A categorical column hashes as its values, not as codes that differ between partitions.
    table = table.cast(pyarrow.schema([
        field.with_type(field.type.value_type) if pyarrow.types.is_dictionary(field.type) else field
        for field in table.schema
    ]))  # fmt: skip
    hashes = polars.from_arrow(table).hash_rows(seed=0).to_numpy() if table.num_columns else []
    return pandas.Series(hashes, index=raw.index, dtype="uint64")


def sort_order(table: str) -> tuple[str, ...]:
    """The columns a store table's rows are sorted by; rows alike on them keep input order."""
    if table in ("customers", "outcomes"):
        return (KEY_ORDER,)
    # order_id keeps the lines of an order adjacent when two orders share a timestamp.
    return (KEY_ORDER, "ts", "order_id") if table == "transactions" else (KEY_ORDER, "ts")


def bucket_rows(
    raw, index, *, table, rules, merged, key, partitions, staging, direct_identifiers=(), drop_duplicates=True
):
    """Phase 1 for input partition ``index``: quarantine, key and bucket its rows.

    ``direct_identifiers`` (columns naming a person) are dropped here, from the quarantine
    and the buckets alike: nothing after this reads them. With ``drop_duplicates`` false
    (``[inputs.<table>] duplicates = "none"``) every row is kept, and bucket rows carry no
    fingerprint: nothing compares them.

    Returns
    -------
    dict
        ``read``, ``quarantined`` (reason -> rows) and ``duplicates`` (among quarantined rows
        of this partition). Each bucket also gets the partition's (customer_id, customer_key)
        pairs, for the identity map.
    """
    staging = IngestLayout(staging)
    checked = validate_partition(raw, table, rules)
    invalid = checked["reason"].notna()
    rejected = as_text(raw[invalid.values])
    if table == "suppressions":  # its reason column keeps its value beside the quarantine's
        rejected = rejected.rename(columns={"reason": SUPPRESSION_REASON})
    rejected["reason"] = checked["reason"][invalid].values
    rejected = rejected.drop(columns=[c for c in direct_identifiers if c in rejected.columns])
    rejected_rows = len(rejected)
    if drop_duplicates:
        rejected = rejected.drop_duplicates()
    quarantined = rejected["reason"].value_counts()
    if len(rejected):
        target = staging.quarantine(table)
        target.mkdir(parents=True, exist_ok=True)
        rejected.to_parquet(target / part_name(index), index=False)

    # Quarantined rows stay in the frame, keyed to no partition: the bucket's one gather into
    # partition order leaves them out, where filtering them first was a gather of its own.
    direct = [c for c in direct_identifiers if c in checked.columns]
    rows = checked.drop(columns=["reason", *direct])
    if drop_duplicates:
        rows = rows.assign(**{FINGERPRINT: row_fingerprints(raw)})
    rows, accounts = attach_keys(rows, merged, key, partitions, kept=~invalid)
    _write_by_partition(bucket_table(rows.drop(columns=["customer_id"]), table), staging.buckets(table) / _bucket_name(index), partitions)
    _write_by_partition(frame_to_arrow(accounts), staging.buckets(ACCOUNTS) / f"{table}-{_bucket_name(index)}", partitions)
    return {
        "read": len(raw),
        "quarantined": {reason: int(n) for reason, n in zip(_host(quarantined.index), _host(quarantined))},
        "duplicates": rejected_rows - len(rejected),
    }


def bucket_table(frame, table: str) -> pyarrow.Table:
    """Keyed rows of ``table`` (pandas or cuDF) as the Arrow table a bucket holds: text
    columns that are not sort keys dictionary-encoded, so gathering them moves 4-byte codes."""
    rows = frame_to_arrow(frame).combine_chunks()
    keys = sort_order(table)
    for position, field in enumerate(rows.schema):
        text = pyarrow.types.is_string(field.type) or pyarrow.types.is_large_string(field.type)
        if text and field.name not in keys:
            rows = rows.set_column(position, field.name, pyarrow.compute.dictionary_encode(rows[field.name]))
    return rows


def _write_by_partition(table: pyarrow.Table, path: Path, partitions: int) -> None:
    """Write ``table`` as a bucket file whose shard N holds its rows with ``partition == N``.

    Rows of partition ``partitions`` (quarantined) are left out; a partition without rows
    has an empty shard. Rows keep their input order within a partition (Arrow's sort is
    stable). Shards are gathered one at a time: a sorted copy of the whole table would
    double it.
    """
    order = pyarrow.compute.sort_indices(table["partition"])
    sizes = numpy.bincount(table["partition"].to_numpy(), minlength=partitions)[:partitions]
    table = table.drop_columns(["partition"])
    index = numpy.zeros(partitions, dtype=_SHARD)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        start = position = 0
        for number, size in enumerate(sizes.tolist()):
            if size:
                sink = pyarrow.BufferOutputStream()
                with pyarrow.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table.take(order.slice(start, size)))
                raw = sink.getvalue()
                shard = _CODEC.compress(raw, asbytes=False)
                out.write(shard)
                index[number] = (position, shard.size, raw.size)
                position += shard.size
            start += size
        out.write(index.tobytes())
        out.write(numpy.array([partitions], dtype=_COUNT).tobytes())


def _read_shard(path: Path, number: int) -> pyarrow.Table | None:
    """Shard ``number`` of a bucket file; None when it is empty."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(descriptor).st_size
        partitions = int(numpy.frombuffer(os.pread(descriptor, _COUNT.itemsize, end - _COUNT.itemsize), _COUNT)[0])
        at = end - _COUNT.itemsize - (partitions - number) * _SHARD.itemsize
        entry = numpy.frombuffer(os.pread(descriptor, _SHARD.itemsize, at), _SHARD)[0]
        if not entry["size"]:
            return None
        shard = os.pread(descriptor, int(entry["size"]), int(entry["offset"]))
    finally:
        os.close(descriptor)
    raw = _CODEC.decompress(shard, decompressed_size=int(entry["raw_size"]), asbytes=False)
    return pyarrow.ipc.open_stream(raw).read_all()


def _bucket(staging, table, number, empty: pyarrow.Schema) -> pyarrow.Table:
    """Store partition ``number``'s rows of ``table`` from every phase-1 bucket file, in input order."""
    bucket = IngestLayout(staging).buckets(table)
    pieces = []
    for path in sorted(bucket.glob("*.shards")) if bucket.exists() else []:
        rows = _read_shard(path, number)
        if rows is not None and rows.num_rows:
            pieces.append(rows)
    if not pieces:
        return empty.empty_table()
    # An input partition where a column was all missing gives it a null type: promote. One
    # chunk per column, not one per file: sorts and gathers over 1,200 chunks (10M customers)
    # took a quarter longer.
    return pyarrow.concat_tables(pieces, promote_options="permissive").unify_dictionaries().combine_chunks()


def reduce_accounts(number, *, staging, out, backend_name):
    """Phase 2 for the identity map: store partition ``number``'s accounts, each once.

    Returns
    -------
    dict
        ``accounts`` written and distinct ``customers`` among them.
    """
    empty = pyarrow.schema([("customer_id", pyarrow.large_string()), ("customer_key", pyarrow.large_string())])
    rows = _bucket(staging, ACCOUNTS, number, empty)
    accounts = frame_from_arrow(rows, backend_name, arrow_strings=False).drop_duplicates()
    accounts = accounts.sort_values("customer_id").reset_index(drop=True)
    target = IngestLayout(out).identity_mapping
    target.mkdir(parents=True, exist_ok=True)
    accounts.to_parquet(target / part_name(number), index=False)
    # Keys live in one partition each, so per-partition counts add up.
    return {"accounts": len(accounts), "customers": int(accounts["customer_key"].nunique())}


def _duplicate_of_previous(rows: pyarrow.Table) -> numpy.ndarray:
    """Per row of sorted ``rows``: True where it equals the row before on every column."""
    repeated = numpy.zeros(rows.num_rows, dtype=bool)
    if rows.num_rows:
        repeated[1:] = True
    for column in rows.column_names:
        values = rows[column].to_numpy()
        same = values[1:] == values[:-1]
        if rows[column].null_count:  # two nulls (suppressions without a time) are alike, NaT == NaT is not
            null = rows[column].is_null().to_numpy()
            same |= null[1:] & null[:-1]
        repeated[1:] &= same
    return repeated


def reduce_bucket(table, number, *, staging, out, empty, sensitive=()):
    """Phase 2 for store partition ``number`` of ``table``: dedupe, sort, strip, write.

    ``empty`` is the bucket's schema: a partition with no rows for this table still gets a
    part, so part numbers line up across tables. Exact duplicates are dropped where bucket
    rows carry a fingerprint (:func:`bucket_rows` with ``drop_duplicates``); else every row
    is kept. Suppressions' reason, typed as ``SUPPRESSION_REASON``, is stored as ``reason``.

    Returns
    -------
    dict
        ``rows`` written, ``duplicates`` dropped, and the ``min_ts``/``max_ts`` written
        (None where no row has a time).
    """
    rows = _bucket(staging, table, number, empty)
    keys = [c for c in sort_order(table) if c in rows.column_names]
    # Exact duplicates share the source row's fingerprint, and every other column derives
    # from that row, so sorted by the keys and then the fingerprint they are neighbours; the
    # sort is stable, so the first of them in input order is kept. A fingerprint alike by
    # chance would also need the same key and timestamp.
    dropped = numpy.zeros(rows.num_rows, dtype=bool)
    if FINGERPRINT in rows.column_names:
        grouped = pyarrow.compute.sort_indices(rows, sort_keys=[(c, "ascending") for c in (*keys, FINGERPRINT)])
        compared = rows.select([c for c in (KEY_ORDER, "ts", FINGERPRINT) if c in rows.column_names]).take(grouped)
        dropped[grouped.to_numpy()[_duplicate_of_previous(compared)]] = True
        rows = rows.drop_columns([FINGERPRINT])
    # The store's order leaves the fingerprint out: rows alike on the keys keep input order.
    order = pyarrow.compute.sort_indices(rows, sort_keys=[(c, "ascending") for c in keys])
    kept = order.filter(pyarrow.array(~dropped[order.to_numpy()]))
    rows = rows.take(kept)
    key = rows[KEY_ORDER].to_numpy()
    rows = rows.drop_columns([KEY_ORDER]).append_column("customer_key", key_text(key))
    if SUPPRESSION_REASON in rows.column_names:
        rows = rows.rename_columns(["reason" if c == SUPPRESSION_REASON else c for c in rows.column_names])
    result = {"rows": rows.num_rows, "duplicates": len(order) - len(kept), "min_ts": None, "max_ts": None}
    outputs = {table: rows}
    present = [c for c in sensitive if c in rows.column_names]
    if present:
        outputs = {table: rows.drop_columns(present), SENSITIVE_TABLE: rows.select(["customer_key", *present])}
    layout = IngestLayout(out)
    for name, part in outputs.items():
        target = layout.sensitive.table("customers") if name == SENSITIVE_TABLE else layout.store.table(table)
        target.mkdir(parents=True, exist_ok=True)
        # Without the Arrow schema in the file, dictionary-encoded text reads back as text.
        pyarrow.parquet.write_table(part, target / part_name(number), store_schema=False)
    # Suppressions may have no time at all.
    if "ts" in rows.column_names and rows["ts"].null_count < rows.num_rows:
        span = pyarrow.compute.min_max(rows["ts"])
        result["min_ts"] = str(pandas.Timestamp(span["min"].as_py()))
        result["max_ts"] = str(pandas.Timestamp(span["max"].as_py()))
    return result
