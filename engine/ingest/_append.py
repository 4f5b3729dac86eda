"""New rows into a run's store, rewriting only the partitions that receive rows (issue 28).

``segscale update`` brings rows of the tables that grow (transactions, events, contacts,
suppressions, outcomes) through ingest's own phase 1: the same validation, quarantine
reasons and keys. Keys come from the run's merged accounts (``IngestLayout.merged_accounts``),
so an account the run has seen keeps its customer, merged or not, and a new account gets the
key a full ingest would give it: new rows bring no identity rows, so it merges with no one.

Phase 2 runs only for the store partitions that received rows. The new rows are deduplicated
among themselves as ingest does (by source row), a new row equal in every stored column to a
stored row of its customer is an exact duplicate too, and the part is rewritten with the new
rows in (customer key, ts) order, stored rows first where they tie: a full ingest of the old
files and then the new ones gives the same part. The identity mapping's part gains the new
accounts, and ``_store.json`` its new row counts and time span.

Everything is written under the update's directory first. Only then does :func:`commit`
write ``commit.json``, the list of (staged file, store file) pairs, and rename each into
place; a crash during the renames leaves the journal, and :func:`commit` run again (the
update's rerun does) finishes them. Until the journal exists the store is untouched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import dask
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._tasks import compute_tasks, trimmed
from ..config import RunConfig
from ..exceptions import InputDataError, UsageError
from ..layout import IngestLayout, RunLayout, StoreLayout, UpdateLayout, part_name
from ._merged import MergedAccounts
from ._pipeline import _accounting, _bucket_schema, _extracted_at
from ._pseudonym import pseudonym_key
from ._read import read_input
from ._store import ACCOUNTS, _bucket, _duplicate_of_previous, bucket_rows, reduce_accounts, reduce_bucket, sort_order
from ._stored import has_amounts, read_store_meta
from ._validate import ParseRules

__all__ = ["APPENDABLE", "append_rows", "check_new_inputs", "commit"]

logger = logging.getLogger(__name__)

# Tables whose new rows change no one's identity or profile: an update appends them.
APPENDABLE = ("transactions", "events", "contacts", "suppressions", "outcomes")
_JOURNAL = "commit.json"


def _stored_order(table: str) -> list[str]:
    """The store's sort columns with the key as text (phase 2 sorted by its number, the same order)."""
    return ["customer_key", *sort_order(table)[1:]]


def _merge_part(table: str, number: int, *, work: str, store: str, empty: pa.Schema) -> dict | None:
    """Phase 2 for one partition of ``table`` that received rows: the part, rewritten with
    them, under ``work``; None when the partition received none."""
    if not _bucket(work, table, number, empty).num_rows:
        return None
    new = reduce_bucket(table, number, staging=work, out=work, empty=empty)
    staged = IngestLayout(work).store.table_part(table, number)
    stored = pq.read_table(StoreLayout(store).table_part(table, number))
    added = pq.read_table(staged)
    missing = [f for f in stored.schema if f.name not in added.column_names]
    for field in missing:
        added = added.append_column(field, pa.nulls(added.num_rows, field.type))
    added = added.select(stored.column_names).cast(stored.schema)
    # Stored rows of the customers that got rows, beside the new rows: a new row equal to a
    # stored one (or to a new one before it) in every column is an exact duplicate.
    mine = stored.filter(pc.is_in(stored["customer_key"], value_set=pc.unique(added["customer_key"])))
    both = pa.concat_tables([mine, added])
    is_new = pa.array([False] * mine.num_rows + [True] * added.num_rows)
    order = pc.sort_indices(both, sort_keys=[(c, "ascending") for c in both.column_names])
    repeated = _duplicate_of_previous(both.take(order)) & is_new.take(order).to_numpy(zero_copy_only=False)
    dropped = set((order.to_numpy()[repeated] - mine.num_rows).tolist())
    if dropped:
        keep = [row not in dropped for row in range(added.num_rows)]
        added = added.filter(pa.array(keep))
    merged = pa.concat_tables([stored, added])
    merged = merged.take(pc.sort_indices(merged, sort_keys=[(c, "ascending") for c in _stored_order(table)
                                                            if c in merged.column_names]))  # fmt: skip
    pq.write_table(merged, staged, store_schema=False)
    keys = UpdateLayout(work).customers_with_rows
    keys.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"customer_key": pc.unique(added["customer_key"])}), keys / f"{table}-{part_name(number)}")
    span = {"min_ts": None, "max_ts": None}
    if "ts" in merged.column_names and merged["ts"].null_count < merged.num_rows:
        low, high = pc.min_max(merged["ts"]).values()
        span = {"min_ts": str(pd.Timestamp(low.as_py())), "max_ts": str(pd.Timestamp(high.as_py()))}
    return {"number": number, "new_rows": added.num_rows, "rows": merged.num_rows,
            "duplicates": new["duplicates"] + len(dropped), **span}  # fmt: skip


def _merge_accounts(number: int, *, work: str, mapping: str, backend_name: str) -> dict:
    """The identity mapping's part ``number`` with the new accounts; returns how many are new."""
    reduce_accounts(number, staging=work, out=work, backend_name=backend_name)
    staged = IngestLayout(work).identity_mapping / part_name(number)
    added = pq.read_table(staged).to_pandas()
    existing_path = Path(mapping) / part_name(number)
    existing = pq.read_table(existing_path).to_pandas() if existing_path.exists() else added[:0]
    new_accounts = ~added["customer_id"].isin(existing["customer_id"])
    new_customers = ~added["customer_key"].isin(existing["customer_key"])
    both = existing.merge(added[new_accounts], how="outer").sort_values("customer_id", ignore_index=True)
    both.to_parquet(staged, index=False)
    return {"accounts": int(new_accounts.sum()), "customers": int(added.loc[new_customers, "customer_key"].nunique())}


def _check_tables(specs: dict, meta: dict) -> None:
    for table, spec in specs.items():
        if table not in APPENDABLE:
            raise UsageError(
                f"{spec.path}: an update appends rows of {', '.join(APPENDABLE)}; {table} rows change who a customer "
                f"is or their profile: add them to [inputs.{table}] and run segscale run --force"
            )
        if table not in meta["tables"]:
            raise UsageError(f"{spec.path}: the run's store has no {table} table; add [inputs.{table}] and run it again")


def _check_amounts(specs: dict, frames: dict, meta: dict) -> None:
    """New transactions carry amounts exactly when the stored ones do."""
    if "transactions" not in frames:
        return
    stored, new = has_amounts(meta), "amount" in frames["transactions"].columns
    if stored != new:
        raise InputDataError(
            f"{specs['transactions'].path}: the store's transactions {'have' if stored else 'lack'} amounts and these "
            f"{'have' if new else 'lack'} them; map the same columns as the run's [inputs.transactions]"
        )


def check_new_inputs(specs: dict, meta: dict) -> dict:
    """Refuse now what :func:`append_rows` would: a table an update cannot append, one the
    store lacks, an unreadable file, amounts where the store has none (or the other way
    round). Returns each table's rows (Dask frames, nothing read yet)."""
    _check_tables(specs, meta)
    frames = {table: read_input(spec) for table, spec in specs.items()}
    _check_amounts(specs, frames, meta)
    return frames


def append_rows(config: RunConfig, specs: dict, update_dir: Path, *, client=None, progress=None) -> dict:
    """Validate, key and stage the rows of ``specs`` (table -> InputSpec of the new files)
    for the run of ``config``; nothing in the store changes (see :func:`commit`).

    Returns
    -------
    dict
        ``tables``: per table rows read = kept + quarantined + duplicates; ``accounts`` and
        ``customers``: new ones; ``touched``: per table, the partitions rewritten;
        ``replace``: the (staged, target) pairs :func:`commit` renames; ``customer_keys``:
        where the keys of the customers with new rows are listed.

    Raises
    ------
    UsageError
        A table an update cannot append, or one the store lacks.
    InputDataError
        Unreadable new files, every row rejected, or amounts where the store has none (or
        the other way round).
    """
    layout = RunLayout(config.run.output_dir)
    store = layout.store.root
    meta = read_store_meta(store)
    partitions = int(meta["partitions"])
    key = pseudonym_key(config.ingest.pseudonym_key)
    frames = check_new_inputs(specs, meta)
    options, extracted_at = config.ingest, _extracted_at(config.ingest)
    rules = {table: ParseRules(spec.timestamp_format, spec.timezone, extracted_at, spec.return_prefix,
                               options.max_abs_amount) for table, spec in specs.items()}  # fmt: skip
    work = IngestLayout(update_dir)
    merged = MergedAccounts(layout.ingest.merged_accounts)
    tasks, owners = [], []
    for table, frame in frames.items():
        for index, part in enumerate(frame.to_delayed()):
            tasks.append(dask.delayed(trimmed(bucket_rows))(
                part, index, table=table, rules=rules[table], merged=merged, key=key, partitions=partitions,
                staging=str(work.root), drop_duplicates=specs[table].duplicates == "exact",
            ))  # fmt: skip
            owners.append(table)
    bucketed = compute_tasks(tasks, client, progress, "update: new rows")
    tasks, reduce_owners = [], []
    for table in frames:
        empty = _bucket_schema(frames[table], table, rules[table], (), specs[table].duplicates == "exact")
        for number in range(partitions):
            tasks.append(dask.delayed(trimmed(_merge_part))(table, number, work=str(work.root), store=str(store),
                                                            empty=empty))  # fmt: skip
            reduce_owners.append(table)
    merged_parts = compute_tasks(tasks, client, progress, "update: store parts")
    result_tables, touched, replace = {}, {}, []
    new_meta = json.loads(json.dumps(meta))
    for table, spec in specs.items():
        mine = [r for r, owner in zip(merged_parts, reduce_owners) if owner == table and r is not None]
        counted = [{"rows": r["new_rows"], "duplicates": r["duplicates"]} for r in mine]
        result_tables[table] = _accounting(table, spec, [b for b, o in zip(bucketed, owners) if o == table], counted)
        touched[table] = [r["number"] for r in mine]
        entry = new_meta["tables"][table]
        for part in mine:
            entry["rows_per_partition"][part["number"]] = part["rows"]
            for bound, pick in (("min_ts", min), ("max_ts", max)):
                if part[bound] is not None:
                    entry[bound] = pick((v for v in (entry[bound], part[bound]) if v is not None), key=pd.Timestamp)
            replace.append((work.store.table_part(table, part["number"]), layout.store.table_part(table, part["number"])))
        entry["rows"] = sum(entry["rows_per_partition"])
    numbers = sorted({n for parts in touched.values() for n in parts})
    accounts = compute_tasks([
        dask.delayed(_merge_accounts)(n, work=str(work.root), mapping=str(layout.ingest.identity_mapping),
                                      backend_name="cpu") for n in numbers
    ], client, progress, "update: identity map")  # fmt: skip
    replace += [(work.identity_mapping / part_name(n), layout.ingest.identity_mapping / part_name(n)) for n in numbers]
    work.store.meta.parent.mkdir(parents=True, exist_ok=True)
    work.store.meta.write_text(json.dumps(new_meta, indent=2) + "\n")
    replace.append((work.store.meta, layout.store.meta))
    shutil.rmtree(work.buckets(ACCOUNTS).parent, ignore_errors=True)
    return {
        "tables": result_tables, "touched": touched,
        "accounts": sum(a["accounts"] for a in accounts), "customers": sum(a["customers"] for a in accounts),
        "replace": [(str(staged), str(target)) for staged, target in replace],
    }  # fmt: skip


def commit(update_dir: Path, replace: list | None = None) -> bool:
    """Rename the staged files into the store: write the journal (when ``replace`` is given),
    then rename each pair whose staged file is still there. Returns whether a journal was
    found or written; run again after a crash, it finishes the renames."""
    journal = Path(update_dir) / _JOURNAL
    if replace is not None:
        temporary = journal.with_suffix(".tmp")
        temporary.write_text(json.dumps({"replace": replace}, indent=2) + "\n")
        os.replace(temporary, journal)
    if not journal.exists():
        return False
    for staged, target in json.loads(journal.read_text())["replace"]:
        if Path(staged).exists():
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
    return True
