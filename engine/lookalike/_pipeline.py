"""Lookalikes: the customers most like a seed audience (issue 32).

A seed-against-rest classifier, the backend's gradient boosting (scikit-learn's histogram
boosting on the CPU, XGBoost's on the GPU), learns the seed's customers (positives) against an
even sample of the rest (negatives) on the run's numeric features; every other customer is
scored part by part, and the most seed-like are kept. Measured on the demo world's features
(issue 32), such a classifier recovers a planted archetype from a seed better than nearest
neighbours on the same features did. Seed members and suppressed customers (any row of the
``suppressions`` input) are never lookalikes. Each part returns only its own best ``size``
customers: nothing else is gathered.

Output, in ``out`` (written to a temporary directory, renamed into place):
``lookalikes.parquet`` (``customer_key``, ``similarity`` in 0..1, the classifier's probability
of being seed-like, and ``rank`` from 1) and ``lookalike.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._summary import Summary
from .._tasks import compute_tasks, staged_output
from ..backend import resolve_backend, to_host_array
from ..exceptions import InputDataError, UsageError
from ..ingest import read_store_meta, read_store_table
from ..layout import RunLayout, part_files

__all__ = ["LookalikeSummary", "find_lookalikes", "read_seed"]

logger = logging.getLogger(__name__)

# Negatives per seed customer in the training sample (at least _MIN_NEGATIVES in all).
_NEGATIVES_PER_SEED = 10
_MIN_NEGATIVES = 20_000


@dataclass
class LookalikeSummary(Summary):
    """What ``find_lookalikes`` wrote and how the seed was read."""

    out_dir: Path
    seed_rows: int
    seed_known: int
    seed_unknown: int
    lookalikes: int
    customers: int
    features: int
    method: str
    seconds: float


def read_seed(path: Path) -> tuple[pd.Series, str]:
    """The seed file's identifiers and which kind they are (``customer_key`` or ``customer_id``).

    CSV or Parquet with a ``customer_key`` column (the run's pseudonymised keys) or a
    ``customer_id`` column (original ids, resolved through the run's identity mapping).

    Raises
    ------
    InputDataError
        Unreadable, without either column, or empty.
    """
    try:
        frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as error:
        raise InputDataError(f"{path}: cannot read the seed file ({error})") from None
    kind = next((column for column in ("customer_key", "customer_id") if column in frame.columns), None)
    if kind is None:
        raise InputDataError(f"{path}: the seed file needs a customer_key or a customer_id column")
    values = frame[kind].dropna().astype(str).str.strip()
    values = values[values != ""].drop_duplicates()
    if values.empty:
        raise InputDataError(f"{path}: the seed file lists no customers")
    return values, kind


def _seed_keys(layout: RunLayout, values: pd.Series, kind: str, partitions: int) -> set:
    """The seed's customer keys that are customers of this run (ids through the mapping)."""
    if kind == "customer_key":
        keys = set()
        wanted = set(values)
        for number in range(partitions):
            part = pq.read_table(layout.features.part(number), columns=["customer_key"]).column(0).to_pylist()
            keys.update(wanted.intersection(part))
        return keys
    keys = set()
    for path in part_files(layout.ingest.identity_mapping):
        mapping = pq.read_table(path).to_pandas()
        keys.update(mapping.loc[mapping["customer_id"].astype(str).isin(values), "customer_key"])
    return keys


def _numeric(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def _training_task(run_dir: str, number: int, seed: frozenset, every: int) -> pd.DataFrame:
    """Part ``number``'s seed customers and every ``every``-th other one, labelled."""
    table = pq.read_table(RunLayout(run_dir).features.part(number))
    frame = table.select(["customer_key", *_numeric(table)]).to_pandas()
    in_seed = frame["customer_key"].isin(seed).to_numpy()
    others = np.flatnonzero(~in_seed)[::every]
    chosen = np.sort(np.concatenate([np.flatnonzero(in_seed), others]))
    return frame.iloc[chosen].assign(label=in_seed[chosen].astype(np.int8))


def _score_task(run_dir: str, number: int, model, columns: list[str], seed: frozenset, size: int,
                backend_name: str, tables: set) -> pd.DataFrame:  # fmt: skip
    """Part ``number``'s best ``size`` customers outside the seed and the suppressions."""
    layout = RunLayout(run_dir)
    frame = pq.read_table(layout.features.part(number), columns=["customer_key", *columns]).to_pandas()
    barred = set(seed)
    if "suppressions" in tables:
        barred.update(read_store_table(layout.store.root, "suppressions", number, ["customer_key"], None)
                      .column("customer_key").to_pylist())  # fmt: skip
    frame = frame[~frame["customer_key"].isin(barred)]
    if frame.empty:
        return pd.DataFrame({"customer_key": [], "similarity": []})
    matrix = resolve_backend(backend_name).xp.asarray(frame[columns].to_numpy(dtype="float32", na_value=np.nan))
    similarity = to_host_array(model.predict_proba(matrix))[:, 1]
    best = np.argsort(-similarity, kind="stable")[:size]
    return pd.DataFrame({"customer_key": frame["customer_key"].to_numpy()[best], "similarity": similarity[best]})


def find_lookalikes(run_dir, seed_file, out, *, size: int | None = None, fraction: float | None = None,
                    seed: int = 0, backend_name: str = "cpu", client=None, progress=None) -> LookalikeSummary:  # fmt: skip
    """The ``size`` (or ``fraction`` of the customers) most seed-like customers of ``run_dir``.

    Raises
    ------
    UsageError
        Neither or both of size and fraction, or one out of range.
    InputDataError
        A seed file that cannot be read, lists nobody, or none of whose customers is in the run.
    """
    started = time.perf_counter()
    if (size is None) == (fraction is None):
        raise UsageError("give the lookalikes' number with --size N or --fraction F (not both)")
    if (size is not None and size < 1) or (fraction is not None and not 0 < fraction <= 1):
        raise UsageError("--size must be at least 1 and --fraction in (0, 1]")
    layout, seed_file, out = RunLayout(run_dir), Path(seed_file), Path(out)
    backend = resolve_backend(backend_name)
    meta = read_store_meta(layout.store.root)
    partitions = int(meta["partitions"])
    if not part_files(layout.features.root):
        raise InputDataError(f"{layout.root}: no features; run the features stage first")
    values, kind = read_seed(seed_file)
    keys = _seed_keys(layout, values, kind, partitions)
    if not keys:
        raise InputDataError(f"{seed_file}: none of its {len(values):,} {kind}s is a customer of {layout.root}")
    customers = sum(pq.ParquetFile(path).metadata.num_rows for path in part_files(layout.features.root))
    wanted = size if size is not None else max(1, round(fraction * customers))
    negatives = max(_MIN_NEGATIVES, _NEGATIVES_PER_SEED * len(keys))
    every = max(1, math.floor((customers - len(keys)) / negatives))
    frozen = frozenset(keys)
    parts = compute_tasks([dask.delayed(_training_task)(str(layout.root), n, frozen, every) for n in range(partitions)],
                          client, progress, "lookalike training rows")  # fmt: skip
    training = pd.concat(parts, ignore_index=True)
    columns = [c for c in training.columns if c not in ("customer_key", "label")]
    labels = training["label"].to_numpy()
    model = backend.gradient_boosting(n_estimators=200, max_depth=None, max_features=1.0, min_samples_leaf=20,
                                                 seed=seed, positives=int(labels.sum()),
                                                 negatives=int(len(labels) - labels.sum()))  # fmt: skip
    matrix = training[columns].to_numpy(dtype="float32", na_value=np.nan)
    model.fit(backend.xp.asarray(matrix), labels)
    tables = set(meta["tables"])
    scored = compute_tasks(
        [dask.delayed(_score_task)(str(layout.root), n, model, columns, frozen, wanted, backend.name, tables)
         for n in range(partitions)], client, progress, "lookalike scores",
    )  # fmt: skip
    best = pd.concat(scored, ignore_index=True).sort_values(["similarity", "customer_key"], ascending=[False, True])
    best = best.head(wanted).reset_index(drop=True)
    best["rank"] = np.arange(1, len(best) + 1)
    summary = LookalikeSummary(
        out_dir=out, seed_rows=len(values), seed_known=len(keys), seed_unknown=len(values) - len(keys),
        lookalikes=len(best), customers=customers, features=len(columns),
        method=f"seed-against-rest {type(model).__name__}, {len(labels):,} training rows",
        seconds=round(time.perf_counter() - started, 3),
    )  # fmt: skip
    if summary.seed_unknown:
        logger.warning("lookalike: %d of the seed's %d %ss are not customers of this run; left out",
                       summary.seed_unknown, summary.seed_rows, kind)  # fmt: skip
    with staged_output(out) as staging:
        pq.write_table(pa.Table.from_pandas(best, preserve_index=False), staging / "lookalikes.parquet")
        (staging / "lookalike.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    logger.info("lookalike: %d lookalikes of %d seed customers among %d in %.1f s", len(best), len(keys), customers,
                summary.seconds)  # fmt: skip
    return summary
