"""The lookalike benchmark (issue 32): seeds drawn from the planted archetypes of a synthetic
world, and how many of their lookalikes share the seed's archetype.

The data are the ``backtest-world`` dataset (a world of N customers, seed 0, 1% dirt, its store
and features as of 90 days before its end, and each customer key's archetype), built once,
untimed; the stage sees a run directory of links to its store and features.

- ``lookalike``: ``engine.lookalike.find_lookalikes`` for a seed of 1% of the customers (10,000
  at 1M) drawn from the largest archetype, timed. Quality: for every archetype with at least
  200 customers, a seed of min(1,000, half of it) and as many lookalikes: their precision (the
  share of the archetype's), untimed.
- Beside it, the method the engine did not choose, measured on the same seeds: **nearest
  neighbours** (the backend's ``NearestNeighbors``: brute force at these widths) on the run's numeric features,
  signed-log and standardised, each non-seed customer scored by its mean distance to its 10
  nearest seed customers, the closest kept (``neighbours_seconds`` for the timed seed, from
  features in memory; ``neighbours_precision_<archetype>``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["run_lookalike"]

_MIN_ARCHETYPE = 200
_NEIGHBOURS = 10


def _run_view(data: dict, workdir: Path) -> Path:
    """A run directory of links to the dataset's store and features."""
    view = workdir / "run"
    (view / "ingest").mkdir(parents=True, exist_ok=True)
    for link, target in ((view / "features", Path(data["features"])),
                         (view / "ingest" / "store", Path(data["features"]).parent / "run" / "ingest" / "store"),
                         (view / "ingest" / "identity", Path(data["features"]).parent / "run" / "ingest" / "identity")):  # fmt: skip
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)
    return view


def _precision(run: Path, truth: pd.DataFrame, archetype: str, seed_size: int, workdir: Path, **options) -> float:
    from engine.lookalike import find_lookalikes

    members = truth[truth["archetype"] == archetype]
    seed = members.sample(seed_size, random_state=0)[["customer_key"]]
    seed.to_csv(workdir / "seed.csv", index=False)
    find_lookalikes(run, workdir / "seed.csv", workdir / "found", size=seed_size, **options)
    found = pd.read_parquet(workdir / "found" / "lookalikes.parquet").merge(truth, on="customer_key", how="left")
    return float((found["archetype"] == archetype).mean())


def _neighbour_space(features_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every customer's key and numeric features, signed-log and standardised (NaN as the mean)."""
    table = pq.read_table(features_dir)
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    matrix = table.select(numeric).to_pandas().to_numpy(dtype="float64", na_value=np.nan)
    matrix = np.sign(matrix) * np.log1p(np.abs(matrix))
    mean, spread = np.nanmean(matrix, axis=0), np.nanstd(matrix, axis=0)
    matrix = np.nan_to_num((matrix - mean) / np.where(spread > 0, spread, 1.0))
    return table.column("customer_key").to_numpy(zero_copy_only=False), matrix.astype("float32")


def _neighbours(keys: np.ndarray, matrix: np.ndarray, seed_keys, size: int, backend) -> np.ndarray:
    """The ``size`` non-seed keys closest on average to their nearest seed customers."""
    in_seed = np.isin(keys, np.asarray(seed_keys))
    model = backend.nearest_neighbors(n_neighbors=min(_NEIGHBOURS, int(in_seed.sum())))
    model.fit(matrix[in_seed])
    others = np.flatnonzero(~in_seed)
    distances, _ = model.kneighbors(matrix[others])
    return keys[others[np.argsort(np.asarray(distances).mean(axis=1), kind="stable")[:size]]]


def run_lookalike(size, workdir, backend_name, workers, clock, data) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.lookalike import find_lookalikes

    run = _run_view(data, workdir)
    features = pd.read_parquet(data["features"], columns=["customer_key"])
    truth = pd.read_parquet(data["truth"]).merge(features, on="customer_key")
    counts = truth["archetype"].value_counts()
    largest = counts.index[0]
    seed_size = min(max(1, len(features) // 100), int(counts.iloc[0]) // 2)
    truth[truth["archetype"] == largest].sample(seed_size, random_state=1)[["customer_key"]].to_csv(
        workdir / "timed-seed.csv", index=False
    )
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        options = {"backend_name": backend_name, "client": client}
        with clock:
            summary = find_lookalikes(run, workdir / "timed-seed.csv", workdir / "timed", size=seed_size, **options)
        quality = {"seed": seed_size, "seed_archetype": largest, "training": summary.method}
        for archetype, count in counts.items():
            if count >= _MIN_ARCHETYPE:
                precision = _precision(run, truth, archetype, min(1_000, count // 2), workdir, **options)
                quality[f"precision_{archetype}"] = round(precision, 3)
    backend = resolve_backend(backend_name)
    keys, matrix = _neighbour_space(Path(data["features"]))
    archetype_of = truth.set_index("customer_key")["archetype"]
    timed_seed = pd.read_csv(workdir / "timed-seed.csv")["customer_key"]
    started = time.perf_counter()
    found_keys = _neighbours(keys, matrix, timed_seed, seed_size, backend)
    quality["neighbours_seconds"] = round(time.perf_counter() - started, 3)
    quality["neighbours_precision_timed_seed"] = round(float((archetype_of.reindex(found_keys) == largest).mean()), 3)
    for archetype, count in counts.items():
        if count >= _MIN_ARCHETYPE:
            seed = truth[truth["archetype"] == archetype].sample(min(1_000, count // 2), random_state=0)["customer_key"]
            found_keys = _neighbours(keys, matrix, seed, len(seed), backend)
            precision = (archetype_of.reindex(found_keys) == archetype).mean()
            quality[f"neighbours_precision_{archetype}"] = round(float(precision), 3)
    found = pd.read_parquet(workdir / "timed" / "lookalikes.parquet").merge(truth, on="customer_key", how="left")
    quality["precision_timed_seed"] = round(float((found["archetype"] == largest).mean()), 3)
    return {"rows": {"customers": summary.customers}, "quality": quality}
