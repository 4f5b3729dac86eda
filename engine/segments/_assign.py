"""Placing customers with a saved segment model: the segment half of ``segscale update``.

An update recomputes the features at a new as-of and places every customer with the model a
build fitted and saved (``model.json``): no sample fit, no choice of k, no backtest. It writes
every file a build writes, so that report, activate and compare read it as they read a build:

- ``assignments/part-NNNNN.parquet``: by the build's own task (``_pipeline._assign_task``),
  so the columns, the names and the order are the build's;
- ``profiles.parquet`` and, with micro-segments, ``hierarchy.parquet``: from the new
  placement's sums and counts, medians from an evenly spaced sample of the new features;
- ``profiles.json``: each segment's name, sentence, reasons, rule and stability as fitted (they
  describe the model), its size, shares and top features from the new profile;
- ``model.json`` and ``evaluation.json``: copied unchanged (the model, and its fit's backtest);
- ``_segments.json``: the build's document with the new sizes, as-of and features, and
  ``"refit": false`` with ``model_fitted_as_of``, the as-of of the features the model was fitted on.

``out`` may be the segment output read: everything is read before writing, and the new output
replaces the old one whole (``staged_output``).
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

import numpy as np
import pandas as pd

from .._tasks import staged_output
from ..backend import resolve_backend
from ..config import SegmentOptions
from ..exceptions import InputDataError
from ..features import read_features_meta
from ..layout import SegmentsLayout
from ._fit import SegmentFit
from ._pipeline import (
    SegmentSummary, _brief, _hierarchy_table, _numeric_columns, _top_features, place_everyone,
)  # fmt: skip

__all__ = ["assign_segments"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Saved:
    """What a segment output holds that placing with its model needs, read before anything is
    written (the output may be the one replaced)."""

    model_text: str
    model: SegmentFit
    profiles: list[dict]
    meta: dict
    evaluation_text: str | None


def _read_saved(segments_dir: Path) -> _Saved:
    """The saved model, profiles, document and backtest of the segment output ``segments_dir``.

    Raises
    ------
    InputDataError
        ``segments_dir`` is not a segment output, or its model and profiles disagree.
    """
    layout = SegmentsLayout(segments_dir)
    missing = [path.name for path in (layout.model, layout.profiles, layout.meta) if not path.is_file()]
    if missing:
        raise InputDataError(
            f"{segments_dir}: not a segscale segment output (no {', '.join(missing)}); run segscale segments first"
        )
    model_text = layout.model.read_text()
    model = SegmentFit.from_dict(json.loads(model_text))
    profiles = sorted(json.loads(layout.profiles.read_text()), key=lambda entry: entry["segment"])
    if [entry["segment"] for entry in profiles] != list(range(model.kmeans.k)):
        raise InputDataError(f"{segments_dir}: profiles.json does not describe the model's {model.kmeans.k} segments")
    evaluation_text = layout.evaluation.read_text() if layout.evaluation.is_file() else None
    return _Saved(model_text, model, profiles, json.loads(layout.meta.read_text()), evaluation_text)


def _check_features(features: Path, meta: dict, model: SegmentFit) -> None:
    """Refuse, before any task runs, a feature table that lacks a column the model places by."""
    absent = [column for column in model.preparation.columns_ if column not in meta["columns"]]
    if absent:
        raise InputDataError(f"{features}: lacks the columns the saved segment model places by: {', '.join(absent)}")


def _sample_every(customers: int, saved_meta: dict) -> int:
    """The step of the evenly spaced sample the medians come from: that of the fit's sample
    size, so that the same features give the build's sample (and medians) again."""
    fitted_on = saved_meta.get("sample") or SegmentOptions().sample
    return max(1, math.ceil(customers / fitted_on))


def _described(saved: dict, profile: pd.DataFrame) -> dict:
    """One profiles.json entry: as fitted, with the new placement's size, shares and top features."""
    segment = saved["segment"]
    return {
        **saved,
        "customers": int(profile.loc[segment, "customers"]),
        "share_customers": round(float(profile.loc[segment, "share_customers"]), 4),
        "share_revenue": round(float(profile.loc[segment, "share_revenue"]), 4),
        "top_features": _top_features(profile, segment),
    }


def assign_segments(
    features: str | os.PathLike,
    segments_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    backend_name: str = "auto",
    client=None,
    progress=None,
) -> SegmentSummary:
    """Place every customer of ``features`` with the model saved in ``segments_dir``; see the
    module docstring.

    Parameters
    ----------
    features : path
        A feature table (``build_features``), typically at a later as-of than the model's.
    segments_dir : path
        A segment output (``build_segments``, or an earlier ``assign_segments``).
    out : path
        Output directory, replaced only when the placement succeeds; may be ``segments_dir``.
    backend_name : {"auto", "cpu", "gpu"}
    client : distributed.Client, optional
    progress : callable, optional
        ``progress(done, total)`` as the tasks of each pass finish.

    Returns
    -------
    SegmentSummary
        The build's summary fields: sizes, niches and outliers of the new placement; k, how it
        was chosen, silhouette, stability and the comparison with the RFM grid as fitted.

    Raises
    ------
    InputDataError
        ``features`` is not a feature table, holds no customers or lacks a column the model
        uses; ``segments_dir`` is not a segment output.
    """
    started = time.perf_counter()
    features, out = Path(features), Path(out)
    saved = _read_saved(Path(segments_dir))
    model = saved.model
    meta = read_features_meta(features)
    _check_features(features, meta, model)
    backend = resolve_backend(backend_name)
    rows, partitions = meta["rows_per_partition"], int(meta["partitions"])
    customers = sum(rows)
    if not customers:
        raise InputDataError(f"{features}: holds no customers to place")
    # The build's names, by segment number: the lookup _assign_task joins on.
    segment_names = [entry["name"] for entry in saved.profiles]
    profile_columns = _numeric_columns(meta)

    with staged_output(out) as staging_dir:
        staging = SegmentsLayout(staging_dir)
        # The medians' sample is taken and placed by the placing tasks: the same rows as the
        # build's sample, with the segments the build's fitted centres give them.
        profile, counts = place_everyone(Path(features), partitions, staging, model, segment_names, profile_columns,
                                         _sample_every(customers, saved.meta), backend, client, progress)  # fmt: skip
        segments = [_described(entry, profile) for entry in saved.profiles]
        staging.profiles.write_text(json.dumps(segments, indent=2) + "\n")
        if model.micro:
            micro_customers = np.sum([count["micro"] for count in counts], axis=0)
            _hierarchy_table(model, micro_customers, segment_names).to_parquet(staging.hierarchy, index=False)
        staging.model.write_text(saved.model_text)
        if saved.evaluation_text is not None:
            staging.evaluation.write_text(saved.evaluation_text)
        niche_customers = (
            np.sum([count["niche"] for count in counts], axis=0).astype(int).tolist() if model.niches else []
        )
        outliers = int(sum(int(count["outliers"]) for count in counts))
        summary = SegmentSummary(
            out_dir=out, customers=int(profile["customers"].sum()), k=model.kmeans.k, k_chosen_by=model.k_chosen_by,
            silhouette=saved.meta.get("silhouette"), segments=[_brief(s) for s in segments],
            seconds=round(time.perf_counter() - started, 3),
            micro_segments=len(model.micro.parent) if model.micro else 0,
            niche_customers=niche_customers, outliers=outliers,
            unstable_segments=[s["segment"] for s in segments if s["stability"] and not s["stability"]["stable"]],
            against_rfm_grid=saved.meta.get("against_rfm_grid"),
        )  # fmt: skip
        document = {
            **saved.meta,
            **summary.to_dict(),
            "features": str(features),
            "as_of": meta.get("as_of"),
            "backend": backend.name,
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "refit": False,
            # An update of an update keeps the as-of the model was fitted at, not the last placement's.
            "model_fitted_as_of": saved.meta.get("model_fitted_as_of", saved.meta.get("as_of")),
        }
        staging.meta.write_text(json.dumps(document, indent=2) + "\n")
    logger.info(
        "segments: %d customers placed in %d segments with the model fitted as of %s, in %.1f s",
        summary.customers, summary.k, document["model_fitted_as_of"], summary.seconds,
    )  # fmt: skip
    return summary
