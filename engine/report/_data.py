"""What the report reads from a run directory: each stage's own outputs, or None where a
stage did not run. Nothing here computes a model; the audiences table is a count of what the
segment and propensity stages wrote, part by part (part N of each holds the same customers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..exceptions import InputDataError
from ..layout import RunLayout, part_files

__all__ = ["RunOutputs", "audience_table", "read_outputs", "value_columns"]

BANDS = ("high", "medium", "low")
# Customers whose CLV the distribution chart draws: a deterministic every-n-th subset above it.
_PLOT_ROWS = 1_000_000


def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


@dataclass
class RunOutputs:
    """The documents of one run; None for what the run does not hold."""

    run_dir: Path
    manifest: dict
    ingest: dict | None
    identity: dict | None
    segments: dict | None
    profiles: list | None
    profile_table: pd.DataFrame | None
    segment_model: dict | None
    evaluation: dict | None
    propensity_model: dict | None
    propensity_metrics: dict | None
    test_scores: pd.DataFrame | None
    value: dict | None
    comparison: dict | None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)


def read_outputs(run_dir: str | Path) -> RunOutputs:
    """Read every stage's documents from ``run_dir``.

    Raises
    ------
    InputDataError
        ``run_dir`` holds no ``manifest.json`` (it is not a run directory).
    """
    run = RunLayout(run_dir)
    manifest = _json(run.manifest)
    if manifest is None:
        raise InputDataError(f"{run.root}: not a segscale run directory (no manifest.json); run segscale run first")
    segments, model = run.segments, run.propensity_model
    return RunOutputs(
        run_dir=run.root,
        manifest=manifest,
        ingest=_json(run.ingest.summary),
        identity=_json(run.ingest.identity_report),
        segments=_json(segments.meta),
        profiles=_json(segments.profiles),
        profile_table=_frame(segments.profile_table),
        segment_model=_json(segments.model),
        evaluation=_json(segments.evaluation),
        propensity_model=_json(model.model),
        propensity_metrics=_json(model.metrics),
        test_scores=_frame(model.test_scores),
        value=_json(run.value.summary),
        comparison=_json(run.compare.summary),
    )


def _frame(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _parts(directory: Path) -> dict[str, Path]:
    return {path.name: path for path in part_files(directory)}


def audience_table(run_dir: Path) -> pd.DataFrame | None:
    """Customers (and their total and mean CLV, when the value stage ran) per segment x band.

    Returns None unless both the segment assignments and the propensity scores exist.
    """
    run = RunLayout(run_dir)
    assignments = _parts(run.segments.assignments)
    scores = _parts(run.propensity_scores.root)
    values = _parts(run.value.customers)
    if not assignments or not scores:
        return None
    counted = []
    for name, path in assignments.items():
        if name not in scores:
            continue
        part = pq.read_table(path, columns=["customer_key", "segment", "segment_name"]).to_pandas()
        part = part.merge(pq.read_table(scores[name], columns=["customer_key", "band"]).to_pandas(), on="customer_key")
        # A counts-only store's values have no CLV (no amounts to value purchases with).
        if name in values and "clv" in pq.read_schema(values[name]).names:
            clv = pq.read_table(values[name], columns=["customer_key", "clv"]).to_pandas()
            part = part.merge(clv, on="customer_key", how="left")
        else:
            part["clv"] = np.nan
        grouped = part.groupby(["segment", "segment_name", "band"], observed=True)
        counted.append(grouped.agg(customers=("customer_key", "size"), clv_total=("clv", "sum")))
    if not counted:
        return None
    table = pd.concat(counted).groupby(level=[0, 1, 2]).sum().reset_index()
    table["clv_mean"] = table["clv_total"] / table["customers"]
    table["band"] = pd.Categorical(table["band"], categories=BANDS, ordered=True)
    return table.sort_values(["segment", "band"], ignore_index=True)


def value_columns(run_dir: Path, columns=("clv", "p_alive")) -> dict[str, np.ndarray] | None:
    """The value stage's per-customer ``columns``; every n-th row above a million customers,
    read part by part so the report never holds every customer."""
    files = part_files(RunLayout(run_dir).value.customers)
    if not files:
        return None
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    step = max(1, rows // _PLOT_ROWS)
    kept = {column: [] for column in columns}
    offset = 0  # the stride runs across part boundaries, as it would over one table
    for path in files:
        table = pq.read_table(path, columns=list(columns))
        for column in columns:
            kept[column].append(table.column(column).to_numpy()[(-offset) % step :: step].astype("float64"))
        offset += table.num_rows
    return {column: np.concatenate(kept[column]) for column in columns}
