"""The customer-clustered store, written in two phases so memory stays bounded by partition.

Phase 1, per input partition: validate, send invalid rows (original text and a reason) to
quarantine, give valid rows their pseudonymous customer key and store partition, and write
them as one bucket file whose record batch N holds store partition N's rows. Phase 2, per
store partition: read that batch from every bucket file, drop exact duplicates, drop direct
identifiers and set sensitive columns apart, sort by (customer key, timestamp) and write one
part per table. A customer's rows therefore sit in the same part number in every table.

Bucket files are Arrow IPC: they are staging, written once and read once, and a reader seeks
straight to one batch. The number of files grows with the input alone; a file per (input
partition, store partition) grew with their product, and at 4M customers phase 1 spent most
of its time creating ~160k small Parquet files that phase 2 then opened one by one. Their
buffers are zstd-compressed: uncompressed, a world's buckets took 7x its Parquet inputs
(1.7 GB for a 238 MB world of 200k customers), so at 10M customers phase 1 filled a 51 GB
disk; zstd makes them 4x smaller, for 8% more ingest time at 1M customers.
"""

from __future__ import annotations

from pathlib import Path

import numpy
import pyarrow
import pyarrow.compute
import pyarrow.ipc

from ..backend import dataframe_namespace, frame_from_arrow, frame_to_arrow, resolve_backend, to_host
from ._pseudonym import pseudonymise
from ._validate import as_text, validate_partition

__all__ = [
    "SENSITIVE_TABLE",
    "FINGERPRINT",
    "ACCOUNTS",
    "attach_keys",
    "bucket_rows",
    "reduce_bucket",
    "reduce_accounts",
    "part_name",
    "row_fingerprints",
]

SENSITIVE_TABLE = "customers_sensitive"
# Bucket of (customer_id, customer_key) pairs seen by phase 1, for the identity map.
ACCOUNTS = "_accounts"
# Bucket rows carry the fingerprint of their source row until duplicates are dropped.
FINGERPRINT = "_source_row"
# Rows hashed at a time when fingerprinting on pandas: see row_fingerprints.
_HASH_SLICE_ROWS = 100_000
_BUCKET_OPTIONS = pyarrow.ipc.IpcWriteOptions(compression="zstd")


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def _bucket_name(index: int) -> str:
    return f"part-{index:05d}.arrow"


def _host(values):
    """A host-side list of str from a pandas or cuDF series."""
    return to_host(values).tolist()


def attach_keys(frame, merged, key: bytes, partitions: int):
    """Give every row of ``frame`` its ``customer_key`` and store ``partition``.

    ``merged`` (:class:`~engine.ingest._merged.MergedAccounts`) holds the accounts that
    identity resolution merged; every other account is its own customer. Work is done once
    per distinct account of the partition (a few thousand, against millions of event rows)
    and spread to the rows by position, so no frame-sized join or copy is made.

    Returns
    -------
    keyed : DataFrame
        ``frame`` with ``customer_key`` and ``partition`` added.
    accounts : DataFrame
        ``customer_id``, ``customer_key``, ``partition``: each distinct account once.

    Raises
    ------
    ValueError
        A row has no customer id (validation quarantines those before this).
    """
    namespace = dataframe_namespace(frame)
    codes, distinct = frame["customer_id"].factorize()
    if len(codes) and int(codes.min()) < 0:
        raise ValueError("attach_keys: rows without a customer id must be quarantined first")
    keys, partition = pseudonymise(merged.resolve(_host(distinct)), key, partitions)
    accounts = namespace.DataFrame({
        "customer_id": namespace.Series(distinct, dtype=frame["customer_id"].dtype),
        # Built with the id's dtype so the key keeps it even with no rows.
        "customer_key": namespace.Series(keys, dtype=frame["customer_id"].dtype),
        "partition": namespace.Series(partition, dtype="int32"),
    })  # fmt: skip
    keyed = frame.assign(
        customer_key=_spread(accounts["customer_key"], codes, frame.index),
        partition=_spread(accounts["partition"], codes, frame.index),
    )
    return keyed, accounts


def _spread(values, codes, index):
    """``values[codes]`` as a series on ``index``: per-account values given to their rows."""
    spread = values.take(codes)
    spread.index = index
    return spread


def row_fingerprints(raw):
    """A 64-bit hash of each whole source row: what "exact duplicate" is judged on."""
    if dataframe_namespace(raw).__name__ == "cudf":
        return raw.hash_values(method="xxhash64")
    import pandas

    # pandas hashes Arrow-backed text through an array of Python str objects, about 60 bytes
    # per cell: over a whole partition that was the largest allocation of phase 1 (+420 MiB
    # for 1.5M event rows). Row hashes do not depend on the other rows, so slices give the
    # same values with that array bounded by the slice.
    slices = [
        pandas.util.hash_pandas_object(raw.iloc[start : start + _HASH_SLICE_ROWS], index=False)
        for start in range(0, len(raw), _HASH_SLICE_ROWS)
    ]
    return pandas.concat(slices) if slices else pandas.util.hash_pandas_object(raw, index=False)


def bucket_rows(raw, index, *, table, rules, merged, key, partitions, staging, drop_from_quarantine=()):
    """Phase 1 for input partition ``index``: quarantine, key and bucket its rows.

    Returns
    -------
    dict
        ``read``, ``quarantined`` (reason -> rows) and ``duplicates`` (among quarantined rows
        of this partition). Each bucket also gets the partition's (customer_id, customer_key)
        pairs, for the identity map.
    """
    staging = Path(staging)
    checked = validate_partition(raw, table, rules)
    invalid = checked["reason"].notna()
    rejected = as_text(raw[invalid.values])
    rejected["reason"] = checked["reason"][invalid].values
    rejected = rejected.drop(columns=[c for c in drop_from_quarantine if c in rejected.columns])
    rejected_rows = len(rejected)
    rejected = rejected.drop_duplicates()
    quarantined = rejected["reason"].value_counts()
    if len(rejected):
        target = staging / "quarantine" / table
        target.mkdir(parents=True, exist_ok=True)
        rejected.to_parquet(target / part_name(index), index=False)

    valid = checked[~invalid].drop(columns=["reason"])
    valid[FINGERPRINT] = row_fingerprints(raw).values[~invalid.values]
    valid, accounts = attach_keys(valid, merged, key, partitions)
    buckets = staging / "buckets"
    _write_by_partition(valid, buckets / table / _bucket_name(index), partitions)
    _write_by_partition(accounts, buckets / ACCOUNTS / f"{table}-{_bucket_name(index)}", partitions)
    return {
        "read": len(raw),
        "quarantined": {reason: int(n) for reason, n in zip(_host(quarantined.index), _host(quarantined))},
        "duplicates": rejected_rows - len(rejected),
    }


def _write_by_partition(frame, path: Path, partitions: int) -> None:
    """Write ``frame`` as one IPC file whose batch N holds its rows with ``partition == N``.

    Every file has all ``partitions`` batches, empty ones included, so a batch's position is
    its partition. Rows keep their input order within a partition (Arrow's sort is stable).
    Batches are gathered one at a time: a sorted copy of the whole frame would double it.
    """
    table = frame_to_arrow(frame)
    order = pyarrow.compute.sort_indices(table["partition"])
    sizes = numpy.bincount(table["partition"].to_numpy(), minlength=partitions)
    table = table.drop_columns(["partition"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with pyarrow.ipc.new_file(str(path), table.schema, options=_BUCKET_OPTIONS) as writer:
        offset = 0
        for size in sizes.tolist():
            rows = table.take(order.slice(offset, size)).combine_chunks()
            writer.write_batch(rows.to_batches()[0] if rows.num_rows else _empty_batch(table.schema))
            offset += size


def _empty_batch(schema):
    return pyarrow.RecordBatch.from_pylist([], schema=schema)


def _bucket(staging, table, number, backend_name, empty):
    """Store partition ``number``'s rows of ``table`` from every phase-1 bucket file."""
    bucket = Path(staging) / "buckets" / table
    pieces = []
    for path in sorted(bucket.glob("*.arrow")) if bucket.exists() else []:
        with pyarrow.OSFile(str(path)) as source:
            rows = pyarrow.ipc.open_file(source).get_batch(number)
        if rows.num_rows:
            pieces.append(pyarrow.Table.from_batches([rows]))
    if not pieces:
        return empty
    # An input partition where a column was all missing gives it a null type: promote.
    rows = pyarrow.concat_tables(pieces, promote_options="permissive")
    return frame_from_arrow(rows, backend_name, arrow_strings=False)


def reduce_accounts(number, *, staging, out, backend_name):
    """Phase 2 for the identity map: store partition ``number``'s accounts, each once.

    Returns
    -------
    dict
        ``accounts`` written and distinct ``customers`` among them.
    """
    namespace = resolve_backend(backend_name).df
    empty = namespace.DataFrame({"customer_id": [], "customer_key": []}).astype(str)
    accounts = _bucket(staging, ACCOUNTS, number, backend_name, empty).drop_duplicates()
    accounts = accounts.sort_values("customer_id").reset_index(drop=True)
    target = Path(out) / "identity" / "mapping"
    target.mkdir(parents=True, exist_ok=True)
    accounts.to_parquet(target / part_name(number), index=False)
    # Keys live in one partition each, so per-partition counts add up.
    return {"accounts": len(accounts), "customers": int(accounts["customer_key"].nunique())}


def reduce_bucket(table, number, *, staging, out, backend_name, empty, sort_by, direct=(), sensitive=()):
    """Phase 2 for store partition ``number`` of ``table``: dedupe, strip, sort, write.

    ``empty`` is a zero-row frame with the bucket's columns: a partition with no rows for
    this table still gets a part, so part numbers line up across tables.

    Returns
    -------
    dict
        ``rows`` written, ``duplicates`` dropped, and the ``min_ts``/``max_ts`` written.
    """
    frame = _bucket(staging, table, number, backend_name, empty)
    before = len(frame)
    # Exact duplicates share the source row's hash, and every other column derives from that
    # row: compared on the hash and one more column (two 64-bit hashes alike by chance would
    # also need the same timestamp, or customer id), not on every text column (0.47 s against
    # 0.82 s for a store partition of 1.4M events).
    frame = frame.drop_duplicates(subset=[FINGERPRINT, "ts" if "ts" in frame.columns else "customer_id"])
    duplicates = before - len(frame)
    frame = frame.drop(columns=["customer_id", FINGERPRINT, *[c for c in direct if c in frame.columns]])
    outputs = {table: frame}
    present = [c for c in sensitive if c in frame.columns]
    if present:
        outputs = {table: frame.drop(columns=present), SENSITIVE_TABLE: frame[["customer_key", *present]]}
    result = {"rows": len(frame), "duplicates": duplicates, "min_ts": None, "max_ts": None}
    for name, rows in outputs.items():
        rows = rows.sort_values([c for c in sort_by if c in rows.columns]).reset_index(drop=True)
        target = Path(out) / ("sensitive/customers" if name == SENSITIVE_TABLE else f"store/{table}")
        target.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(target / part_name(number), index=False)
    if "ts" in frame.columns and len(frame):
        result["min_ts"] = str(frame["ts"].min())
        result["max_ts"] = str(frame["ts"].max())
    return result
