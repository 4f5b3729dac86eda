"""The ingest stage: raw inputs in, customer-clustered store, quarantine and identity map out.

Output, under ``<run.output_dir>/ingest/`` (written to a temporary directory, then renamed):

``store/<table>/part-NNNNN.parquet``
    Valid rows keyed by ``customer_key``, sorted by (customer_key, ts); part N of every
    table holds the same customers. ``store/_store.json`` describes it; its ``has_amount``
    is false for counts-only transactions (no amount in the input: ``amount`` is all null).
``sensitive/customers/``
    The sensitive profile columns, apart, for fairness audits only.
``quarantine/<table>/``
    Rejected rows: original values as text, plus ``reason``.
``identity/mapping/part-NNNNN.parquet``, ``identity/report.json``
    Every source customer id and its customer key; merges and blocked values.
``ingest.json``
    Per input: rows read = kept + quarantined + exact duplicates dropped (none where the
    input's ``duplicates = "none"``); per phase (identities, phase 1, phase 2): seconds and
    the peak resident memory of this process and its descendants (local Dask workers
    included; an external cluster's workers are not), and of this process alone and of the
    largest descendant.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import dask
import pandas as pd
import pyarrow.parquet as pq

from .._memory import PeakMemory
from .._summary import Summary
from .._tasks import coarsened, compute_tasks, disk_full, release_memory, staged_output, trimmed
from ..backend import resolve_backend, to_host
from ..config import RunConfig
from ..contract import TABLES
from ..exceptions import InputDataError, SegscaleError
from ..layout import IngestLayout, RunLayout, part_name
from ._identity import link_identities, link_report, screen_identities, shuffle_partitions
from ._merged import MergedAccounts, write_merged_part
from ._pseudonym import pseudonym_key, pseudonymise
from ._read import estimate_rows, read_input
from ._store import ACCOUNTS, FINGERPRINT, KEY_ORDER, bucket_rows, bucket_table, reduce_accounts, reduce_bucket
from ._validate import REASONS, ParseRules, as_text, validate_partition

__all__ = ["IngestSummary", "ingest", "ROWS_PER_PARTITION"]

logger = logging.getLogger(__name__)

# Rows of all tables per store partition: phase 2 holds one partition per worker in memory.
ROWS_PER_PARTITION = 2_000_000
_MAX_PARTITIONS = 4096
# Merged accounts per lookup file: a write task holds one file's rows as Python str.
MERGED_ROWS_PER_FILE = 500_000
_STORED = ("transactions", "events", "customers", "outcomes", "contacts", "suppressions")
_PHASE_SAMPLE_S = 0.2
# Disk an input row takes while ingest runs, its compressed bucket row and its store row
# together: 34 bytes in a generated world of 200k customers (16.8M rows); the whole 4M
# pipeline took 36.7 bytes a row at its peak.
DISK_BYTES_PER_ROW = 37
# Exact duplicates above this share of a stored table's rows are worth a warning: in a log
# without order ids they may be real repeat purchases, which dropping would undercount.
DUPLICATE_WARNING_SHARE = 0.005


@dataclass
class IngestSummary(Summary):
    """What ``ingest`` did: where, how many partitions, and the row accounting per input."""

    out_dir: Path
    partitions: int
    tables: dict[str, dict]
    identity: dict
    seconds: float
    phases: dict[str, dict] = field(default_factory=dict)



@contextmanager
def _phase(phases: dict, name: str):
    """Record the block's seconds and the process tree's peak RSS under ``phases[name]``."""
    started = time.perf_counter()
    with PeakMemory(_PHASE_SAMPLE_S) as memory:
        yield
    phases[name] = {
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_gib": round(memory.peak_rss_bytes / 2**30, 3),
        # Where the peak sits: this process (with a local cluster's scheduler), or a worker.
        "client_peak_rss_gib": round(memory.peak_own_rss_bytes / 2**30, 3),
        "worker_peak_rss_gib": round(memory.peak_descendant_rss_bytes / 2**30, 3),
    }


def _extracted_at(options) -> pd.Timestamp:
    if options.extracted_at is None:
        return pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(options.extracted_at, tz="UTC")


def _hash_column(frame, column, key):
    """Replace identifier values by their keyed hash: quarantine must not hold real emails."""
    frame = frame.copy()
    values = frame[column]
    present = values.notna()
    hashed, _ = pseudonymise(values[present].astype(str).tolist(), key, 1)
    frame.loc[present, column] = hashed
    return frame


def _rejected_rows(frame):
    """Partition function: the rows that carry a reason (filtered within the partition, as
    indexes repeat across partitions)."""
    return frame[frame["reason"].notna().values]


def _valid_rows(frame):
    """Partition function: the rows without a reason, which no longer need the column."""
    return frame[frame["reason"].isna().values].drop(columns=["reason"])


def _identities(frame, spec, rows, key, options, staging):
    """Validate, dedupe and resolve identities; quarantine the rows not used for linking.

    ``rows`` is the input's estimated row count (from ``estimate_rows``), which sizes the
    shuffle partitions. Returns the accounts that merged (as :class:`MergedAccounts`,
    written under ``staging``), the row accounting and the resolution report. Only rejected
    rows come to this process; the rest stays on the cluster.
    """
    rules = ParseRules(spec.timestamp_format, spec.timezone)
    meta = validate_partition(frame._meta, "identities", rules)
    checked = frame.map_partitions(validate_partition, "identities", rules, meta=meta)
    valid = checked.map_partitions(_valid_rows, meta=checked._meta.drop(columns=["reason"]))
    # Identity rows and every intermediate of resolution go to disk, not to worker memory,
    # which would otherwise grow with the customers and stay taken for the phases after.
    work = staging.identity_work
    # Resolution shuffles these rows, in partitions sized by their count, not by the files;
    # the shuffle by identifier brings exact duplicates together, so they are dropped there.
    screening = screen_identities(
        coarsened(valid, shuffle_partitions(rows)),
        cap=options.identifier_cap,
        caps=options.identifier_caps,
        blocked=options.blocked_identifiers,
        workdir=work,
        drop_duplicates=spec.duplicates == "exact",
    )
    linked = screening.identities
    # Rejected rows are written where they are, a file per partition: gathered here, they
    # would grow with the customers.
    target = str(staging.quarantine("identities"))
    writes = [
        dask.delayed(_quarantine_identities)(part, target, number, key)
        for number, part in enumerate([*checked.to_delayed(), *linked.to_delayed()])
    ]
    read, valid_rows, used, reasons = dask.compute(frame.shape[0], valid.shape[0], linked["reason"].isna().sum(), writes)
    # Everything the identity rows were needed for is computed: linking reads only the edges.
    edges, edge_count, screened = screening.edges, screening.edge_count, screening.report
    distinct_rows = screening.rows
    del linked, screening
    quarantined: dict[str, int] = {}
    for counts in reasons:
        for reason, rows in counts.items():
            quarantined[reason] = quarantined.get(reason, 0) + rows
    accounting = {
        "read": int(read),
        "kept": int(used),
        "quarantined": dict(sorted(quarantined.items())),
        "duplicates": int(valid_rows) - int(distinct_rows),
    }
    merged, method, rounds = link_identities(
        edges, work, edge_count=edge_count, memory_mib=options.identity_graph_memory_mib
    )
    report = link_report(screened, merged, method, rounds)
    # Written by the workers, partition by partition: gathered here, the map would grow with
    # the customers in this process, and again in every worker it was sent to.
    # A lookup opens every file (about 1.4 ms each), so files are few: one per partition of
    # the labels (160 at 4M customers) made each phase-1 task 0.22 s slower.
    relabelled = report["customers"] - report["components"]
    merged = merged.repartition(npartitions=max(1, math.ceil(relabelled / MERGED_ROWS_PER_FILE)))
    lookup = staging.merged_accounts
    dask.compute([
        dask.delayed(write_merged_part)(part, str(lookup), number) for number, part in enumerate(merged.to_delayed())
    ])  # fmt: skip
    shutil.rmtree(work)
    return MergedAccounts(lookup), accounting, report


def _quarantine_identities(part, target: str, number: int, key) -> dict[str, int]:
    """Write one partition's rejected identity rows (text, identifier hashed); their reasons."""
    rejected = to_host(_rejected_rows(part))
    if not len(rejected):
        return {}
    text = as_text(rejected.drop(columns=["reason"])).assign(reason=rejected["reason"].to_numpy())
    Path(target).mkdir(parents=True, exist_ok=True)
    _hash_column(text, "id_value", key).to_parquet(Path(target) / part_name(number), index=False)
    return {str(reason): int(rows) for reason, rows in rejected["reason"].value_counts().items()}


def _bucket_schema(frame, table, rules, direct, fingerprinted):
    """The schema of ``table``'s bucket rows, for store partitions that get none."""
    empty = validate_partition(frame._meta, table, rules)
    empty = empty.drop(columns=["reason", *[c for c in direct if c in empty.columns]])
    if fingerprinted:
        empty = empty.assign(**{FINGERPRINT: empty.index.astype("uint64")})
    empty = empty.assign(**{KEY_ORDER: empty.index.astype("uint64")})
    return bucket_table(empty.drop(columns=["customer_id"]), table).schema


def check_inputs(config: RunConfig) -> None:
    """Refuse now what ingest would refuse at its start: no pseudonymisation key, or an input
    that is missing, unreadable (not text in its encoding, a gzip cut short) or lacks a
    required column. ``segscale check`` runs it; it reads Parquet footers and decodes CSV text."""
    pseudonym_key(config.ingest.pseudonym_key)
    for spec in config.inputs.values():
        read_input(spec)


def ingest(config: RunConfig, *, client=None, progress=None) -> IngestSummary:
    """Run the ingest stage for ``config``; see the module docstring for what it writes.

    Parameters
    ----------
    config : RunConfig
    client : distributed.Client, optional
        Tasks run on its cluster (which must see the output directory); without one they
        run on Dask's local scheduler.
    progress : callable, optional
        ``progress(done, total)`` as tasks of each phase finish.

    Raises
    ------
    UsageError
        No pseudonymisation key; an input is missing, unreadable, empty or lacks a column.
    SegscaleError
        The row accounting does not reconcile (a bug, never expected); the disk holding the
        output directory filled up (nothing of this run is left on it).
    """
    started = time.perf_counter()
    options = config.ingest
    key = pseudonym_key(options.pseudonym_key)
    backend = resolve_backend(config.run.backend)
    # Readers return partitions of the backend's kind with or without a client from dask_client.
    with dask.config.set({"dataframe.backend": backend.dataframe_backend}):
        try:
            return _ingest(config, key, backend, client, progress, started)
        except OSError as error:
            if not disk_full(error):
                raise
            raise SegscaleError(_disk_full(Path(config.run.output_dir))) from error


def _free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` or, before it exists, its nearest parent."""
    existing = next((parent for parent in (path, *path.parents) if parent.exists()), Path.cwd())
    return shutil.disk_usage(existing).free


def _warn_if_short_of_disk(out: Path, rows: int) -> None:
    """Say at the start, not an hour in, when the inputs look too big for the free disk. A
    warning, not an error: the bytes per row are those of a generated world."""
    needed, free = rows * DISK_BYTES_PER_ROW, _free_bytes(out)
    if needed > free:
        logger.warning(
            "ingest: about %.1f GiB of staging files and store for %d input rows, and %.1f GiB free on the disk "
            "holding %s: it may run out of space (set [run] output_dir on a larger disk)", needed / 2**30, rows,
            free / 2**30, out,
        )  # fmt: skip


def _disk_full(output_dir: Path) -> str:
    """The one line for a full disk, said after the staging directory is gone, so the free
    space it reports is what the next attempt starts with."""
    free_gib = _free_bytes(output_dir) / 2**30
    return (
        f"ingest: no space left on the disk holding {output_dir} ({free_gib:.1f} GiB free now); its staging "
        "files and store need about 3x the size of the Parquet inputs: free space or set [run] output_dir "
        "on a larger disk"
    )


def _phase1(frames, config, rules, merged, key, partitions, staging):
    """One task per input partition; returns (tasks, table of each task)."""
    options = config.ingest
    tasks, owners = [], []
    for table in rules:
        direct = options.direct_identifiers if table == "customers" else ()
        for index, part in enumerate(frames[table].to_delayed()):
            tasks.append(
                dask.delayed(trimmed(bucket_rows))(
                    part, index, table=table, rules=rules[table], merged=merged, key=key,
                    partitions=partitions, staging=str(staging.root), direct_identifiers=direct,
                    drop_duplicates=config.inputs[table].duplicates == "exact",
                )
            )  # fmt: skip
            owners.append(table)
    return tasks, owners


def _phase2(frames, config, rules, backend, partitions, staging):
    """One task per store partition and table, plus the identity map's; returns (tasks, owners)."""
    options = config.ingest
    tasks, owners = [], []
    for table in rules:
        customers = table == "customers"
        direct = options.direct_identifiers if customers else ()
        fingerprinted = config.inputs[table].duplicates == "exact"
        empty = _bucket_schema(frames[table], table, rules[table], direct, fingerprinted)
        for number in range(partitions):
            tasks.append(
                dask.delayed(trimmed(reduce_bucket))(
                    table, number, staging=str(staging.root), out=str(staging.root), empty=empty,
                    sensitive=options.sensitive if customers else (),
                )
            )  # fmt: skip
            owners.append(table)
    for number in range(partitions):
        tasks.append(dask.delayed(trimmed(reduce_accounts))(number, staging=str(staging.root), out=str(staging.root),
                                                            backend_name=backend.name))  # fmt: skip
        owners.append(ACCOUNTS)
    return tasks, owners


def _accounting(table, spec, bucketed, reduced) -> dict:
    """Rows read = kept + quarantined + duplicates for one stored table, checked; a warning
    when the exact duplicates dropped pass ``DUPLICATE_WARNING_SHARE`` of the rows read."""
    quarantined: dict[str, int] = {}
    for result in bucketed:
        for reason, rows in result["quarantined"].items():
            quarantined[reason] = quarantined.get(reason, 0) + rows
    counts = {
        "read": sum(r["read"] for r in bucketed),
        "kept": sum(r["rows"] for r in reduced),
        "quarantined": dict(sorted(quarantined.items())),
        "duplicates": sum(r["duplicates"] for r in bucketed) + sum(r["duplicates"] for r in reduced),
    }
    if counts["read"] == 0 and not TABLES[table].may_be_empty:
        raise InputDataError(f"{spec.path}: no rows in the {table} input")
    accounted = counts["kept"] + sum(quarantined.values()) + counts["duplicates"]
    if accounted != counts["read"]:
        raise SegscaleError(f"{table}: rows read ({counts['read']}) != kept + quarantined + duplicates ({accounted})")
    if counts["kept"] == 0 and quarantined:
        # Nothing usable is a mapping or format mistake (integer timestamps, a wrong column),
        # not data to run on: a run on it would "succeed" with nothing in it.
        reason, rows = max(quarantined.items(), key=lambda item: item[1])
        raise InputDataError(
            f"{spec.path}: every one of the {counts['read']:,} {table} rows was rejected, {rows:,} as {reason} "
            f"({REASONS.get(reason, reason)}); check [inputs.{table}] (columns, timestamp_format, timezone)"
        )
    if counts["duplicates"] > DUPLICATE_WARNING_SHARE * counts["read"]:
        logger.warning(
            "ingest: %s: dropped %s exact duplicate rows, %.1f%% of the %s read; lines without an order id may be "
            'real repeat purchases: [inputs.%s] duplicates = "none" keeps them', table, f"{counts['duplicates']:,}",
            100 * counts["duplicates"] / counts["read"], f"{counts['read']:,}", table,
        )  # fmt: skip
    return counts


def _table_metadata(table, reduced, staging) -> dict:
    schema = pq.read_schema(staging.store.table_part(table, 0))
    with_time = [r for r in reduced if r["min_ts"] is not None]
    return {
        "rows": sum(r["rows"] for r in reduced),
        "rows_per_partition": [r["rows"] for r in reduced],
        "columns": {field.name: str(field.type) for field in schema},
        "min_ts": min((r["min_ts"] for r in with_time), default=None),
        "max_ts": max((r["max_ts"] for r in with_time), default=None),
    }


def _ingest(config, key, backend, client, progress, started) -> IngestSummary:
    options = config.ingest
    extracted_at = _extracted_at(options)
    frames = {name: read_input(spec) for name, spec in config.inputs.items()}
    has_amount = "amount" in frames["transactions"].columns
    if not has_amount:
        logger.info(
            "ingest: %s has no amount column and [inputs.transactions] maps or derives none: its transactions are "
            "counts-only (amounts stored null, as unknown)", config.inputs["transactions"].path,
        )  # fmt: skip
    rows = {name: estimate_rows(spec) for name, spec in config.inputs.items()}
    estimated = sum(rows.values())
    partitions = options.partitions or min(_MAX_PARTITIONS, max(1, math.ceil(estimated / ROWS_PER_PARTITION)))
    rules = {
        table: ParseRules(spec.timestamp_format, spec.timezone, extracted_at, spec.return_prefix, options.max_abs_amount)
        for table, spec in config.inputs.items()
        if table in _STORED
    }

    out = RunLayout(config.run.output_dir).ingest.root
    _warn_if_short_of_disk(out, estimated)
    with staged_output(out) as staging_dir:
        staging = IngestLayout(staging_dir)
        tables: dict[str, dict] = {}
        identity_report: dict = {}
        merged = MergedAccounts()
        phases: dict[str, dict] = {}
        if "identities" in frames:
            with _phase(phases, "identities"):
                merged, tables["identities"], identity_report = _identities(
                    frames["identities"], config.inputs["identities"], rows["identities"], key, options, staging
                )
                release_memory(client)
        with _phase(phases, "phase 1"):
            tasks, owners = _phase1(frames, config, rules, merged, key, partitions, staging)
            bucketed = compute_tasks(tasks, client, progress, "phase 1")
        with _phase(phases, "phase 2"):
            tasks, reduce_owners = _phase2(frames, config, rules, backend, partitions, staging)
            reduced = compute_tasks(tasks, client, progress, "phase 2")

        def results_of(results, results_owners, table):
            return [r for r, owner in zip(results, results_owners) if owner == table]

        for table in rules:
            tables[table] = _accounting(
                table, config.inputs[table], results_of(bucketed, owners, table), results_of(reduced, reduce_owners, table)
            )
        mapped = results_of(reduced, reduce_owners, ACCOUNTS)
        identity_report = {
            **identity_report,
            "accounts": sum(r["accounts"] for r in mapped),
            "customers": sum(r["customers"] for r in mapped),
        }
        staging.identity_report.write_text(json.dumps(identity_report, indent=2, sort_keys=True) + "\n")
        store_meta = {
            "partitions": partitions,
            "key": "customer_key",
            "sorted_by": ["customer_key", "ts"],
            "backend": backend.name,
            "extracted_at": extracted_at.isoformat(),
            "tables": {t: _table_metadata(t, results_of(reduced, reduce_owners, t), staging) for t in rules},
            "sensitive_columns": [c for c in options.sensitive if "customers" in frames and c in frames["customers"].columns],
            # Read through has_amounts: a counts-only store's amount column is all null.
            "has_amount": has_amount,
        }
        staging.store.meta.write_text(json.dumps(store_meta, indent=2) + "\n")
        for transient in staging.transient:
            shutil.rmtree(transient, ignore_errors=True)
        summary = IngestSummary(
            out_dir=out, partitions=partitions, tables=tables, identity=identity_report,
            seconds=round(time.perf_counter() - started, 3), phases=phases,
        )  # fmt: skip
        document = {**summary.to_dict(), "finished_at": datetime.now(timezone.utc).isoformat()}
        staging.summary.write_text(json.dumps(document, indent=2) + "\n")
    logger.info("ingest: %s", ", ".join(f"{name} {p['seconds']:.1f} s (peak {p['peak_rss_gib']:.2f} GiB)"
                                        for name, p in phases.items()))  # fmt: skip
    return summary
