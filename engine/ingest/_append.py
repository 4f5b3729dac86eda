"""New rows into a run's store, as a delta file per partition that receives rows (issue 28).

``segscale update`` brings rows of the tables that grow (transactions, events, contacts,
suppressions, outcomes) through ingest's own phase 1: the same validation, quarantine
reasons and keys. Keys come from the run's merged accounts (``IngestLayout.merged_accounts``),
so an account the run has seen keeps its customer, merged or not, and a new account gets the
key a full ingest would give it: new rows bring no identity rows, so it merges with no one.

Phase 2 runs only for the store partitions that received rows. The new rows are deduplicated
among themselves as ingest does (by source row), and a new row equal in every stored column
to a stored row of its customer is an exact duplicate too. What is left becomes the part's
next delta file, in the store's order; ``_stored.read_part`` merges it in, stored rows first
where they tie, so every reader sees the part a full ingest of the old files and then the
new ones gives. A part is read only as far as the duplicate check needs (often not at all)
and never rewritten, but where ``MAX_DELTAS`` deltas have gathered: then it is rewritten
with them folded in. The identity mapping's part gains the new accounts, and
``_store.json`` its new row counts and time span.

Identity rows are resolved again with the run's own (``_rekey``): accounts they join to a
customer take its key, and the stored rows (every table, the sensitive columns and the
identity map) of customers they merge move to the merged customer's key and partition, so
those partitions are rewritten, their deltas folded in.

Everything is written under the update's directory first. Only then does :func:`commit`
write ``commit.json``, the list of (staged file, store file) pairs and of the delta files
folded into rewritten parts, rename each staged file into place and then delete those
deltas; a crash during it leaves the journal, and :func:`commit` run again (the update's
rerun does) finishes the work. Until the journal exists the store is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._tasks import compute_tasks, trimmed
from ..config import RunConfig
from ..exceptions import InputDataError, UsageError
from ..layout import IngestLayout, RunLayout, UpdateLayout, part_name
from ._merged import MergedAccounts
from ._pipeline import _accounting, _bucket_schema, _extracted_at
from ._pseudonym import pseudonym_key
from ._rekey import TARGET, extract_moved, resolve_again
from ._read import read_input
from ._store import (
    ACCOUNTS, SENSITIVE_TABLE, _bucket, _duplicate_of_previous, bucket_rows, reduce_accounts, reduce_bucket,
)  # fmt: skip
from ._stored import (
    delta_files, has_amounts, latest_ts, next_delta_file, read_part, read_store_meta, rows_of, stored_order,
)  # fmt: skip
from ._validate import ParseRules

__all__ = ["APPENDABLE", "append_rows", "check_new_inputs", "commit"]

# Tables whose new rows change no one's identity or profile: an update appends them.
APPENDABLE = ("transactions", "events", "contacts", "suppressions", "outcomes")
# Delta files a part may gather before an update folds them into it: each costs its readers a
# file and a merge, so daily updates between full runs rewrite a part about monthly.
MAX_DELTAS = 30
_JOURNAL = "commit.json"



def _arriving(moved: str | None, number: int) -> pa.Table | None:
    """The re-keyed rows that move into partition ``number`` (``_rekey.extract_moved``)."""
    pieces = []
    for path in sorted(Path(moved).glob("*.parquet")) if moved else []:
        rows = pq.read_table(path)
        rows = rows.filter(pc.equal(rows[TARGET], number)).drop_columns([TARGET])
        if rows.num_rows:
            pieces.append(rows)
    return pa.concat_tables(pieces, promote_options="permissive") if pieces else None


def _aligned(added: pa.Table, schema: pa.Schema) -> pa.Table:
    """New rows with the stored part's columns and types (a column they lack is null)."""
    for field in (f for f in schema if f.name not in added.column_names):
        added = added.append_column(field, pa.nulls(added.num_rows, field.type))
    return added.select(schema.names).cast(schema)


def _without_stored_duplicates(added: pa.Table, mine: pa.Table) -> tuple[pa.Table, int]:
    """``added`` less each row equal in every column to a stored row of its customer
    (``mine``) or to a new row before it: exact duplicates, as a full ingest drops them."""
    both = pa.concat_tables([mine, added])
    is_new = pa.array([False] * mine.num_rows + [True] * added.num_rows)
    order = pc.sort_indices(both, sort_keys=[(c, "ascending") for c in both.column_names])
    repeated = _duplicate_of_previous(both.take(order)) & is_new.take(order).to_numpy(zero_copy_only=False)
    dropped = np.zeros(added.num_rows, dtype=bool)
    dropped[order.to_numpy()[repeated] - mine.num_rows] = True
    return (added.filter(pa.array(~dropped)) if dropped.any() else added), int(dropped.sum())


def _new_rows(table: str, number: int, work: str, staged: str, empty: pa.Schema, schema: pa.Schema, stored_of):
    """Phase 2 of the new rows of partition ``number``: reduced as ingest reduces a bucket,
    aligned with the store's ``schema`` and rid of stored duplicates (``stored_of(added)``
    gives the stored rows they may repeat). Returns them and the duplicates dropped; the
    customers they belong to are listed for the deltas."""
    duplicates = reduce_bucket(table, number, staging=work, out=work, empty=empty)["duplicates"]
    added = _aligned(pq.read_table(staged), schema)
    added, repeats = _without_stored_duplicates(added, stored_of(added))
    keys = UpdateLayout(work).customers_with_rows
    keys.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"customer_key": pc.unique(added["customer_key"])}), keys / f"{table}-{part_name(number)}")
    return added, duplicates + repeats


def _stored_rows_of(source: str, table: str, added: pa.Table, schema: pa.Schema) -> pa.Table:
    """The stored rows (part and deltas) of the customers of ``added`` that can equal a new
    row: first only keys and times are read, and whole rows only where a customer has a
    stored row at the time of a new one, so a part is not decoded whole for none. New rows
    later than every stored one (the files' statistics say) repeat none: nothing is read."""
    timed = "ts" in schema.names and added["ts"].null_count == 0
    latest = latest_ts(source) if timed else None
    if latest is not None:
        added = added.filter(pc.less_equal(added["ts"], latest.cast(added.schema.field("ts").type)))
        if not added.num_rows:
            return schema.empty_table()
    probe = read_part(source, table, ["customer_key", "ts"] if timed else ["customer_key"])
    candidates = probe.take(rows_of(probe["customer_key"], added["customer_key"]))
    if timed and candidates.num_rows:
        new_times = pa.table({"customer_key": added["customer_key"].cast(candidates.schema.field("customer_key").type),
                              "ts": added["ts"].cast(candidates.schema.field("ts").type)})  # fmt: skip
        candidates = candidates.join(new_times, ["customer_key", "ts"], join_type="left semi")
    if not candidates.num_rows:
        return schema.empty_table()
    stored = read_part(source, table)
    return stored.take(rows_of(stored["customer_key"], candidates["customer_key"])).cast(schema)


def _span(rows: pa.Table) -> dict:
    """The rows' first and last ``ts`` as text (None without any)."""
    if "ts" not in rows.column_names or rows["ts"].null_count == rows.num_rows:
        return {"min_ts": None, "max_ts": None}
    low, high = pc.min_max(rows["ts"]).values()
    return {"min_ts": str(pd.Timestamp(low.as_py())), "max_ts": str(pd.Timestamp(high.as_py()))}


def _append_part(table: str, number: int, *, work: str, source: str, staged: str, empty: pa.Schema | None) -> dict | None:
    """Phase 2 for a partition only new rows reach: they are staged as its next delta file
    (``_stored.read_part`` merges it in order), the part itself is not read whole or rewritten.
    None when no new row falls in it."""
    if empty is None or _bucket(work, table, number, empty).num_rows == 0:
        return None
    schema = pq.read_schema(source)
    added, duplicates = _new_rows(table, number, work, staged, empty, schema,
                                  lambda rows: _stored_rows_of(source, table, rows, schema))  # fmt: skip
    if not added.num_rows:
        return None if not duplicates else {"number": number, "new_rows": 0, "duplicates": duplicates, "delta": None,
                                            **_span(added)}  # fmt: skip
    pq.write_table(added, staged, store_schema=False)
    delta = str(next_delta_file(source))
    return {"number": number, "new_rows": added.num_rows, "duplicates": duplicates, "delta": delta, **_span(added)}


def _rewrite_part(table: str, number: int, *, work: str, source: str, staged: str, empty: pa.Schema | None,
                  moved: str | None, old_keys: pa.Array | None) -> dict:  # fmt: skip
    """Phase 2 for a partition merged customers leave or enter: the stored part (with its
    deltas) without the customers that merged away, with the rows that moved in and the new
    rows, rewritten whole to ``staged``; its delta files are then removed."""
    stored = read_part(source, table)
    if old_keys is not None:
        stored = stored.filter(pc.invert(pc.is_in(stored["customer_key"], value_set=old_keys)))
    arriving = _arriving(moved, number)
    if arriving is not None:
        stored = pa.concat_tables([stored, arriving.select(stored.column_names).cast(stored.schema)])
    added, duplicates = stored.schema.empty_table(), 0
    if empty is not None and _bucket(work, table, number, empty).num_rows > 0:
        added, duplicates = _new_rows(table, number, work, staged, empty, stored.schema, lambda rows: stored.filter(
            pc.is_in(stored["customer_key"], value_set=pc.unique(rows["customer_key"]))))  # fmt: skip
    merged = pa.concat_tables([stored, added])
    by = [(column, "ascending") for column in stored_order(table, merged.column_names)]
    merged = merged.take(pc.sort_indices(merged, sort_keys=by))
    Path(staged).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(merged, staged, store_schema=False)
    return {"number": number, "new_rows": added.num_rows, "rows": merged.num_rows, "duplicates": duplicates,
            "removed": [str(path) for path in delta_files(source)], **_span(merged)}  # fmt: skip


def _merge_accounts(number: int, *, work: str, mapping: str, moved: str | None, old_keys: pa.Array | None) -> dict:
    """The identity mapping's part ``number``: without the accounts of customers that merged
    away, with those that moved in and the new accounts; returns how many are new, and
    whether the part is rewritten (not where it gains and loses no account)."""
    reduce_accounts(number, staging=work, out=work, backend_name="cpu")
    staged = IngestLayout(work).identity_mapping / part_name(number)
    added = pq.read_table(staged)
    existing_path = Path(mapping) / part_name(number)
    existing = pq.read_table(existing_path) if existing_path.exists() else pa.table(
        {"customer_id": pa.array([], pa.large_string()), "customer_key": pa.array([], pa.large_string())})  # fmt: skip
    if old_keys is not None:
        existing = existing.filter(pc.invert(pc.is_in(existing["customer_key"], value_set=old_keys)))
    arriving = _arriving(moved, number)
    if arriving is not None:
        existing = pa.concat_tables([existing, arriving.select(existing.column_names).cast(existing.schema)])

    def absent(column):  # Arrow's hash lookup: pandas' isin on Arrow text makes a Python str per row
        return pc.invert(pc.is_in(added[column], value_set=existing[column].cast(added.schema.field(column).type)))

    new_accounts, new_customers = absent("customer_id"), absent("customer_key")
    if not pc.any(new_accounts).as_py() and old_keys is None and arriving is None:
        staged.unlink()  # the part stays as it is
        return {"accounts": 0, "customers": 0, "rewritten": False}
    both = pd.concat([existing.to_pandas(), added.filter(new_accounts).to_pandas()], ignore_index=True)
    both.sort_values("customer_id", ignore_index=True).to_parquet(staged, index=False)
    customers = len(pc.unique(added.filter(new_customers)["customer_key"]))
    return {"accounts": pc.sum(new_accounts).as_py() or 0, "customers": customers, "rewritten": True}


def _check_tables(specs: dict, meta: dict) -> None:
    for table, spec in specs.items():
        if table not in (*APPENDABLE, "identities"):
            raise UsageError(
                f"{spec.path}: an update appends rows of {', '.join(APPENDABLE)} and identities; {table} rows change "
                f"a customer's profile: add them to [inputs.{table}] and run segscale run --force"
            )
        if table not in meta["tables"] and table != "identities":
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


def _stored_parts(layout: RunLayout, work: IngestLayout, meta: dict) -> dict:
    """Every stored table, as (its part N, where part N is staged): the store's tables, and the
    sensitive profile columns kept apart, which move with their customers."""
    parts = {table: (lambda n, t=table: layout.store.table_part(t, n), lambda n, t=table: work.store.table_part(t, n))
             for table in meta["tables"]}  # fmt: skip
    if layout.ingest.sensitive.table("customers").is_dir():
        parts[SENSITIVE_TABLE] = (lambda n: layout.ingest.sensitive.table_part("customers", n),
                                  lambda n: work.sensitive.table_part("customers", n))  # fmt: skip
    return parts


def append_rows(config: RunConfig, specs: dict, frames: dict, update_dir: Path, *, earlier_identities: tuple = (),
                client=None, progress=None) -> dict:  # fmt: skip
    """Validate, key and stage the rows of ``specs`` (table -> InputSpec of the new files),
    read as ``frames`` (what :func:`check_new_inputs` returned for them), for the run of
    ``config``; nothing in the store changes (see :func:`commit`).
    ``earlier_identities``: (directory, accounting) of the identity rows earlier updates kept.

    Returns
    -------
    dict
        ``tables``: per table rows read = kept + quarantined + duplicates; ``accounts`` and
        ``customers``: new ones; ``merged``: customers merged into another (``moves``, the
        old and new keys, beside it in ``update_dir``); ``touched``: per table, the
        partitions rewritten; ``replace``: the (staged, target) pairs :func:`commit` renames.

    Raises
    ------
    UsageError
        A table an update cannot append, one the store lacks, or identity rows that would
        split a customer.
    InputDataError
        Unreadable new files, every row rejected, or amounts where the store has none (or
        the other way round).
    """
    layout = RunLayout(config.run.output_dir)
    store = layout.store.root
    meta = read_store_meta(store)
    partitions = int(meta["partitions"])
    key = pseudonym_key(config.ingest.pseudonym_key)
    options, extracted_at = config.ingest, _extracted_at(config.ingest)
    work = IngestLayout(update_dir)
    result_tables, replace = {}, []
    merged, moves = MergedAccounts(layout.ingest.merged_accounts), pd.DataFrame({"old_key": [], "new_key": []})
    if "identities" in frames:
        merged, result_tables["identities"], moves = resolve_again(
            config, specs["identities"], frames["identities"], work, key, partitions, list(earlier_identities),
            client=client, progress=progress,
        )  # fmt: skip
        replace.append((work.merged_accounts, layout.ingest.merged_accounts))
        frames = {table: frame for table, frame in frames.items() if table != "identities"}
    moves.to_parquet(UpdateLayout(update_dir).moves, index=False)
    rules = {table: ParseRules(specs[table].timestamp_format, specs[table].timezone, extracted_at,
                               specs[table].return_prefix, options.max_abs_amount) for table in frames}  # fmt: skip
    tasks, owners = [], []
    for table, frame in frames.items():
        for index, part in enumerate(frame.to_delayed()):
            tasks.append(dask.delayed(trimmed(bucket_rows))(
                part, index, table=table, rules=rules[table], merged=merged, key=key, partitions=partitions,
                staging=str(work.root), drop_duplicates=specs[table].duplicates == "exact",
            ))  # fmt: skip
            owners.append(table)
    bucketed = compute_tasks(tasks, client, progress, "update: new rows")
    stored = _stored_parts(layout, work, meta)
    old_keys = pa.array(moves["old_key"].astype(str), pa.large_string()) if len(moves) else None
    movers = {"_mapping": (lambda n: layout.ingest.identity_mapping / part_name(n), None)} | stored
    sources, targets = extract_moved(movers, moves, partitions, UpdateLayout(update_dir).moved, client=client,
                                     progress=progress)  # fmt: skip
    tasks, reduce_owners = [], []
    for table, (source, staged) in stored.items():
        empty = None
        if table in frames:
            empty = _bucket_schema(frames[table], table, rules[table], (), specs[table].duplicates == "exact")
        moved = str(UpdateLayout(update_dir).moved / table) if table in targets else None
        for number in range(partitions):
            paths = {"work": str(work.root), "source": str(source(number)), "staged": str(staged(number))}
            moving = number in sources.get(table, ()) or number in targets.get(table, ())
            if moving or (empty is not None and len(delta_files(source(number))) >= MAX_DELTAS):
                tasks.append(dask.delayed(trimmed(_rewrite_part))(table, number, **paths, empty=empty, moved=moved,
                                                                  old_keys=old_keys))  # fmt: skip
            else:
                tasks.append(dask.delayed(trimmed(_append_part))(table, number, **paths, empty=empty))
            reduce_owners.append(table)
    merged_parts = compute_tasks(tasks, client, progress, "update: store parts")
    touched, rewritten, remove = {}, {}, []
    new_meta = json.loads(json.dumps(meta))
    for table, (source, staged) in stored.items():
        mine = [r for r, owner in zip(merged_parts, reduce_owners) if owner == table and r is not None]
        if table in frames:
            counted = [{"rows": r["new_rows"], "duplicates": r["duplicates"]} for r in mine]
            bucket = [b for b, o in zip(bucketed, owners) if o == table]
            result_tables[table] = _accounting(table, specs[table], bucket, counted)
        touched[table] = [r["number"] for r in mine if r["new_rows"] or "rows" in r]
        rewritten[table] = [r["number"] for r in mine if "rows" in r]
        replace += [(staged(r["number"]), r["delta"]) for r in mine if r.get("delta")]
        replace += [(staged(r["number"]), source(r["number"])) for r in mine if "rows" in r]
        remove += [path for r in mine for path in r.get("removed", [])]
        if table == SENSITIVE_TABLE:
            continue
        entry = new_meta["tables"][table]
        for part in mine:
            rows = entry["rows_per_partition"][part["number"]] + part["new_rows"]
            entry["rows_per_partition"][part["number"]] = part.get("rows", rows)
            for bound, pick in (("min_ts", min), ("max_ts", max)):
                if part[bound] is not None:
                    entry[bound] = pick((v for v in (entry[bound], part[bound]) if v is not None), key=pd.Timestamp)
        entry["rows"] = sum(entry["rows_per_partition"])
    numbers = sorted({n for parts in touched.values() for n in parts} | set(sources.get("_mapping", ()))
                     | set(targets.get("_mapping", ())))  # fmt: skip
    moved_accounts = str(UpdateLayout(update_dir).moved / "_mapping") if "_mapping" in targets else None
    accounts = compute_tasks([
        dask.delayed(_merge_accounts)(n, work=str(work.root), mapping=str(layout.ingest.identity_mapping),
                                      moved=moved_accounts, old_keys=old_keys) for n in numbers
    ], client, progress, "update: identity map")  # fmt: skip
    replace += [(work.identity_mapping / part_name(n), layout.ingest.identity_mapping / part_name(n))
                for n, merged in zip(numbers, accounts) if merged["rewritten"]]  # fmt: skip
    work.store.meta.parent.mkdir(parents=True, exist_ok=True)
    work.store.meta.write_text(json.dumps(new_meta, indent=2) + "\n")
    replace.append((work.store.meta, layout.store.meta))
    shutil.rmtree(work.buckets(ACCOUNTS).parent, ignore_errors=True)
    return {
        "tables": result_tables, "touched": touched, "rewritten": rewritten, "merged": len(moves),
        "accounts": sum(a["accounts"] for a in accounts), "customers": sum(a["customers"] for a in accounts),
        "replace": [(str(staged), str(target)) for staged, target in replace], "remove": remove,
    }  # fmt: skip


def commit(update_dir: Path, replace: list | None = None, remove: list = ()) -> bool:
    """Rename the staged files into the store: write the journal (when ``replace`` is given),
    then rename each pair whose staged file is still there, then delete the delta files of
    the parts rewritten whole (``remove``; their rows are in the new part). Returns whether a
    journal was found or written; run again after a crash, it finishes the work."""
    journal = Path(update_dir) / _JOURNAL
    if replace is not None:
        temporary = journal.with_suffix(".tmp")
        temporary.write_text(json.dumps({"replace": replace, "remove": list(remove)}, indent=2) + "\n")
        os.replace(temporary, journal)
    if not journal.exists():
        return False
    work = json.loads(journal.read_text())
    for staged, target in work["replace"]:
        if Path(staged).exists():
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            if Path(staged).is_dir():  # the merged accounts: a directory replaces a directory whole
                shutil.rmtree(target, ignore_errors=True)
            os.replace(staged, target)
    for path in work.get("remove", []):
        Path(path).unlink(missing_ok=True)
    return True
