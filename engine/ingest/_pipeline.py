"""The ingest stage: raw inputs in, customer-clustered store, quarantine and identity map out.

Output, under ``<run.output_dir>/ingest/`` (written to a temporary directory, then renamed):

``store/<table>/part-NNNNN.parquet``
    Valid rows keyed by ``customer_key``, sorted by (customer_key, ts); part N of every
    table holds the same customers. ``store/_store.json`` describes it.
``sensitive/customers/``
    The sensitive profile columns, apart, for fairness audits only.
``quarantine/<table>/``
    Rejected rows: original values as text, plus ``reason``.
``identity/mapping.parquet``, ``identity/report.json``
    Every source customer id and its customer key; merges and blocked values.
``ingest.json``
    Per input: rows read = kept + quarantined + duplicates dropped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dask
import pandas as pd

from ..backend import resolve_backend
from ..config import RunConfig
from ..exceptions import InputDataError, SegscaleError
from ._identity import resolve_identities
from ._pseudonym import pseudonym_key, pseudonymise
from ._read import estimate_rows, read_input
from ._store import FINGERPRINT, bucket_rows, part_name, reduce_bucket, row_fingerprints
from ._validate import ParseRules, as_text, validate_partition

__all__ = ["IngestSummary", "ingest", "ROWS_PER_PARTITION"]

logger = logging.getLogger(__name__)

# Rows of all tables per store partition: phase 2 holds one partition per worker in memory.
ROWS_PER_PARTITION = 2_000_000
_MAX_PARTITIONS = 4096
_STORED = ("transactions", "events", "customers", "outcomes")


@dataclass
class IngestSummary:
    """What ``ingest`` did: where, how many partitions, and the row accounting per input."""

    out_dir: Path
    partitions: int
    tables: dict[str, dict]
    identity: dict
    seconds: float

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "partitions": self.partitions,
            "tables": self.tables,
            "identity": self.identity,
            "seconds": round(self.seconds, 3),
        }


def _extracted_at(options) -> pd.Timestamp:
    if options.extracted_at is None:
        return pd.Timestamp.now(tz="UTC")
    return pd.Timestamp(options.extracted_at, tz="UTC")


def _compute(tasks, client, progress, label):
    """Compute delayed tasks, on the client's cluster when there is one, reporting progress."""
    if not tasks:
        return []
    if client is None:
        results = dask.compute(*tasks)
        if progress is not None:
            progress(len(tasks), len(tasks))
        return list(results)
    from distributed import as_completed

    futures = client.compute(tasks)
    position = {future.key: i for i, future in enumerate(futures)}
    results = [None] * len(futures)
    for done, future in enumerate(as_completed(futures), start=1):
        results[position[future.key]] = future.result()
        if progress is not None:
            progress(done, len(futures))
    logger.debug("%s: %d tasks done", label, len(futures))
    return results


def _hash_column(frame, column, key):
    """Replace identifier values by their keyed hash: quarantine must not hold real emails."""
    frame = frame.copy()
    values = frame[column]
    present = values.notna()
    hashed, _ = pseudonymise(values[present].astype(str).tolist(), key, 1)
    frame.loc[present, column] = hashed
    return frame


def _identities(frame, spec, key, options, backend, staging):
    """Validate, dedupe and resolve identities; quarantine what is not used for linking."""
    rules = ParseRules(spec.timestamp_format, spec.timezone, None, None)
    checked = frame.map_partitions(validate_partition, "identities", rules, meta=validate_partition(frame._meta, "identities", rules))
    read = len(frame)
    blank = checked[checked["reason"].notnull()]
    valid = checked[checked["reason"].isna()].drop(columns=["reason"]).persist()
    deduplicated = valid.drop_duplicates().persist()
    duplicates = len(valid) - len(deduplicated)
    resolution = resolve_identities(
        deduplicated,
        deduplicated["customer_id"],
        cap=options.identifier_cap,
        caps=options.identifier_caps,
        blocked=options.blocked_identifiers,
    )
    rows = resolution.identities.compute()
    rejected = pd.concat([_host_frame(blank.compute()), _host_frame(rows[rows["reason"].notna()])])
    used = int(rows["reason"].isna().sum())
    if len(rejected):
        rejected = _hash_column(as_text(rejected.drop(columns=["reason"])).assign(reason=rejected["reason"].values), "id_value", key)
        target = staging / "quarantine" / "identities"
        target.mkdir(parents=True)
        rejected.to_parquet(target / part_name(0), index=False)
    mapping = _host_frame(resolution.mapping)
    merged = mapping[mapping["customer_id"] != mapping["resolved_id"]]
    accounting = {
        "read": read,
        "kept": used,
        "quarantined": rejected["reason"].value_counts().to_dict() if len(rejected) else {},
        "duplicates": duplicates,
    }
    return backend.df.DataFrame({c: merged[c].tolist() for c in ("customer_id", "resolved_id")}), accounting, resolution.report


def _host_frame(frame):
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def _empty_bucket(frame, table, rules):
    empty = validate_partition(frame._meta, table, rules).drop(columns=["reason"])
    empty[FINGERPRINT] = row_fingerprints(frame._meta).values
    empty["customer_key"] = empty["customer_id"]
    return empty


def _publish(staging: Path, out: Path) -> None:
    """Swap the finished output into place; a previous ingest is replaced only on success."""
    previous = out.with_name(out.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        out.rename(previous)
    staging.rename(out)
    shutil.rmtree(previous, ignore_errors=True)


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
        The row accounting does not reconcile (a bug, never expected).
    """
    started = time.perf_counter()
    options = config.ingest
    key = pseudonym_key(options.pseudonym_key)
    backend = resolve_backend(config.run.backend)
    # Readers return partitions of the backend's kind with or without a client from dask_client.
    with dask.config.set({"dataframe.backend": backend.dataframe_backend}):
        return _ingest(config, key, backend, client, progress, started)


def _ingest(config, key, backend, client, progress, started) -> IngestSummary:
    options = config.ingest
    extracted_at = _extracted_at(options)
    frames = {name: read_input(spec) for name, spec in config.inputs.items()}
    estimated = sum(estimate_rows(spec) for spec in config.inputs.values())
    partitions = options.partitions or min(_MAX_PARTITIONS, max(1, math.ceil(estimated / ROWS_PER_PARTITION)))

    out = Path(config.run.output_dir) / "ingest"
    staging = out.with_name(f".ingest-staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        tables: dict[str, dict] = {}
        identity_report: dict = {}
        merged = backend.df.DataFrame({"customer_id": [], "resolved_id": []}).astype(str)
        if "identities" in frames:
            merged, tables["identities"], identity_report = _identities(
                frames["identities"], config.inputs["identities"], key, options, backend, staging
            )
        merged = dask.delayed(merged, pure=True)

        rules, tasks, owners = {}, [], []
        for table in (t for t in _STORED if t in frames):
            spec = config.inputs[table]
            rules[table] = ParseRules(spec.timestamp_format, spec.timezone, extracted_at, spec.return_prefix)
            drop = options.direct_identifiers if table == "customers" else ()
            for index, part in enumerate(frames[table].to_delayed()):
                tasks.append(
                    dask.delayed(bucket_rows)(
                        part, index, table=table, rules=rules[table], merged=merged, key=key,
                        partitions=partitions, staging=str(staging), drop_from_quarantine=drop,
                    )
                )  # fmt: skip
                owners.append(table)
        phase1 = _compute(tasks, client, progress, "phase 1")

        reduce_tasks, reduce_owners = [], []
        for table in rules:
            customers = table == "customers"
            for number in range(partitions):
                reduce_tasks.append(
                    dask.delayed(reduce_bucket)(
                        table, number, staging=str(staging), out=str(staging), backend_name=backend.name,
                        empty=_empty_bucket(frames[table], table, rules[table]),
                        sort_by=("customer_key",) if table in ("customers", "outcomes") else ("customer_key", "ts"),
                        direct=options.direct_identifiers if customers else (),
                        sensitive=options.sensitive if customers else (),
                    )
                )  # fmt: skip
                reduce_owners.append(table)
        phase2 = _compute(reduce_tasks, client, progress, "phase 2")

        store_tables = {}
        for table in rules:
            mine = [r for r, owner in zip(phase1, owners) if owner == table]
            reduced = [r for r, owner in zip(phase2, reduce_owners) if owner == table]
            quarantined: dict[str, int] = {}
            for result in mine:
                for reason, rows in result["quarantined"].items():
                    quarantined[reason] = quarantined.get(reason, 0) + rows
            read = sum(r["read"] for r in mine)
            if read == 0:
                raise InputDataError(f"{config.inputs[table].path}: no rows in the {table} input")
            tables[table] = {
                "read": read,
                "kept": sum(r["rows"] for r in reduced),
                "quarantined": dict(sorted(quarantined.items())),
                "duplicates": sum(r["duplicates"] for r in mine) + sum(r["duplicates"] for r in reduced),
            }
            timestamps = [r for r in reduced if r["min_ts"] is not None]
            store_tables[table] = {
                "rows": tables[table]["kept"],
                "rows_per_partition": [r["rows"] for r in reduced],
                "columns": {
                    name: str(dtype)
                    for name, dtype in pd.read_parquet(staging / "store" / table / part_name(0)).dtypes.items()
                },
                "min_ts": min((r["min_ts"] for r in timestamps), default=None),
                "max_ts": max((r["max_ts"] for r in timestamps), default=None),
            }
        for table, counts in tables.items():
            accounted = counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]
            if accounted != counts["read"]:
                raise SegscaleError(
                    f"{table}: rows read ({counts['read']}) != kept + quarantined + duplicates ({accounted})"
                )

        accounts = pd.concat([r["accounts"] for r in phase1], ignore_index=True)
        accounts = accounts.drop_duplicates().sort_values("customer_id", ignore_index=True)
        (staging / "identity").mkdir()
        accounts.to_parquet(staging / "identity" / "mapping.parquet", index=False)
        identity_report = {**identity_report, "accounts": len(accounts), "customers": int(accounts["customer_key"].nunique())}
        (staging / "identity" / "report.json").write_text(json.dumps(identity_report, indent=2, sort_keys=True) + "\n")
        store_meta = {
            "partitions": partitions,
            "key": "customer_key",
            "sorted_by": ["customer_key", "ts"],
            "backend": backend.name,
            "extracted_at": extracted_at.isoformat(),
            "tables": store_tables,
            "sensitive_columns": [c for c in options.sensitive if "customers" in frames and c in frames["customers"].columns],
        }
        (staging / "store" / "_store.json").write_text(json.dumps(store_meta, indent=2) + "\n")
        shutil.rmtree(staging / "buckets", ignore_errors=True)
        summary = IngestSummary(
            out_dir=out,
            partitions=partitions,
            tables=tables,
            identity=identity_report,
            seconds=time.perf_counter() - started,
        )
        document = {**summary.to_dict(), "finished_at": datetime.now(timezone.utc).isoformat()}
        (staging / "ingest.json").write_text(json.dumps(document, indent=2) + "\n")
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary

