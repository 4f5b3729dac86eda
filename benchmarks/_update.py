"""``segscale update`` against a full ``segscale run`` at the same as-of (issue 28).

Issue 28's target: on N customers with a week of new rows for 1% of them, ``update`` at
least 10x faster than a full ``run`` over all the data as of the same day.

The data are the ``update-run`` dataset, built once per size, untimed:

- a world of ``size`` customers (seed 0, 1% dirt) as the ``pipeline`` case writes it, whose
  transactions and events are split at A = B - 7 days, B being the world's own as-of (the
  day after its end): the **old** inputs hold every row whose ``ts`` sorts before A (one
  Parquet file per world part, read with pyarrow's row filter; the world's own files are
  deleted once split, to save the disk), the **new** ones the rows with A <= ts < B of 1% of
  the customers (``size // 100`` customer ids drawn with seed 0 among those with rows in
  that week), one Parquet file per table. The week's dirt comes along as it is. ``ts`` is
  compared as the world writes it (text, with 1% dirt), so an unparseable timestamp falls in
  the old rows or in none, the same for both cases;
- the **base run**: ``run_pipeline`` over the old inputs as of A, every stage at its defaults
  (``[ingest] partitions`` included), no report, on a local cluster of ``workers``;
- for the full run, a directory per table of hard links to the old parts and the new file,
  named to sort after them, so it reads the old rows and then the new, as an update appends.

- ``update-full-run`` (runs first): ``run_pipeline`` over old + new as of B, no report, on a
  cluster started outside the clock: what a refresh costs without ``update`` (ingest,
  features, segments, propensity and value, refitting). It leaves its time in the shared data.
- ``update``: the base run copied into the work directory (untimed), then
  ``engine.update.update_run`` with the new files as of B (timed), on a cluster started
  outside the clock. Quality: each step's seconds, the partitions appended to and rewritten (of the store's),
  new rows read, kept, quarantined and duplicate, customers with new rows, changes per label,
  whether the models are stale, and, when ``update-full-run`` ran before it at this size,
  its seconds and ``speedup_vs_full_run`` (its time over the update's; also the runner's
  ``speedup_vs``).

Both report customers as their ``total_rows``, so rows/s reads as customers refreshed a second.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["prepare_update_run", "run_full_run", "run_update"]

TABLES = ("transactions", "events")
NEW_DAYS = 7
NEW_SHARE = 0.01


def _bound(column_type: pa.DataType, day) -> pa.Scalar:
    """``day`` at 00:00 UTC as a value comparable with a ``ts`` column of ``column_type``."""
    if pa.types.is_string(column_type) or pa.types.is_large_string(column_type):
        return pa.scalar(f"{day.isoformat()} 00:00:00", type=column_type)
    return pa.scalar(datetime(day.year, day.month, day.day, tzinfo=timezone.utc)).cast(column_type)


def _split(world_table: Path, old_dir: Path, first, end) -> tuple[pa.Table, int]:
    """Write each world part's rows before ``first`` to ``old_dir`` (same order, one file per part);
    return the rows in [first, end) of every part, and the old parts' count."""
    old_dir.mkdir(parents=True)
    window, files = [], sorted(world_table.glob("*.parquet"))
    for number, path in enumerate(files):
        ts_type = pq.read_schema(path).field("ts").type
        start, stop = _bound(ts_type, first), _bound(ts_type, end)
        pq.write_table(pq.read_table(path, filters=pc.field("ts") < start), old_dir / f"part-{number:05d}.parquet")
        window.append(pq.read_table(path, filters=(pc.field("ts") >= start) & (pc.field("ts") < stop)))
    return pa.concat_tables(window), len(files)


def _inputs(config, root: Path) -> dict:
    """The config's inputs with transactions and events read from ``root / table``."""
    return {**config.inputs, **{table: dataclasses.replace(config.inputs[table], path=str(root / table)) for table in TABLES}}


def prepare_update_run(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.pipeline import run_pipeline

    from ._pipeline import dirty_world

    directory.mkdir(parents=True, exist_ok=True)
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        config = dirty_world(size, directory, client, backend_name)
        as_of = config.run.as_of
        previous = as_of - timedelta(days=NEW_DAYS)
        windows, old_parts = {}, {}
        for table in TABLES:
            world_table = Path(config.inputs[table].path)
            windows[table], old_parts[table] = _split(world_table, directory / "old" / table, previous, as_of)
            shutil.rmtree(world_table)  # the old parts hold those rows now
        # The customer ids with rows in the week (blank ones are dirt), sorted: the draw is reproducible.
        ids = pa.chunked_array([windows[table].column("customer_id").cast(pa.string()) for table in TABLES])
        ids = pc.unique(ids.drop_null()).to_numpy(zero_copy_only=False).astype(str)
        active = np.sort(ids[np.char.strip(ids) != ""])
        chosen = np.random.default_rng(0).choice(active, min(len(active), max(1, size // 100)), replace=False)
        new, new_rows = {}, {}
        for table in TABLES:
            rows = windows[table].filter(pc.is_in(windows[table].column("customer_id"), pa.array(chosen, pa.string())))
            new[table], new_rows[table] = directory / "new" / f"{table}.parquet", rows.num_rows
            new[table].parent.mkdir(exist_ok=True)
            pq.write_table(rows, new[table])
            every = directory / "all" / table
            every.mkdir(parents=True)
            for path in sorted((directory / "old" / table).iterdir()):
                os.link(path, every / path.name)
            shutil.copy(new[table], every / f"part-{old_parts[table]:05d}.parquet")
        base = dataclasses.replace(config, inputs=_inputs(config, directory / "old"),
                                   run=dataclasses.replace(config.run, output_dir=directory / "base", as_of=previous))  # fmt: skip
        everything = dataclasses.replace(config, inputs=_inputs(config, directory / "all"))
        started = time.perf_counter()
        run_pipeline(base, client=client, report=False)
        base_seconds = time.perf_counter() - started
    return {
        "base": base, "everything": everything, "new": new, "as_of": as_of, "previous_as_of": previous,
        "new_rows": new_rows, "customers_with_new_rows": len(chosen), "base_run_seconds": round(base_seconds, 2),
    }  # fmt: skip


def _with_output(config, output_dir: Path):
    return dataclasses.replace(config, run=dataclasses.replace(config.run, output_dir=output_dir))


def run_full_run(size, workdir, backend_name, workers, clock, data) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.pipeline import run_pipeline

    config = _with_output(data["everything"], workdir / "run")
    started = time.perf_counter()
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        setup_seconds = time.perf_counter() - started
        with clock:
            summary = run_pipeline(config, client=client, report=False)
    data["full_run_seconds"] = clock.seconds
    manifest = summary.manifest
    quality = {f"{name}_seconds": stage["seconds"] for name, stage in manifest["stages"].items()
               if stage.get("status") == "ran"}  # fmt: skip
    customers = manifest["metrics"].get("segments", {}).get("customers")
    quality |= {"as_of": manifest["as_of"], "customers": customers, "segments": manifest["metrics"].get("segments", {}).get("k")}
    rows_read = sum(counts["read"] for counts in manifest["rows"].values())
    return {
        "rows": {"customers": customers, "rows_read": rows_read}, "total_rows": customers,
        "setup_seconds": setup_seconds, "workers": workers, "data_path": str(summary.run_dir), "quality": quality,
    }  # fmt: skip


def run_update(size, workdir, backend_name, workers, clock, data) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.ingest import read_store_meta
    from engine.layout import RunLayout
    from engine.update import update_run

    run = workdir / "run"
    shutil.copytree(data["base"].run.output_dir, run)
    config = _with_output(data["base"], run)
    started = time.perf_counter()
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        setup_seconds = time.perf_counter() - started
        with clock:
            summary = update_run(config, data["new"], as_of=data["as_of"], backend_name=backend_name, client=client)
    tables = summary.tables
    kept = sum(counts["kept"] for counts in tables.values())
    quality = {f"{step}_seconds": seconds for step, seconds in summary.seconds.items()}
    quality |= {
        "as_of": summary.as_of, "previous_as_of": summary.previous_as_of,
        "partitions_appended": summary.partitions_appended, "partitions_rewritten": summary.partitions_rewritten,
        "partitions": int(read_store_meta(RunLayout(run).store.root)["partitions"]),
        "new_rows_read": sum(counts["read"] for counts in tables.values()), "new_rows_kept": kept,
        "new_rows_quarantined": sum(sum(counts["quarantined"].values()) for counts in tables.values()),
        "new_rows_duplicates": sum(counts["duplicates"] for counts in tables.values()),
        "customers_with_new_rows": summary.customers_with_rows, "new_customers": summary.new_customers,
        **{f"changes_{name.replace(':', '_')}": count for name, count in summary.changes.items()},
        "stale": summary.stale, "shifted_columns": len(summary.shifted),
    }  # fmt: skip
    full = data.get("full_run_seconds")
    if full is not None and clock.seconds:
        quality |= {"full_run_seconds": round(full, 2), "speedup_vs_full_run": round(full / clock.seconds, 2)}
    return {
        "rows": {"customers": summary.customers, "new_rows": kept}, "total_rows": summary.customers,
        "setup_seconds": setup_seconds, "workers": workers, "data_path": str(run), "quality": quality,
    }  # fmt: skip
