"""The ingest benchmark: segscale's ingest beside the same work written in DuckDB and polars.

Every case reads one shared world (seed 0, 1% dirt, built once per size, untimed) and does
what ``engine.ingest`` does with it, inside its clock:

1. validate every row by segscale's rules (``engine/ingest/_validate.py``) and give a rejected
   row the first rule it breaks: blank customer id; timestamp missing or unparseable (the
   world's text timestamps, ``[inputs] timestamp_format``, UTC); timestamp after
   ``[ingest] extracted_at``; amount or quantity not a finite number; negative amount on a
   line that is not a return (a return has a negative quantity); unknown event type
   (``engine.contract.EVENT_TYPES``). Rejected rows go to ``quarantine/<table>.parquet``;
2. drop exact duplicate rows (the same source row twice);
3. resolve identities as ``engine/ingest/_identity.py`` does: identity rows deduplicated,
   values normalised (phones to their digits, others stripped and lower-cased), blocked values
   (segscale's list, values of zeros and separators only) and values held by more customers
   than ``[ingest] identifier_cap`` (per type: ``identifier_caps``) set aside with a reason;
   the (customer, value) pairs of values two customers share are integer-coded and solved by
   one ``scipy.sparse.csgraph.connected_components``; a component's key is the hash of its
   smallest customer id (segscale's is a salted hash of the same id);
4. write each table sorted by (key, ts) as Parquet in as many parts as segscale makes
   (``engine.ingest.ROWS_PER_PARTITION`` input rows a part), part = key hash modulo the parts,
   direct identifiers dropped and sensitive columns apart, as segscale's store does.

DuckDB's is SQL over ``read_parquet``, each table materialised once sorted by (part, key, ts)
and copied out part by part: ``COPY ... (PARTITION_BY ...)`` does not keep the rows' order
within a file. DuckDB spills past its memory limit by itself. polars' is lazy frames run by
the streaming engine and sunk (``sink_parquet``) in two passes per table, the valid rows by
part, then each part deduplicated and sorted: ``unique`` and ``sort`` over a whole table
hold all of it in memory (2.8 GiB for the events of 100k customers, and the issue measured
23 GiB at 1M on this 24 GiB machine), so a polars user with this much data partitions first.

The checks: each case reports, as quality columns, rows kept, quarantined and dropped as
duplicates per table, the customers in its store (distinct keys) and the components among the
identity rows' customers, and leaves them in the shared data; the cases that run after it
compare theirs with them, reason by reason, as ``matches_<tool>`` (and
``differences_vs_<tool>`` when they differ). segscale runs first, in a process the peers'
allocators have not touched, so its peak memory is its own.

One difference shows in the counts, and is segscale's: it drops exact duplicates among
rejected rows only within an input partition (``bucket_rows`` in phase 1 sees one partition;
valid rows are deduplicated by store part, where a row's copies meet). The peers drop them
across all inputs, as they do valid rows. The generator puts a duplicate right after its
original, but a blanked customer id can make two different rows of different files alike: at
1M customers two pairs of events (customer id "   ", same second, type, channel and category;
files 8 and 39, 10 and 32) are kept twice in segscale's quarantine and once in the peers', so
``events.quarantined.blank_customer_id`` is 2 higher and ``events.duplicates`` 2 lower there,
and ``matches_segscale`` is False with those two differences.

Differences that do not show in the counts: segscale's identity map lists every account, the
peers write only the merged ones (every other account is its own key); DuckDB's ``trim``
strips spaces only, where segscale and polars strip all white space.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import IngestOptions

from ._measure import PeakDisk
from ._pipeline import dirty_world, inputs_gib

__all__ = ["compare_counts", "prepare_dirty_world", "run_duckdb", "run_polars", "run_segscale_ingest"]

_STORED = ("transactions", "events", "customers")
_TABLES = (*_STORED, "identities")
_MAX_ABS_AMOUNT = IngestOptions().max_abs_amount  # segscale's default bound, as the peers' rule
_EVENT_TYPES = ("view", "add_to_cart", "search", "email_open", "email_click", "support_ticket")
_PHONE_TYPES = ("phone", "mobile", "phone_number", "msisdn")
# A value of nothing but zeros and separators links no one, whatever its type.
_NO_SIGNAL = r"[0\s.()+/_-]*"
_BLOCKED, _OVER_CAP = "blocked_identifier", "identifier_over_cap"
# Extra output columns per stored table, and the columns after the key that order its rows.
_SORT = {"transactions": ("ts", "order_id"), "events": ("ts",), "customers": ()}


def prepare_dirty_world(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    """Shared data for the ingest cases: the world's run config, and the counts each case
    leaves for the cases after it (``compare_counts``)."""
    from engine.backend import dask_client, resolve_backend

    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        config = dirty_world(size, directory, client, backend_name)
    return {"config": config, "counts": {}}


# ---------------------------------------------------------------------------------------
# what the peers are told: the world's inputs and segscale's settings for them


@dataclass(frozen=True)
class _Work:
    sources: dict[str, str]
    columns: dict[str, tuple[str, ...]]
    timestamp_format: str
    extracted_at: datetime
    cap: int
    caps: dict[str, int]
    blocked: tuple[str, ...]
    direct: tuple[str, ...]
    sensitive: tuple[str, ...]
    partitions: int | None

    @classmethod
    def of(cls, config) -> _Work:
        from engine.ingest._identity import DEFAULT_BLOCKED

        options, inputs = config.ingest, config.inputs
        blocked = DEFAULT_BLOCKED | {value.strip().lower() for value in options.blocked_identifiers}
        sources = {table: f"{spec.path}/*.parquet" for table, spec in inputs.items()}
        return cls(
            sources=sources,
            columns={table: tuple(pq.read_schema(_files(source)[0]).names) for table, source in sources.items()},
            timestamp_format=inputs["transactions"].timestamp_format,
            # extracted_at is a date: its midnight, UTC, like the world's wall times.
            extracted_at=datetime.combine(options.extracted_at, datetime.min.time()),
            cap=options.identifier_cap,
            caps={kind.strip().lower(): cap for kind, cap in options.identifier_caps.items()},
            blocked=tuple(sorted(blocked)),
            direct=options.direct_identifiers,
            sensitive=options.sensitive,
            partitions=options.partitions,
        )  # fmt: skip

    def rows_read(self) -> dict[str, int]:
        """Rows of each input, from the Parquet footers."""
        return {
            table: sum(pq.ParquetFile(path).metadata.num_rows for path in _files(source))
            for table, source in self.sources.items()
        }

    def store_partitions(self, rows_read: dict[str, int]) -> int:
        """Store parts as segscale chooses them: its input rows over ``ROWS_PER_PARTITION``."""
        from engine.ingest import ROWS_PER_PARTITION

        return self.partitions or max(1, math.ceil(sum(rows_read.values()) / ROWS_PER_PARTITION))

    def kept_columns(self, table: str) -> tuple[str, ...]:
        """A stored table's source columns that go to its store parts, customer id aside."""
        dropped = {"customer_id", *self.direct, *self.sensitive}
        return tuple(column for column in self.columns[table] if column not in dropped)

    def sensitive_columns(self, table: str) -> tuple[str, ...]:
        return tuple(column for column in self.sensitive if table == "customers" and column in self.columns[table])


def _files(source: str) -> list[Path]:
    pattern = Path(source)
    return sorted(pattern.parent.glob(pattern.name))


def _merged_accounts(customer_ids: np.ndarray, customer_codes: np.ndarray, node_codes: np.ndarray) -> pa.Table:
    """``customer_id``, ``resolved_id`` of the linked customers whose component's smallest id
    is not their own, from the coded edges of the bipartite customer-value graph.

    ``customer_codes`` number the customers in the order of their ids, so the smallest code
    of a component is its smallest id.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    customers = int(customer_codes.max()) + 1 if len(customer_codes) else 0
    nodes = int(node_codes.max()) + 1 if len(node_codes) else 0
    ids = np.empty(customers, dtype=object)
    ids[customer_codes] = customer_ids
    graph = coo_matrix(
        (np.ones(len(customer_codes), dtype=np.int8), (customer_codes, customers + node_codes)),
        shape=(customers + nodes, customers + nodes),
    )
    count, labels = connected_components(graph, directed=False)
    smallest = np.full(count, customers)
    np.minimum.at(smallest, labels[:customers], np.arange(customers))
    resolved = smallest[labels[:customers]]
    moved = resolved != np.arange(customers)
    return pa.table({
        "customer_id": pa.array(ids[moved], pa.string()),
        "resolved_id": pa.array(ids[resolved[moved]], pa.string()),
    })  # fmt: skip


# ---------------------------------------------------------------------------------------
# the counts every case reports, and their comparison


def _quality(counts: dict) -> dict:
    quality = {}
    for table, row in sorted(counts["tables"].items(), key=lambda item: _TABLES.index(item[0])):
        quality |= {
            f"{table}_kept": row["kept"],
            f"{table}_quarantined": sum(row["quarantined"].values()),
            f"{table}_duplicates": row["duplicates"],
        }
    return quality | {key: counts[key] for key in ("customers", "identity_components", "partitions")}


def _flat(counts: dict) -> dict[str, int]:
    flat = {key: counts[key] for key in ("customers", "identity_components", "partitions")}
    for table, row in counts["tables"].items():
        flat |= {f"{table}.{key}": row[key] for key in ("read", "kept", "duplicates")}
        flat |= {f"{table}.quarantined.{reason}": rows for reason, rows in row["quarantined"].items() if rows}
    return flat


def compare_counts(ours: dict, theirs: dict) -> list[str]:
    """``"<count> <ours> vs <theirs>"`` for every count of two cases' counts that differs
    (rows read, kept and dropped as duplicates per table, quarantined per table and reason,
    customers, identity components, store parts); empty when they all agree."""
    ours, theirs = _flat(ours), _flat(theirs)
    return [
        f"{key} {ours.get(key, 0)} vs {theirs.get(key, 0)}"
        for key in sorted(ours.keys() | theirs.keys())
        if ours.get(key, 0) != theirs.get(key, 0)
    ]


def _checked(tool: str, counts: dict, data: dict) -> dict:
    """The case's quality columns: its counts, and whether they match those of each case that
    ran before it at this size; leaves its own for the cases after it."""
    quality = _quality(counts)
    for other, theirs in data["counts"].items():
        if other == tool:  # an earlier repeat of this case
            continue
        differences = compare_counts(counts, theirs)
        quality[f"matches_{other}"] = not differences
        if differences:
            quality[f"differences_vs_{other}"] = "; ".join(differences)
    data["counts"][tool] = counts
    return quality


def _output_counts(out: Path, rows_read: dict, identities_kept: int, components: int, partitions: int) -> dict:
    """A peer's counts, read back from what it wrote (untimed): rows in its store parts and
    quarantine files, and its customers as the distinct keys of each part (a key lives in
    one part)."""
    tables = {}
    for table, read in rows_read.items():
        reasons = pq.read_table(out / "quarantine" / f"{table}.parquet", columns=["reason"])["reason"].to_pylist()
        quarantined = dict(sorted(Counter(reasons).items()))
        if table == "identities":
            kept = identities_kept
        else:
            kept = sum(pq.ParquetFile(path).metadata.num_rows for path in (out / "store" / table).glob("*.parquet"))
        duplicates = read - kept - sum(quarantined.values())
        tables[table] = {"read": read, "kept": kept, "quarantined": quarantined, "duplicates": duplicates}
    customers = 0
    for number in range(partitions):
        # A part a table has no rows for has no file (polars writes none).
        paths = [out / "store" / table / f"part-{number:05d}.parquet" for table in _STORED]
        keys = [pq.read_table(path, columns=["customer_key"])["customer_key"] for path in paths if path.exists()]
        customers += len(pa.chunked_array([chunk for column in keys for chunk in column.chunks], pa.uint64()).unique())
    return {"tables": tables, "customers": customers, "identity_components": components, "partitions": partitions}


# ---------------------------------------------------------------------------------------
# segscale


def run_segscale_ingest(size, workdir, backend_name, workers, clock, data) -> dict:
    """engine.ingest on the shared world, on a local cluster started outside the clock."""
    from engine.backend import dask_client, resolve_backend
    from engine.ingest import ingest

    config = data["config"]
    run = dataclasses.replace(config.run, output_dir=workdir / "run", backend=backend_name)
    config = dataclasses.replace(config, run=run)
    started = time.perf_counter()
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        setup_seconds = time.perf_counter() - started
        with PeakDisk(workdir) as disk, clock:
            summary = ingest(config, client=client)
    counts = {
        "tables": summary.tables,
        "customers": summary.identity["customers"],
        "identity_components": summary.identity["components"],
        "partitions": summary.partitions,
    }
    quality = _checked("segscale", counts, data)
    quality |= {"disk_peak_gib": round(disk.peak_bytes / 2**30, 3), "inputs_gib": inputs_gib(config)}
    # Where the time and the memory go: ingest measures each of its phases.
    for name, phase in summary.phases.items():
        label = name.replace(" ", "_")
        quality |= {f"{label}_{measure}": phase[measure]
                    for measure in ("seconds", "peak_rss_gib", "client_peak_rss_gib", "worker_peak_rss_gib")}  # fmt: skip
    return {
        "rows": {table: row["read"] for table, row in summary.tables.items()},
        "setup_seconds": setup_seconds,
        "workers": workers,
        "data_path": str(summary.out_dir),
        "quality": quality,
    }


# ---------------------------------------------------------------------------------------
# DuckDB


def _sql_text(values) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


def _duckdb_identities(connection, work: _Work, out: Path) -> tuple[int, int]:
    """Screen and resolve the identity rows; register ``merged``. Returns (rows kept, components)."""
    source = work.sources["identities"]
    cap = " ".join(f"WHEN '{kind}' THEN {cap}" for kind, cap in work.caps.items())
    cap = f"CASE f.kind {cap} ELSE {work.cap} END" if work.caps else str(work.cap)
    connection.execute(f"""
        CREATE TEMP TABLE identities_screened AS
        WITH valid AS (
            SELECT DISTINCT trim(customer_id) AS customer_id, id_type, id_value
            FROM read_parquet('{source}') WHERE nullif(trim(customer_id), '') IS NOT NULL
        ), typed AS (
            SELECT *, lower(trim(coalesce(id_type, ''))) AS kind FROM valid
        ), keyed AS (
            SELECT *, CASE
                WHEN kind IN ({_sql_text(_PHONE_TYPES)}) THEN regexp_replace(coalesce(id_value, ''), '\\D', '', 'g')
                ELSE lower(trim(coalesce(id_value, '')))
            END AS id_key
            FROM typed
        ), flagged AS (
            SELECT *, id_key IN ({_sql_text(work.blocked)}) OR regexp_full_match(id_key, '{_NO_SIGNAL}') AS blocked
            FROM keyed
        ), holders AS (
            SELECT kind, id_key, count(DISTINCT customer_id) AS holders
            FROM flagged WHERE NOT blocked GROUP BY kind, id_key
        )
        SELECT f.customer_id, f.id_type, f.id_value, f.kind, f.id_key, coalesce(h.holders, 0) AS holders,
            CASE WHEN f.blocked THEN '{_BLOCKED}' WHEN h.holders > {cap} THEN '{_OVER_CAP}' END AS reason
        FROM flagged f LEFT JOIN holders h USING (kind, id_key)
    """)  # fmt: skip
    connection.execute(f"""
        COPY (
            SELECT customer_id, id_type, hash(id_value) AS id_value_hash, 'blank_customer_id' AS reason
            FROM read_parquet('{source}') WHERE nullif(trim(customer_id), '') IS NULL
            UNION ALL
            SELECT customer_id, id_type, hash(id_value), reason FROM identities_screened WHERE reason IS NOT NULL
        ) TO '{out / "quarantine" / "identities.parquet"}' (FORMAT parquet)
    """)  # fmt: skip
    edges = connection.sql("""
        WITH edges AS (
            SELECT DISTINCT customer_id, kind, id_key FROM identities_screened WHERE reason IS NULL AND holders >= 2
        )
        SELECT customer_id, dense_rank() OVER (ORDER BY customer_id) - 1 AS customer_code,
            dense_rank() OVER (ORDER BY kind, id_key) - 1 AS node_code
        FROM edges
    """).to_arrow_table()  # fmt: skip
    merged = _merged_accounts(
        edges["customer_id"].to_numpy(zero_copy_only=False),
        edges["customer_code"].to_numpy(),
        edges["node_code"].to_numpy(),
    )
    connection.register("merged", merged)
    pq.write_table(merged, out / "identity" / "merged.parquet")
    kept, customers = connection.execute(
        "SELECT count(*) FILTER (WHERE reason IS NULL), count(DISTINCT customer_id) FROM identities_screened"
    ).fetchone()
    connection.execute("DROP TABLE identities_screened")
    return kept, customers - merged.num_rows


def _duckdb_reason(table: str, work: _Work) -> str:
    """The first rule a row breaks, over the parsed columns ``_customer_id``, ``_ts``,
    ``_amount``, ``_quantity``; NULL for a valid row."""
    rules = ["WHEN nullif(_customer_id, '') IS NULL THEN 'blank_customer_id'"]
    if table in ("transactions", "events"):
        rules += [
            "WHEN _ts IS NULL THEN 'bad_timestamp'",
            f"WHEN _ts > TIMESTAMP '{work.extracted_at}' THEN 'future_timestamp'",
        ]
    if table == "transactions":
        rules += [
            "WHEN NOT coalesce(isfinite(_amount), false) THEN 'non_numeric_amount'",
            f"WHEN abs(_amount) > {_MAX_ABS_AMOUNT} THEN 'amount_out_of_bounds'",
            "WHEN NOT coalesce(isfinite(_quantity), false) THEN 'non_numeric_quantity'",
            "WHEN _amount < 0 AND NOT (_quantity < 0) THEN 'negative_amount'",
        ]
    if table == "events":
        rules.append(f"WHEN NOT coalesce(event_type IN ({_sql_text(_EVENT_TYPES)}), false) THEN 'unknown_event_type'")
    return f"CASE {' '.join(rules)} END"


def _duckdb_table(connection, work: _Work, table: str, partitions: int, out: Path) -> None:
    """Quarantine, deduplicate, key, sort and write one stored table in its parts."""
    parsed = ["trim(customer_id) AS _customer_id"]
    outputs = {column: column for column in work.kept_columns(table)}
    if table in ("transactions", "events"):
        parsed.append(f"try_strptime(trim(ts), '{work.timestamp_format}') AS _ts")
        outputs["ts"] = "_ts"
    if table == "transactions":
        parsed += ["TRY_CAST(trim(amount) AS DOUBLE) AS _amount", "TRY_CAST(quantity AS DOUBLE) AS _quantity"]
        outputs |= {"amount": "_amount", "quantity": "_quantity", "is_return": "_quantity < 0"}
    sensitive = work.sensitive_columns(table)
    raw = ", ".join(work.columns[table])
    connection.execute(f"""
        CREATE TEMP VIEW {table}_checked AS
        SELECT *, {_duckdb_reason(table, work)} AS reason
        FROM (SELECT *, {", ".join(parsed)} FROM read_parquet('{work.sources[table]}'))
    """)  # fmt: skip
    connection.execute(f"""
        COPY (SELECT DISTINCT {raw}, reason FROM {table}_checked WHERE reason IS NOT NULL)
        TO '{out / "quarantine" / f"{table}.parquet"}' (FORMAT parquet)
    """)  # fmt: skip
    # Distinct over the source columns and those parsed from them: the same rows as over the
    # source columns alone, without parsing the kept rows twice.
    selected = ", ".join(f"{expression} AS {column}" for column, expression in outputs.items())
    connection.execute(f"""
        CREATE TEMP TABLE {table}_store AS
        WITH kept AS (SELECT DISTINCT * EXCLUDE (reason) FROM {table}_checked WHERE reason IS NULL),
        keyed AS (
            SELECT hash(coalesce(m.resolved_id, k._customer_id)) AS customer_key, k.*
            FROM kept k LEFT JOIN merged m ON m.customer_id = k._customer_id
        )
        SELECT * FROM (
            SELECT customer_key, customer_key % {partitions} AS part, {selected}{"".join(f", {c}" for c in sensitive)}
            FROM keyed
        ) ORDER BY part, customer_key{"".join(f", {c}" for c in _SORT[table])}
    """)  # fmt: skip
    # The table is in part order, so each part's scan skips the other parts' row groups, and
    # a scan keeps the table's order.
    copies = {"store": ["customer_key", *outputs]}
    if sensitive:
        copies["sensitive"] = ["customer_key", *sensitive]
    for directory, columns in copies.items():
        target = out / directory / table
        target.mkdir(parents=True)
        for number in range(partitions):
            connection.execute(
                f"COPY (SELECT {', '.join(columns)} FROM {table}_store WHERE part = {number}) "
                f"TO '{target / f'part-{number:05d}.parquet'}' (FORMAT parquet)"
            )
    connection.execute(f"DROP TABLE {table}_store")


def run_duckdb(size, workdir, backend_name, workers, clock, data) -> dict:
    """DuckDB: SQL over the world's Parquet, components by SciPy, the store part by part."""
    import duckdb

    work = _Work.of(data["config"])
    out = workdir / "duckdb"
    for directory in ("quarantine", "identity"):
        (out / directory).mkdir(parents=True)
    with clock, contextlib.closing(duckdb.connect()) as connection:
        connection.execute(f"SET threads = {workers}")
        # Spilled data goes beside the outputs (an in-memory database spills to ./.tmp).
        connection.execute(f"SET temp_directory = '{workdir / 'duckdb-spill'}'")
        rows_read = work.rows_read()
        partitions = work.store_partitions(rows_read)
        identities_kept, components = _duckdb_identities(connection, work, out)
        for table in _STORED:
            _duckdb_table(connection, work, table, partitions, out)
    counts = _output_counts(out, rows_read, identities_kept, components, partitions)
    return {"rows": rows_read, "data_path": str(out), "quality": _checked("duckdb", counts, data)}


# ---------------------------------------------------------------------------------------
# polars


def _polars_identities(pl, work: _Work, out: Path):
    """Screen and resolve the identity rows. Returns (merged accounts, rows kept, components)."""
    raw = pl.scan_parquet(work.sources["identities"]).with_columns(pl.col("customer_id").str.strip_chars())
    blank = pl.col("customer_id").fill_null("") == ""
    value = pl.col("id_value").fill_null("")
    cap = pl.lit(work.cap)
    for kind, kind_cap in work.caps.items():
        cap = pl.when(pl.col("kind") == kind).then(kind_cap).otherwise(cap)
    marked = (
        raw.filter(~blank).unique()
        .with_columns(kind=pl.col("id_type").fill_null("").str.strip_chars().str.to_lowercase())
        .with_columns(
            id_key=pl.when(pl.col("kind").is_in(_PHONE_TYPES))
            .then(value.str.replace_all(r"\D", ""))
            .otherwise(value.str.strip_chars().str.to_lowercase())
        )
        .with_columns(blocked=pl.col("id_key").is_in(work.blocked) | pl.col("id_key").str.contains(f"^{_NO_SIGNAL}$"))
    )  # fmt: skip
    holders = marked.filter(~pl.col("blocked")).group_by("kind", "id_key").agg(holders=pl.col("customer_id").n_unique())
    screened = (
        marked.join(holders, on=["kind", "id_key"], how="left")
        .with_columns(pl.col("holders").fill_null(0))
        .with_columns(
            reason=pl.when("blocked").then(pl.lit(_BLOCKED))
            .when(pl.col("holders") > cap).then(pl.lit(_OVER_CAP))
            .otherwise(pl.lit(None, pl.String))
        )
        .collect()
    )  # fmt: skip
    quarantine = pl.concat([
        raw.filter(blank).with_columns(reason=pl.lit("blank_customer_id")),
        screened.lazy().filter(pl.col("reason").is_not_null()),
    ], how="diagonal")  # fmt: skip
    quarantine.select(
        "customer_id", "id_type", pl.col("id_value").hash().alias("id_value_hash"), "reason"
    ).sink_parquet(out / "quarantine" / "identities.parquet")  # fmt: skip
    edges = (
        screened.filter(pl.col("reason").is_null() & (pl.col("holders") >= 2))
        .select("customer_id", node=pl.concat_str("kind", "id_key", separator="\x1f"))
        .unique()
        .with_columns(
            customer_code=pl.col("customer_id").rank("dense") - 1,
            node_code=pl.col("node").rank("dense") - 1,
        )
    )  # fmt: skip
    merged = _merged_accounts(
        edges["customer_id"].to_numpy(),
        edges["customer_code"].to_numpy().astype(np.int64),
        edges["node_code"].to_numpy().astype(np.int64),
    )
    pq.write_table(merged, out / "identity" / "merged.parquet")
    kept = screened.filter(pl.col("reason").is_null()).height
    return pl.from_arrow(merged), kept, screened["customer_id"].n_unique() - merged.num_rows


def _polars_reason(pl, table: str, work: _Work):
    """The first rule a row breaks, over the parsed columns; null for a valid row."""
    rules = [("blank_customer_id", pl.col("_customer_id").fill_null("") == "")]
    if table in ("transactions", "events"):
        rules += [("bad_timestamp", pl.col("_ts").is_null()), ("future_timestamp", pl.col("_ts") > work.extracted_at)]
    if table == "transactions":
        rules += [
            ("non_numeric_amount", ~pl.col("_amount").is_finite().fill_null(False)),
            ("amount_out_of_bounds", pl.col("_amount").abs() > _MAX_ABS_AMOUNT),
            ("non_numeric_quantity", ~pl.col("_quantity").is_finite().fill_null(False)),
            ("negative_amount", (pl.col("_amount") < 0) & ~(pl.col("_quantity") < 0)),
        ]
    if table == "events":
        rules.append(("unknown_event_type", ~pl.col("event_type").is_in(_EVENT_TYPES).fill_null(False)))
    (code, broken), *later = rules
    reason = pl.when(broken).then(pl.lit(code))
    for code, broken in later:
        reason = reason.when(broken).then(pl.lit(code))
    return reason.otherwise(pl.lit(None, pl.String))


def _polars_table(pl, work: _Work, table: str, partitions: int, merged, out: Path) -> None:
    """Quarantine, key, deduplicate, sort and sink one stored table in its parts.

    Two streaming passes, so that memory holds one part, not the table: the first sinks the
    valid rows by part, keyed but with their duplicates (a row's copies share its key, hence
    its part); the second dedupes and sorts each part. In one pass, ``unique`` and ``sort``
    held every row of the table at once: 2.8 GiB for the events of 100k customers.
    """
    parsed = [pl.col("customer_id").str.strip_chars().alias("_customer_id")]
    outputs = {column: pl.col(column) for column in work.kept_columns(table)}
    if table in ("transactions", "events"):
        ts = pl.col("ts").str.strip_chars().str.strptime(pl.Datetime("us"), work.timestamp_format, strict=False)
        parsed.append(ts.alias("_ts"))
        outputs["ts"] = pl.col("_ts")
    if table == "transactions":
        parsed += [
            pl.col("amount").str.strip_chars().cast(pl.Float64, strict=False).alias("_amount"),
            pl.col("quantity").cast(pl.Float64, strict=False).alias("_quantity"),
        ]
        outputs |= {"amount": pl.col("_amount"), "quantity": pl.col("_quantity"), "is_return": pl.col("_quantity") < 0}
    sensitive = work.sensitive_columns(table)
    source = work.columns[table]
    checked = (
        pl.scan_parquet(work.sources[table]).with_columns(parsed).with_columns(reason=_polars_reason(pl, table, work))
    )
    keyed = (
        checked.filter(pl.col("reason").is_null()).drop("reason")
        .join(merged.lazy(), left_on="_customer_id", right_on="customer_id", how="left")
        .with_columns(customer_key=pl.coalesce("resolved_id", "_customer_id").hash())
        .with_columns(part=pl.col("customer_key") % partitions)
    )  # fmt: skip
    staging = out / "staging" / table
    pl.collect_all([
        checked.filter(pl.col("reason").is_not_null()).select(*source, "reason").unique()
        .sink_parquet(out / "quarantine" / f"{table}.parquet", lazy=True),
        keyed.sink_parquet(_parts(pl, staging), mkdir=True, lazy=True),
    ], engine="streaming")  # fmt: skip
    for number in range(partitions):
        name = f"part-{number:05d}.parquet"
        if not (staging / name).exists():  # no row of this table went to this part
            continue
        # Exact duplicates are judged on the source columns, as for the peers' other tables.
        rows = (
            pl.scan_parquet(staging / name).unique(subset=list(source))
            .select("customer_key", *[expression.alias(column) for column, expression in outputs.items()], *sensitive)
            .sort("customer_key", *_SORT[table])
        )  # fmt: skip
        sinks = [rows.drop(*sensitive).sink_parquet(out / "store" / table / name, mkdir=True, lazy=True)]
        if sensitive:
            sensitive_rows = rows.select("customer_key", *sensitive)
            sinks.append(sensitive_rows.sink_parquet(out / "sensitive" / table / name, mkdir=True, lazy=True))
        pl.collect_all(sinks, engine="streaming")
    shutil.rmtree(staging)


def _parts(pl, directory: Path):
    """One file per part, named as segscale names its store parts."""
    return pl.PartitionBy(
        directory, key="part", include_key=False, approximate_bytes_per_file=None,
        file_path_provider=lambda part: f"part-{part.partition_keys['part'][0]:05d}.parquet",
    )  # fmt: skip


def run_polars(size, workdir, backend_name, workers, clock, data) -> dict:
    """polars: lazy frames over the world's Parquet, sunk by the streaming engine."""
    import polars as pl

    work = _Work.of(data["config"])
    out = workdir / "polars"
    for directory in ("quarantine", "identity"):
        (out / directory).mkdir(parents=True)
    with clock:
        rows_read = work.rows_read()
        partitions = work.store_partitions(rows_read)
        merged, identities_kept, components = _polars_identities(pl, work, out)
        for table in _STORED:
            _polars_table(pl, work, table, partitions, merged, out)
    counts = _output_counts(out, rows_read, identities_kept, components, partitions)
    return {"rows": rows_read, "data_path": str(out), "quality": _checked("polars", counts, data)}
