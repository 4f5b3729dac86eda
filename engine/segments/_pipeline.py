"""The segment stage: features in, a segment per customer, profiles and names out (DESIGN 2).

Fit small, score big:

1. a deterministic sample of customers (every n-th of each feature part, parts being in
   pseudonymous key order) fits the whole segment model (``_fit``): preparation, k-means with
   k chosen by stability and usefulness, micro-segments, DBSCAN niches, bootstrap stability;
   the sample's profile earns each segment its name and sentence. With ``[segments]
   kmeans_fit = "all"`` the k-means centres for that k come from every customer instead, by
   a k-means distributed over the feature parts (``_distributed``);
2. one task per feature part places every customer, writes the assignments and returns
   per-segment sums and counts, from which the population profile is built.

Output (temporary directory, renamed into place): ``assignments/part-NNNNN.parquet``
(customer_key, segment, segment_name, distance, micro_segment, niche, outlier, and with RFM
scores in the features rfm_segment: the named grid, rfm_cell: the cell of the score cube, from
which the grid cut into k groups is measured against the segments in a backtest, ``_backtest``),
``profiles.parquet``, ``profiles.json``, ``hierarchy.parquet`` (micro-segment -> segment),
``model.json`` (the fitted model in CPU form, every candidate k's scores),
``evaluation.json`` (against what happened next, in a backtest) and ``_segments.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .._parts import write_part
from .._summary import Summary
from .._tasks import compute_tasks, staged_output
from ..backend import frame_from_arrow, resolve_backend, to_host, to_host_array
from ..config import SegmentOptions
from ..exceptions import InputDataError, UsageError
from ..features import read_features_meta
from ..layout import FeaturesLayout, SegmentsLayout, part_name
from ._backtest import against_what_happened
from ._baseline import rfm_cells, rfm_grid
from ._distributed import fit_distributed_kmeans
from ._fit import SegmentFit, fit_segments
from ._kmeans import SegmentModel
from ._profiles import name_segments, partition_sums, profile_table

__all__ = ["SegmentSummary", "build_segments"]

logger = logging.getLogger(__name__)

ASSIGNMENT_COLUMNS = ("customer_key", "segment", "segment_name", "distance", "micro_segment", "niche", "outlier")
RFM_SCORES = ("r_score", "f_score", "m_score")


@dataclass
class SegmentSummary(Summary):
    """What ``build_segments`` wrote."""

    out_dir: Path
    customers: int
    k: int
    k_chosen_by: str
    silhouette: float
    segments: list[dict]
    seconds: float
    micro_segments: int = 0
    niche_customers: list[int] = field(default_factory=list)
    outliers: int = 0
    unstable_segments: list[int] = field(default_factory=list)
    against_rfm_grid: dict | None = None



def _sample_task(features: str, number: int, rows: int, every: int) -> pd.DataFrame:
    """Every ``every``-th customer of one part (parts are in pseudonymous key order)."""
    table = pq.read_table(FeaturesLayout(features).part(number))
    return table.take(np.arange(0, rows, every)).to_pandas()


def _prepared_task(features: str, number: int, preparation, backend_name: str):
    """One part's prepared matrix, in the backend's array namespace."""
    backend = resolve_backend(backend_name)
    table = pq.read_table(FeaturesLayout(features).part(number), columns=preparation.columns_)
    return preparation.transform(frame_from_arrow(table, backend.name), backend.xp)


def _every_customer(features: Path, parts: list[int], options: SegmentOptions, seed: int, backend, client):
    """``refit`` for :func:`fit_segments`: k-means on every customer, distributed over the
    feature parts, whose prepared matrices stay on the workers while it runs."""

    def refit(preparation, k: int) -> SegmentModel:
        tasks = [dask.delayed(_prepared_task)(str(features), n, preparation, backend.name) for n in parts]
        prepared = client.persist(tasks) if client is not None else list(dask.persist(*tasks))
        return fit_distributed_kmeans(prepared, k, seed=seed, n_init=options.n_init, client=client)

    return refit


def _assign_task(features: str, number: int, out: str, model: SegmentFit, names, profile_columns, backend_name,
                 sample_every: int | None = None):  # fmt: skip
    """One part: place every customer, write the assignments; return what the profiles need:
    per-segment sums, and customers per micro-segment and per niche, and outliers; with
    ``sample_every``, also every ``sample_every``-th customer's profile columns and segment
    (host side), as `_sample_task` would take them."""
    backend = resolve_backend(backend_name)
    xp = backend.xp
    frame = frame_from_arrow(pq.read_table(FeaturesLayout(features).part(number)), backend.name)
    placed = model.place(frame, xp)
    assignments = backend.df.DataFrame({"customer_key": frame["customer_key"]})
    for column in ASSIGNMENT_COLUMNS[1:]:
        if column == "segment_name":
            # Each customer's name taken by segment number: rows stay in the part's key order on
            # both backends, with no merge on the segment and no sort by key to restore it.
            assignments[column] = backend.df.Series(list(names)).take(placed["segment"]).reset_index(drop=True)
        else:
            assignments[column] = placed[column]
    columns = list(ASSIGNMENT_COLUMNS)
    if set(RFM_SCORES) <= set(frame.columns):
        # The classic grid, and the cell of the score cube any other cut of it is made from:
        # host lookups of three small integers per customer.
        scores = to_host(frame[list(RFM_SCORES)])
        assignments["rfm_segment"] = rfm_grid(scores).to_numpy()
        assignments["rfm_cell"] = rfm_cells(scores)
        columns += ["rfm_segment", "rfm_cell"]
    write_part(assignments[columns], Path(out) / part_name(number))
    micro_count = len(model.micro.parent) if model.micro else 0
    niche_count = len(model.niches.niche_sizes) if model.niches else 0
    counts = {
        "micro": xp.bincount(placed["micro_segment"][placed["micro_segment"] >= 0], minlength=micro_count),
        "niche": xp.bincount(placed["niche"][placed["niche"] >= 0], minlength=niche_count),
        "outliers": placed["outlier"].sum(),
    }
    counts = {key: to_host_array(value) for key, value in counts.items()}
    sums = partition_sums(frame, placed["segment"], profile_columns, len(model.kmeans.centres), xp)
    if sample_every is None:
        return sums, counts
    picked = np.arange(0, len(frame), sample_every)
    sample = to_host(frame[list(profile_columns)].take(picked)).reset_index(drop=True)
    return sums, counts, (sample, to_host_array(placed["segment"])[picked])


def place_everyone(features: Path, partitions: int, staging: SegmentsLayout, model: SegmentFit, segment_names,
                   profile_columns, sample, backend, client, progress) -> tuple[pd.DataFrame, list]:  # fmt: skip
    """Place every customer of ``features`` with ``model``, one task a part, into ``staging``'s
    assignments; write the profile table (each segment's name beside it) and return it with
    each part's micro-segment, niche and outlier counts.

    The medians come from ``sample``: the fit's (features, segments), or an int n: every n-th
    customer of each part, taken and placed by the part's task (no pass of its own)."""
    staging.assignments.mkdir()
    # One object in the graph, not searched for Dask collections per task: the model's
    # nested lists took 0.2 s a task to search (3 s of the demo's 15 tasks).
    fitted = dask.delayed(model, traverse=False)
    tasks = [
        dask.delayed(_assign_task)(
            str(features), n, str(staging.assignments), fitted, segment_names, profile_columns, backend.name,
            sample if isinstance(sample, int) else None,
        )
        for n in range(partitions)
    ]
    results = compute_tasks(tasks, client, progress, "assign")
    sums, counts = [result[0] for result in results], [result[1] for result in results]
    if isinstance(sample, int):
        picked = [result[2] for result in results]
        sample = (pd.concat([rows for rows, _ in picked], ignore_index=True),
                  np.concatenate([segments for _, segments in picked]))  # fmt: skip
    profile = profile_table(sums, profile_columns, *sample)
    profile = pd.concat(
        [profile[["segment"]], pd.DataFrame({"segment_name": segment_names}), profile.drop(columns="segment")], axis=1
    )
    profile.to_parquet(staging.profile_table, index=False)
    return profile, counts


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
    meta = read_features_meta(features)
    backend = resolve_backend(backend_name)
    ks = [options.k] if options.k is not None else list(range(options.k_min, options.k_max + 1))
    if not ks or min(ks) < 2:
        raise UsageError(
            f"segments: k must be at least 2 and k_min <= k_max; got k={options.k}, {options.k_min}..{options.k_max}"
        )
    rows, partitions = meta["rows_per_partition"], int(meta["partitions"])
    customers = sum(rows)
    if customers <= max(ks):
        raise InputDataError(f"{features}: {customers} customers cannot make {max(ks)} segments")

    every = max(1, math.ceil(customers / options.sample))
    tasks = [dask.delayed(_sample_task)(str(features), n, rows[n], every) for n in range(partitions) if rows[n]]
    sample = pd.concat(compute_tasks(tasks, client, progress, "sample"), ignore_index=True)
    refit = None
    if options.kmeans_fit == "all":
        refit = _every_customer(features, [n for n in range(partitions) if rows[n]], options, seed, backend, client)
    model, sample_segments = fit_segments(sample, options, seed=seed, backend=backend, refit=refit)
    profile_columns = _numeric_columns(meta)
    sample_profile = profile_table(
        [partition_sums(sample, sample_segments, profile_columns, model.kmeans.k)],
        profile_columns,
        sample,
        sample_segments,
    )
    names = name_segments(sample_profile)

    segment_names = [named["name"] for named in names]
    with staged_output(out) as staging_dir:
        staging = SegmentsLayout(staging_dir)
        profile, counts = place_everyone(features, partitions, staging, model, segment_names, profile_columns,
                                         (sample, sample_segments), backend, client, progress)  # fmt: skip
        customers_total = int(profile["customers"].sum())
        stability = {entry["segment"]: entry for entry in model.stability}
        rules = {entry["segment"]: entry for entry in model.rules.describe()}
        segments = [
            {
                "segment": named["segment"],
                "name": named["name"],
                "sentence": named["sentence"],
                "because": named["because"],
                "customers": int(profile.loc[named["segment"], "customers"]),
                "share_customers": round(float(profile.loc[named["segment"], "share_customers"]), 4),
                "share_revenue": round(float(profile.loc[named["segment"], "share_revenue"]), 4),
                "top_features": _top_features(profile, named["segment"]),
                "stability": stability.get(named["segment"]),
                "rules": rules.get(named["segment"]),
            }
            for named in names
        ]
        staging.profiles.write_text(json.dumps(segments, indent=2) + "\n")
        micro_customers = np.sum([count["micro"] for count in counts], axis=0) if model.micro else None
        if model.micro:
            _hierarchy_table(model, micro_customers, segment_names).to_parquet(
                staging.hierarchy, index=False
            )
        staging.model.write_text(json.dumps(model.to_dict(), indent=2) + "\n")
        niche_customers = (
            np.sum([count["niche"] for count in counts], axis=0).astype(int).tolist() if model.niches else []
        )
        outliers = int(sum(int(count["outliers"]) for count in counts))
        silhouette = next(score["silhouette"] for score in model.k_scores if score["k"] == model.kmeans.k)
        evaluation = against_what_happened(
            staging.assignments, meta, groups=model.kmeans.k, days=options.outcome_days, customers=options.outcome_customers,
            resamples=options.outcome_resamples, seed=seed, client=client, progress=progress,
        )  # fmt: skip
        staging.evaluation.write_text(json.dumps(evaluation, indent=2) + "\n")
        summary = SegmentSummary(
            out_dir=out, customers=customers_total, k=model.kmeans.k, k_chosen_by=model.k_chosen_by,
            silhouette=round(silhouette, 4), segments=[_brief(s) for s in segments],
            seconds=round(time.perf_counter() - started, 3),
            micro_segments=len(model.micro.parent) if model.micro else 0,
            niche_customers=niche_customers, outliers=outliers,
            unstable_segments=[s["segment"] for s in segments if s["stability"] and not s["stability"]["stable"]],
            against_rfm_grid=_against_rfm_grid(evaluation),
        )  # fmt: skip
        document = {
            **summary.to_dict(),
            "features": str(features),
            "as_of": meta.get("as_of"),
            "sample": len(sample),
            "kmeans_fit": options.kmeans_fit,
            "niche_eps": model.niches.eps if model.niches else None,
            "rules_fidelity": round(model.rules.fidelity_, 4),
            "backend": backend.name,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        staging.meta.write_text(json.dumps(document, indent=2) + "\n")
    logger.info(
        "segments: %d customers in %d segments (silhouette %.3f), %d micro-segments, %d niches, %d outliers in %.1f s",
        summary.customers, summary.k, silhouette, summary.micro_segments, len(niche_customers), outliers, summary.seconds,
    )  # fmt: skip
    return summary


def _against_rfm_grid(evaluation: dict) -> dict | None:
    """Per measure, the segments' and the equal-sized RFM grid's estimates and the interval of
    their difference: what a reader of the manifest looks for first."""
    compared = evaluation.get("at_equal_groups")
    if compared is None:
        return None
    return {
        "groups": compared["groups"]["segments"],
        "customers": compared["customers"],
        **{
            entry["measure"]: {
                "segments": round(entry["segments"]["value"], 4),
                "rfm_grid": round(entry["rfm_grid"]["value"], 4),
                "rfm_cut": entry["cut"],
                "difference_interval": [
                    None if bound is None else round(bound, 4)
                    for bound in (entry["difference"]["low"], entry["difference"]["high"])
                ],
                "segments_win": entry["segments_win"],
            }
            for entry in compared["measures"]
        },
    }


def _brief(segment: dict) -> dict:
    brief = {key: segment[key] for key in ("segment", "name", "customers", "share_customers", "share_revenue")}
    brief["stability"] = segment["stability"]["jaccard"] if segment["stability"] else None
    return brief


def _hierarchy_table(model: SegmentFit, micro_customers, segment_names) -> pd.DataFrame:
    """The parent/child table: one row per micro-segment with its macro segment."""
    parent = np.asarray(model.micro.parent)
    customers = np.asarray(micro_customers, dtype=np.int64)
    return pd.DataFrame(
        {
            "micro_segment": np.arange(parent.size, dtype=np.int32),
            "segment": parent.astype(np.int32),
            "segment_name": [segment_names[p] for p in parent],
            "customers": customers,
            "share_customers": customers / max(customers.sum(), 1),
            "share_of_segment": customers / np.maximum(np.bincount(parent, weights=customers)[parent], 1),
        }
    )


def _top_features(profile: pd.DataFrame, segment: int, count: int = 5) -> list[dict]:
    """The features whose segment mean is furthest from the population's, in z."""
    row = profile.loc[segment]
    zs = {
        column[2:]: float(row[column])
        for column in profile.columns
        if column.startswith("z_") and not np.isnan(row[column])
    }
    ranked = sorted(zs.items(), key=lambda item: -abs(item[1]))[:count]
    return [{"feature": feature, "z": round(z, 2)} for feature, z in ranked]
