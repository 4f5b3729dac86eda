"""Generate a synthetic customer world chunk by chunk, in parallel, with its truth kept apart.

Chunk ``i`` holds people ``[i * chunk_size, (i + 1) * chunk_size)`` and draws from its own
random stream ``SeedSequence(seed, spawn_key=(i,))``, so the output is byte-identical
whatever the number of workers, and memory stays flat: a worker holds one chunk at a time
and writes it straight to Parquet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..backend import dask_client, resolve_backend, usable_cores
from ..contract import EVENT_TYPES
from ..exceptions import UsageError
from . import _dirt
from ._activity import EVENT_CHANNELS, behavioural_events, order_lines
from ._archetypes import ARCHETYPE_NAMES, ARCHETYPES, CATEGORIES, PURCHASE_CHANNELS
from ._identity import assign_accounts, draw_accounts, profiles_and_identities
from ._people import TRUTH_HORIZONS_DAYS, draw_people, purchase_truth

logger = logging.getLogger(__name__)

DEFAULT_START = date(2024, 1, 1)
DEFAULT_END = date(2025, 12, 31)
DEFAULT_CHUNK_SIZE = 25_000
DATA_TABLES = ("transactions", "events", "customers", "identities")
TRUTH_TABLES = ("persons", "accounts", "dirty_rows")
CONFIG_NAME = "segscale.toml"
_ORDER_ID_STRIDE = 10**9  # order ids of chunk i: i * stride + 1, ...
_STAGING = ".segscale-staging"
_UTC = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines the world's bytes."""

    customers: int
    seed: int = 0
    start: date = DEFAULT_START
    end: date = DEFAULT_END
    dirt: float = 0.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    simulate_future: bool = False

    @property
    def horizon_days(self) -> int:
        """Length of the window; the window is [start 00:00 UTC, end + 1 day 00:00 UTC)."""
        return (self.end - self.start).days + 1

    @property
    def n_chunks(self) -> int:
        return -(-self.customers // self.chunk_size)

    def validate(self) -> None:
        if self.customers < 1:
            raise UsageError(f"--customers must be at least 1, got {self.customers}")
        if self.seed < 0:
            raise UsageError(f"--seed must be non-negative, got {self.seed}")
        if self.end <= self.start:
            raise UsageError(f"--end ({self.end}) must be after --start ({self.start})")
        if not 0.0 <= self.dirt <= 0.5:
            raise UsageError(f"--dirt is a share of rows between 0 and 0.5, got {self.dirt}")
        if self.chunk_size < 1:
            raise UsageError(f"chunk size must be at least 1, got {self.chunk_size}")


@dataclass
class WorldSummary:
    """What ``generate_world`` wrote."""

    out_dir: Path
    spec: WorldSpec
    persons: int
    accounts: int
    rows: dict[str, int]
    dirty_rows: dict[str, dict[str, int]]
    archetypes: dict[str, int]
    seconds: float
    config_path: Path = field(init=False)

    def __post_init__(self):
        self.config_path = self.out_dir / CONFIG_NAME

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "config": str(self.config_path),
            "customers": self.persons,
            "accounts": self.accounts,
            "seed": self.spec.seed,
            "start": self.spec.start.isoformat(),
            "end": self.spec.end.isoformat(),
            "dirt": self.spec.dirt,
            "chunks": self.spec.n_chunks,
            "rows": self.rows,
            "dirty_rows": self.dirty_rows,
            "archetypes": self.archetypes,
            "seconds": round(self.seconds, 3),
        }


def _timestamps(start_micros, day):
    # Floor, not round: the last instant of the window must not land on its exclusive end.
    seconds = np.floor(day * 86_400).astype(np.int64)
    return pa.array(start_micros + seconds * 10**6, type=pa.int64()).cast(_UTC)


def _labels(names, index):
    """Strings for integer codes; negative codes become nulls."""
    index = np.asarray(index)
    codes = pa.array(index.astype(np.int32), mask=index < 0)
    return pa.array(names, type=pa.string()).take(codes)


def _in_time_order(columns):
    """Sort a dict of equal-length arrays by its ``day`` (raw exports come in time order)."""
    order = np.argsort(columns["day"], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def _chunk_tables(spec: WorldSpec, chunk_index: int):
    """Draw one chunk: the four raw tables, truth tables and counts."""
    first = chunk_index * spec.chunk_size
    count = min(spec.chunk_size, spec.customers - first)
    streams = np.random.SeedSequence(spec.seed, spawn_key=(chunk_index,)).spawn(5)
    people_rng, identity_rng, activity_rng, truth_rng, dirt_rng = map(np.random.default_rng, streams)
    horizon = spec.horizon_days
    start_micros = int(datetime(spec.start.year, spec.start.month, spec.start.day, tzinfo=timezone.utc).timestamp()) * 10**6

    people = draw_people(people_rng, first, count, horizon)
    accounts = draw_accounts(identity_rng, people, horizon, spec.seed)
    profiles, identities = profiles_and_identities(identity_rng, people, accounts, spec.seed)
    lines, order_day = order_lines(people, activity_rng, horizon)
    events = behavioural_events(people, activity_rng, horizon, order_day, lines)
    order_account = assign_accounts(activity_rng, accounts, people.order_person, order_day)
    lines["account"] = order_account[lines["order"]]
    events["account"] = assign_accounts(activity_rng, accounts, events["person"], events["day"])
    lines, events = _in_time_order(lines), _in_time_order(events)
    account_ids = pa.array(accounts.customer_id, type=pa.string())

    tables = {
        "transactions": pa.table(
            {
                "customer_id": account_ids.take(pa.array(lines["account"])),
                "ts": _timestamps(start_micros, lines["day"]),
                "order_id": pa.array(chunk_index * _ORDER_ID_STRIDE + 1 + lines["order"].astype(np.int64)),
                "quantity": pa.array(lines["quantity"]),
                "amount": pa.array(lines["amount"]),
                "discount": pa.array(lines["discount"]),
                "category": _labels(CATEGORIES, lines["category"]),
                "channel": _labels(PURCHASE_CHANNELS, lines["channel"]),
            }
        ),
        "events": pa.table(
            {
                "customer_id": account_ids.take(pa.array(events["account"])),
                "ts": _timestamps(start_micros, events["day"]),
                "event_type": _labels(EVENT_TYPES, events["event_type"]),
                "channel": _labels(EVENT_CHANNELS, events["channel"]),
                "category": _labels(CATEGORIES, events["category"]),
            }
        ),
        "customers": pa.table(
            {
                "customer_id": account_ids,
                "signup_ts": _timestamps(start_micros, profiles["signup_day"]),
                **{key: pa.array(profiles[key]) for key in ("region", "age_band", "gender", "loyalty_member", "full_name", "email")},
                "phone": pa.array(profiles["phone"], type=pa.string()),
            }
        ),
        "identities": pa.table(
            {
                "customer_id": account_ids.take(pa.array(identities["account"])),
                "id_type": pa.array(identities["id_type"]),
                "id_value": pa.array(identities["id_value"]),
            }
        ),
    }

    dirty = {"table": [], "row": [], "fault": []}
    if spec.dirt > 0:
        for name in DATA_TABLES:
            tables[name], rows, faults = _dirt.inject(
                tables[name], name, dirt_rng, spec.dirt, window_end_micros=start_micros + horizon * _dirt.MICROS_PER_DAY
            )
            dirty["table"].append(np.full(rows.size, name))
            dirty["row"].append(rows)
            dirty["fault"].append(faults)

    truth = purchase_truth(people, truth_rng, horizon, spec.simulate_future)
    category_mix = people.category_mix.astype(np.float32)
    persons = pa.table(
        {
            "person_id": pa.array(people.person_id),
            "archetype": _labels(ARCHETYPE_NAMES, people.archetype),
            "acquisition_ts": _timestamps(start_micros, people.acquisition_day),
            "purchase_rate_per_day": pa.array(people.purchase_rate),
            "decline_per_day": pa.array(people.decline_per_day),
            "dropout_p": pa.array(people.dropout_p),
            "spend_shape": pa.array(people.spend_shape),
            "spend_nu": pa.array(people.spend_nu),
            "mean_order_value": pa.array(people.spend_shape / people.spend_nu),
            "top_category": _labels(CATEGORIES, category_mix.argmax(axis=1)),
            "category_mix": pa.FixedSizeListArray.from_arrays(category_mix.ravel(), len(CATEGORIES)),
            "channel_mix": pa.FixedSizeListArray.from_arrays(
                people.channel_mix.astype(np.float32).ravel(), len(PURCHASE_CHANNELS)
            ),
            "discount_propensity": pa.array(people.discount_propensity),
            "return_rate": pa.array(people.return_rate),
            "browse_sessions_per_day": pa.array(people.browse_rate),
            "email_open_rate": pa.array(people.email_open_rate),
            "email_click_rate": pa.array(people.email_click_rate),
            "orders_in_window": pa.array(people.orders_in_window),
            "alive_at_end": pa.array(people.alive_at_end),
            **{name: pa.array(values) for name, values in truth.items()},
        }
    )
    truth_tables = {
        "persons": persons,
        "accounts": pa.table(
            {
                "customer_id": account_ids,
                "person_id": pa.array(people.person_id[accounts.person]),
                "account_slot": pa.array(accounts.slot.astype(np.int8)),
                "link_type": pa.array(accounts.link_type),
                "opened_ts": _timestamps(start_micros, accounts.opened_day),
            }
        ),
        "dirty_rows": pa.table(
            {
                "table": pa.array(np.concatenate(dirty["table"]) if dirty["table"] else [], type=pa.string()),
                "file": pa.array(
                    [f"part-{chunk_index:05d}.parquet"] * sum(len(r) for r in dirty["row"]), type=pa.string()
                ),
                "row": pa.array(np.concatenate(dirty["row"]) if dirty["row"] else [], type=pa.int64()),
                "fault": pa.array(np.concatenate(dirty["fault"]) if dirty["fault"] else [], type=pa.string()),
            }
        ),
    }
    return tables, truth_tables


def generate_chunk(spec: WorldSpec, chunk_index: int, staging_dir: str) -> dict:
    """Generate chunk ``chunk_index`` and write it under ``staging_dir``; return its counts."""
    tables, truth_tables = _chunk_tables(spec, chunk_index)
    part = f"part-{chunk_index:05d}.parquet"
    staging = Path(staging_dir)
    for name, table in tables.items():
        pq.write_table(table, staging / name / part)
    for name, table in truth_tables.items():
        pq.write_table(table, staging / "truth" / name / part)
    dirty = truth_tables["dirty_rows"]
    dirty_counts: dict[str, dict[str, int]] = {}
    for table_name, fault in zip(dirty.column("table").to_pylist(), dirty.column("fault").to_pylist()):
        by_fault = dirty_counts.setdefault(table_name, {})
        by_fault[fault] = by_fault.get(fault, 0) + 1
    archetypes = truth_tables["persons"].column("archetype").value_counts().to_pylist()
    return {
        "persons": truth_tables["persons"].num_rows,
        "accounts": truth_tables["accounts"].num_rows,
        "rows": {name: table.num_rows for name, table in tables.items()},
        "dirty_rows": dirty_counts,
        "archetypes": {item["values"]: item["counts"] for item in archetypes},
    }


def _merge_counts(total: dict, part: dict) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            _merge_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


def _run_config_text(spec: WorldSpec, holdout_days: int = 0, output_dir: str = "run") -> str:
    extracted_at = spec.end + timedelta(days=1)
    as_of = extracted_at - timedelta(days=holdout_days)
    lines = [
        f"# Run config for the synthetic world written by `segscale generate` (seed {spec.seed},",
        f"# {spec.customers} customers, {spec.start}..{spec.end}). Paths are relative to this file.",
        "# Ground truth lives in truth/ and is never read by the pipeline.",
    ]
    if holdout_days:
        lines += [
            f"# A backtest: as of {as_of}, with the world's last {holdout_days} days held out, so segments,",
            "# propensity and value are checked against what customers did next.",
        ]
    lines += [
        "",
        "[run]",
        f'output_dir = "{output_dir}"',
        f"seed = {spec.seed}",
        f"as_of = {as_of.isoformat()}",
    ]
    for name in DATA_TABLES:
        lines += ["", f"[inputs.{name}]", f'path = "{name}"', 'format = "parquet"', 'timezone = "UTC"']
        if spec.dirt > 0 and name in ("transactions", "events"):
            lines.append(f'timestamp_format = "{_dirt.TIMESTAMP_TEXT_FORMAT}"')
    lines += [
        "",
        "[ingest]",
        "# The world was extracted when its window closed: later timestamps are clock skew.",
        f"extracted_at = {extracted_at.isoformat()}",
        "# Synthetic data only: for real data set SEGSCALE_PSEUDONYM_KEY instead of writing a key here.",
        f'pseudonym_key = "synthetic-world-{spec.seed}"',
        "",
        "[features]",
        "# Computed as of [run] as_of; docs/features.md defines each feature.",
        "windows = [30, 90, 365]",
        "top_categories = 5",
    ]
    if holdout_days:
        lines += ["", "[segments]", f"outcome_days = {holdout_days}", "", "[value]", f"horizon_days = {holdout_days}"]
    return "\n".join(lines) + "\n"


def write_backtest_config(world_dir, spec: WorldSpec, holdout_days: int, name: str = "backtest.toml") -> Path:
    """Write a run config for ``spec``'s world as of ``holdout_days`` before its end.

    The held-out days are what the segment evaluation, the propensity labels and the value
    holdout measure against; the run writes to ``run-backtest/`` beside the world.
    """
    if not 1 <= holdout_days < spec.horizon_days:
        raise UsageError(f"holdout days must be between 1 and {spec.horizon_days - 1}, got {holdout_days}")
    path = Path(world_dir) / name
    path.write_text(_run_config_text(spec, holdout_days, output_dir="backtest"))
    return path


def _world_metadata(spec: WorldSpec, counts: dict) -> dict:
    return {
        "generator": "segscale generate",
        "spec": {**dataclasses.asdict(spec), "start": spec.start.isoformat(), "end": spec.end.isoformat()},
        "window": {
            "start": f"{spec.start.isoformat()}T00:00:00Z",
            "end_exclusive": f"{(spec.end + timedelta(days=1)).isoformat()}T00:00:00Z",
            "days": spec.horizon_days,
        },
        "truth_horizons_days": list(TRUTH_HORIZONS_DAYS),
        "archetypes": [dataclasses.asdict(archetype) for archetype in ARCHETYPES],
        "categories": list(CATEGORIES),
        "purchase_channels": list(PURCHASE_CHANNELS),
        "event_types": list(EVENT_TYPES),
        "event_channels": list(EVENT_CHANNELS),
        "faults": {name: list(faults) for name, faults in _dirt.FAULTS.items()},
        "counts": counts,
    }


def _prepare_output(out_dir: Path, overwrite: bool) -> Path:
    ours = (*DATA_TABLES, "truth", CONFIG_NAME, _STAGING)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory; choose another --out")
    if out_dir.exists():
        clashing = sorted(entry.name for entry in out_dir.iterdir() if entry.name in ours)
        if clashing and not overwrite:
            raise UsageError(
                f"{out_dir}: already holds a world ({', '.join(clashing)}); "
                "pass --overwrite to replace it or choose another --out"
            )
    staging = out_dir / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    for name in (*DATA_TABLES, *(f"truth/{t}" for t in TRUTH_TABLES)):
        (staging / name).mkdir(parents=True)
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    """Move staged outputs into place, replacing a previous world's entries."""
    for entry in sorted(staging.iterdir()):
        target = out_dir / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    staging.rmdir()


def generate_world(out_dir, spec: WorldSpec, *, client=None, progress=None, overwrite=False) -> WorldSummary:
    """Write the world described by ``spec`` under ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Receives ``transactions/``, ``events/``, ``customers/``, ``identities/`` (one Parquet
        file per chunk), ``truth/`` (``persons/``, ``accounts/``, ``dirty_rows/``,
        ``world.json``) and ``segscale.toml``, a run config for this world.
    spec : WorldSpec
    client : distributed.Client, optional
        Chunks run as tasks on its workers (which must see ``out_dir``); without one they
        run one after another in this process.
    progress : callable, optional
        Called as ``progress(chunks_done, chunks_total)`` after each chunk.
    overwrite : bool, default False
        Replace a world already in ``out_dir``; without it that is a ``UsageError``.
    """
    spec.validate()
    out_dir = Path(out_dir).resolve()
    staging = _prepare_output(out_dir, overwrite)
    started = time.perf_counter()
    counts: dict = {}
    chunks = range(spec.n_chunks)
    try:
        if client is None:
            results = (generate_chunk(spec, index, str(staging)) for index in chunks)
        else:
            from distributed import as_completed

            futures = client.map(generate_chunk, [spec] * len(chunks), chunks, staging_dir=str(staging), pure=False)
            results = (future.result() for future in as_completed(futures))
        for done, chunk_counts in enumerate(results, start=1):
            _merge_counts(counts, chunk_counts)
            if progress is not None:
                progress(done, spec.n_chunks)
            logger.debug("chunk %d of %d written", done, spec.n_chunks)
        # Chunks finish in any order, so sort keys for byte-identical metadata.
        metadata = json.dumps(_world_metadata(spec, counts), indent=2, sort_keys=True)
        (staging / "truth" / "world.json").write_text(metadata + "\n")
        (staging / CONFIG_NAME).write_text(_run_config_text(spec))
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WorldSummary(
        out_dir=out_dir,
        spec=spec,
        persons=counts["persons"],
        accounts=counts["accounts"],
        rows={name: counts["rows"][name] for name in DATA_TABLES},
        dirty_rows={
            name: dict(sorted(counts["dirty_rows"][name].items()))
            for name in DATA_TABLES
            if name in counts.get("dirty_rows", {})
        },
        archetypes={name: counts["archetypes"].get(name, 0) for name in ARCHETYPE_NAMES},
        seconds=time.perf_counter() - started,
    )


def generate(out_dir, spec: WorldSpec, *, workers=None, scheduler=None, progress=None, overwrite=False) -> WorldSummary:
    """``generate_world`` on the right executor.

    In this process when there is one chunk or one worker; otherwise on a local Dask
    cluster of ``workers`` processes (default: one per usable core, at most one per chunk)
    or on the cluster at ``scheduler``.
    """
    spec.validate()
    workers = min(workers or usable_cores(), spec.n_chunks)
    if scheduler is None and workers <= 1:
        return generate_world(out_dir, spec, progress=progress, overwrite=overwrite)
    with dask_client(resolve_backend("cpu"), scheduler=scheduler, workers=workers) as client:
        return generate_world(out_dir, spec, client=client, progress=progress, overwrite=overwrite)
