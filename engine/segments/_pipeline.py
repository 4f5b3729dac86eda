"""The segment stage: features in, a segment per customer, profiles and names out (DESIGN 2).

Fit small, score big:

1. a deterministic sample of customers (every n-th of each feature part, parts being in
   pseudonymous key order) fits the preparation and k-means for each candidate k; the best
   silhouette wins, and the sample's profile earns each segment its name;
2. one task per feature part prepares, assigns every customer to its nearest centre, writes
   the assignments and returns per-segment sums, from which the population profile is built.

Output (temporary directory, renamed into place): ``assignments/part-NNNNN.parquet``
(customer_key, segment, segment_name, distance), ``profiles.parquet``, ``profiles.json``,
``model.json`` (preparation, centres, every candidate k's scores) and ``_segments.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .._tasks import compute_tasks, staged_output
from ..backend import frame_from_arrow, resolve_backend
from ..config import SegmentOptions
from ..exceptions import InputDataError, UsageError
from ._kmeans import assign, choose_k
from ._prepare import Preparation
from ._profiles import name_segments, partition_sums, profile_table

__all__ = ["SegmentSummary", "build_segments"]

logger = logging.getLogger(__name__)

FEATURES_META = "_features.json"


@dataclass
class SegmentSummary:
    """What ``build_segments`` wrote."""

    out_dir: Path
    customers: int
    k: int
    silhouette: float
    segments: list[dict]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "customers": self.customers,
            "k": self.k,
            "silhouette": round(self.silhouette, 4),
            "segments": self.segments,
            "seconds": round(self.seconds, 3),
        }


def _part(number: int) -> str:
    return f"part-{number:05d}.parquet"


def _sample_task(features: str, number: int, rows: int, every: int) -> pd.DataFrame:
    """Every ``every``-th customer of one part (parts are in pseudonymous key order)."""
    table = pq.read_table(Path(features) / _part(number))
    return table.take(np.arange(0, rows, every)).to_pandas()


def _assign_task(features: str, number: int, out: str, preparation: Preparation, centres, names, profile_columns, backend_name):
    """One part: prepare, assign, write the assignments; return the per-segment sums."""
    backend = resolve_backend(backend_name)
    frame = frame_from_arrow(pq.read_table(Path(features) / _part(number)), backend.name)
    prepared = preparation.transform(frame, backend.xp)
    segment, distance = assign(prepared, centres, backend.xp)
    assignments = backend.df.DataFrame({"customer_key": frame["customer_key"]})
    assignments["segment"] = segment
    assignments["distance"] = distance
    lookup = backend.df.DataFrame({"segment": np.arange(len(names), dtype="int32"), "segment_name": names})
    # Merges do not keep row order on the GPU: the key order is restored after.
    assignments = assignments.merge(lookup, on="segment", how="left").sort_values("customer_key")
    assignments[["customer_key", "segment", "segment_name", "distance"]].to_parquet(Path(out) / _part(number), index=False)
    return partition_sums(frame, segment, profile_columns, len(centres), backend.xp)


def _numeric_columns(meta: dict) -> list[str]:
    """Feature columns a profile describes: every numeric one."""
    numeric = ("float", "double", "int8", "int16", "int32", "int64")
    return [name for name, kind in meta["columns"].items() if kind in numeric and name != "customer_key"]


def build_segments(
    features: str | os.PathLike,
    out: str | os.PathLike,
    *,
    options: SegmentOptions | None = None,
    seed: int = 0,
    backend_name: str = "auto",
    client=None,
    progress=None,
) -> SegmentSummary:
    """Segment every customer of a feature table with k-means; see the module docstring.

    Raises
    ------
    UsageError
        Bad options (k range, unknown features, scaler).
    InputDataError
        ``features`` is not a feature table, or holds fewer customers than segments.
    """
    started = time.perf_counter()
    options = options or SegmentOptions()
    features, out = Path(features), Path(out)
    meta_path = features / FEATURES_META
    if not meta_path.exists():
        raise InputDataError(f"{features}: not a segscale feature table (no {FEATURES_META}); run segscale features first")
    meta = json.loads(meta_path.read_text())
    backend = resolve_backend(backend_name)
    ks = [options.k] if options.k is not None else list(range(options.k_min, options.k_max + 1))
    if not ks or min(ks) < 2:
        raise UsageError(f"segments: k must be at least 2 and k_min <= k_max; got k={options.k}, {options.k_min}..{options.k_max}")
    rows, partitions = meta["rows_per_partition"], int(meta["partitions"])
    customers = sum(rows)
    if customers <= max(ks):
        raise InputDataError(f"{features}: {customers} customers cannot make {max(ks)} segments")

    every = max(1, math.ceil(customers / options.sample))
    tasks = [dask.delayed(_sample_task)(str(features), n, rows[n], every) for n in range(partitions) if rows[n]]
    sample = pd.concat(compute_tasks(tasks, client, progress, "sample"), ignore_index=True)
    preparation = Preparation(features=options.features, scaler=options.scaler, pca_components=options.pca_components)
    preparation.fit(sample)
    prepared = preparation.transform(sample)
    fitted_on = backend.xp.asarray(prepared) if backend.is_gpu else prepared
    choice, model = choose_k(fitted_on, ks, seed=seed, backend_name=backend.name, n_init=options.n_init)
    sample_segments, _ = assign(prepared, model.centres)
    profile_columns = _numeric_columns(meta)
    sample_profile = profile_table(
        [partition_sums(sample, sample_segments, profile_columns, model.k)], profile_columns, sample, sample_segments
    )
    names = name_segments(sample_profile)

    segment_names = [named["name"] for named in names]
    with staged_output(out) as staging:
        (staging / "assignments").mkdir()
        tasks = [
            dask.delayed(_assign_task)(
                str(features), n, str(staging / "assignments"), preparation, model.centres,
                segment_names, profile_columns, backend.name,
            )  # fmt: skip
            for n in range(partitions)
        ]
        sums = compute_tasks(tasks, client, progress, "assign")
        profile = profile_table(sums, profile_columns, sample, sample_segments)
        profile = pd.concat([profile[["segment"]], pd.DataFrame({"segment_name": segment_names}), profile.drop(columns="segment")], axis=1)
        profile.to_parquet(staging / "profiles.parquet", index=False)
        silhouette = next(s["silhouette"] for s in choice.scores if s["k"] == model.k)
        segments = [
            {
                "segment": named["segment"],
                "name": named["name"],
                "because": named["because"],
                "customers": int(profile.loc[named["segment"], "customers"]),
                "share_customers": round(float(profile.loc[named["segment"], "share_customers"]), 4),
                "share_revenue": round(float(profile.loc[named["segment"], "share_revenue"]), 4),
                "top_features": _top_features(profile, named["segment"]),
            }
            for named in names
        ]
        (staging / "profiles.json").write_text(json.dumps(segments, indent=2) + "\n")
        (staging / "model.json").write_text(
            json.dumps(
                {"preparation": preparation.to_dict(), "kmeans": model.to_dict(), "k_scores": choice.scores}, indent=2
            )
            + "\n"
        )
        summary = SegmentSummary(
            out_dir=out, customers=int(profile["customers"].sum()), k=model.k, silhouette=silhouette,
            segments=[{k: s[k] for k in ("segment", "name", "customers", "share_customers", "share_revenue")} for s in segments],
            seconds=time.perf_counter() - started,
        )  # fmt: skip
        document = {
            **summary.to_dict(),
            "features": str(features),
            "as_of": meta.get("as_of"),
            "sample": len(sample),
            "backend": backend.name,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        (staging / "_segments.json").write_text(json.dumps(document, indent=2) + "\n")
    logger.info("segments: %d customers in %d segments (silhouette %.3f) in %.1f s", summary.customers, model.k, silhouette, summary.seconds)
    return summary


def _top_features(profile: pd.DataFrame, segment: int, count: int = 5) -> list[dict]:
    """The features whose segment mean is furthest from the population's, in z."""
    row = profile.loc[segment]
    zs = {column[2:]: float(row[column]) for column in profile.columns if column.startswith("z_") and not np.isnan(row[column])}
    ranked = sorted(zs.items(), key=lambda item: -abs(item[1]))[:count]
    return [{"feature": feature, "z": round(z, 2)} for feature, z in ranked]
