"""The lookalike benchmark (issue 32): seeds drawn from the planted archetypes of a synthetic
world, and how many of their lookalikes share the seed's archetype.

The data are the ``backtest-world`` dataset (a world of N customers, seed 0, 1% dirt, its store
and features as of 90 days before its end, and each customer key's archetype), built once,
untimed; the stage sees a run directory of links to its store and features.

- ``lookalike``: ``engine.lookalike.find_lookalikes`` for a seed of 1% of the customers (10,000
  at 1M) drawn from the largest archetype, timed. Quality: for every archetype with at least
  200 customers, a seed of min(1,000, half of it) and as many lookalikes: their precision (the
  share of the archetype's), untimed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["run_lookalike"]

_MIN_ARCHETYPE = 200


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
    found = pd.read_parquet(workdir / "timed" / "lookalikes.parquet").merge(truth, on="customer_key", how="left")
    quality["precision_timed_seed"] = round(float((found["archetype"] == largest).mean()), 3)
    return {"rows": {"customers": summary.customers}, "quality": quality}
