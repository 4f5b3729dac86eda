"""``measure_lift``: what a campaign did, audience by audience, treated against control
(issue 32).

Reads the audiences the activate stage wrote (``customer_key``, ``group``) and an outcomes
file a campaign tool returns: one row per customer key with ``converted`` (0/1, required),
``revenue`` (optional) and guardrail outcomes ``unsubscribed`` and ``complained`` (0/1,
optional). A customer of an audience without an outcomes row did not convert and spent
nothing; several rows of one key add up (revenue) or count once (the 0/1 outcomes). Outcome
rows of keys in no audience are counted and left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .._summary import Summary, json_ready
from .._tasks import staged_output
from ..exceptions import InputDataError
from ..layout import ActivateLayout, part_files
from ._lift import mean_lift, rate_lift

__all__ = ["GUARDRAILS", "MeasureSummary", "measure_lift", "read_outcomes"]

_MANIFEST_FORMAT = 1

logger = logging.getLogger(__name__)

# 0/1 outcomes where more is worse: flagged when treated is worse beyond the interval.
GUARDRAILS = ("unsubscribed", "complained")
_FLAGS = ("converted", *GUARDRAILS)


@dataclass
class MeasureSummary(Summary):
    """Per audience its lifts (``audiences``), and the outcome rows outside every audience."""

    out_dir: Path
    outcomes: str
    audiences: list = field(default_factory=list)
    outside_audiences: int = 0
    seconds: float = 0.0


def read_outcomes(path: Path) -> pd.DataFrame:
    """The outcomes file, one row per key (see the module docstring).

    Raises
    ------
    InputDataError
        Not readable, no ``customer_key`` or ``converted``, or a 0/1 column with other values.
    """
    try:
        frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") or path.is_dir() else pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise InputDataError(f"{path}: cannot read the outcomes file ({error})") from None
    for column in ("customer_key", "converted"):
        if column not in frame.columns:
            raise InputDataError(f"{path}: no {column!r} column; outcomes need customer_key and converted (0/1)")
    for column in (c for c in _FLAGS if c in frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputDataError(f"{path}: row {row + 2}: {column} is {frame[column].iloc[row]!r}; it must be 0 or 1")
        frame[column] = values.astype(int)
    if "revenue" in frame.columns:
        revenue = pd.to_numeric(frame["revenue"], errors="coerce")
        if revenue.isna().any():
            row = int(np.flatnonzero(revenue.isna().to_numpy())[0])
            raise InputDataError(f"{path}: row {row + 2}: revenue is {frame['revenue'].iloc[row]!r}; it must be a number")
        frame["revenue"] = revenue
    frame["customer_key"] = frame["customer_key"].astype(str)
    rules = {c: "max" for c in _FLAGS if c in frame.columns} | ({"revenue": "sum"} if "revenue" in frame.columns else {})
    return frame.groupby("customer_key").agg(rules)


def _audience_dirs(assignments: Path) -> dict[str, Path]:
    """Audience name -> its parts, from an activate directory or its ``audiences/``."""
    root = ActivateLayout(assignments).audiences if ActivateLayout(assignments).audiences.is_dir() else assignments
    found = {path.name: path for path in sorted(root.iterdir()) if path.is_dir() and part_files(path)} if root.is_dir() else {}
    if not found:
        raise InputDataError(f"{assignments}: no audiences here; point --assignments at a run's activate directory")
    return found


def measure_lift(assignments, outcomes, out) -> MeasureSummary:
    """Lift per audience of the outcomes in ``outcomes`` (see the module docstring); writes
    ``measure.json``, ``measure.html`` and ``manifest.json`` into ``out``."""
    from ..report import build_measure_report

    started, started_at = time.perf_counter(), datetime.now(timezone.utc)
    assignments, outcomes, out = Path(assignments), Path(outcomes), Path(out)
    audiences = _audience_dirs(assignments)
    results = read_outcomes(outcomes)
    seen = pd.Index([], dtype=object)
    measured = []
    for name, directory in audiences.items():
        members = pd.read_parquet(directory, columns=["customer_key", "group"]).drop_duplicates("customer_key")
        seen = seen.union(pd.Index(members["customer_key"].astype(str)))
        joined = results.reindex(members["customer_key"].astype(str)).fillna(0)
        treated = (members["group"] == "treated").to_numpy()
        entry = {"name": name, "conversion": rate_lift(*(joined["converted"].to_numpy()[m] for m in (treated, ~treated)))}
        if "revenue" in joined.columns:
            entry["revenue_per_customer"] = mean_lift(*(joined["revenue"].to_numpy()[m] for m in (treated, ~treated)))
        entry["guardrails"] = {}
        for guardrail in (g for g in GUARDRAILS if g in joined.columns):
            lift = rate_lift(*(joined[guardrail].to_numpy()[m] for m in (treated, ~treated)))
            lift["worse"] = bool(math.isfinite(lift["absolute_low"]) and lift["absolute_low"] > 0)
            entry["guardrails"][guardrail] = lift
        measured.append(entry)
        _log(entry)
    summary = MeasureSummary(out_dir=out, outcomes=str(outcomes), audiences=measured,
                             outside_audiences=int((~results.index.isin(seen)).sum()),
                             seconds=round(time.perf_counter() - started, 3))  # fmt: skip
    with staged_output(out) as staging:
        document = json_ready(summary.to_dict())
        (staging / "measure.json").write_text(json.dumps(document, indent=2) + "\n")
        build_measure_report(document, staging / "measure.html")
        manifest = _manifest(summary, assignments, outcomes, started_at)
        (staging / "manifest.json").write_text(json.dumps(json_ready(manifest), indent=2) + "\n")
    return summary


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _manifest(summary: MeasureSummary, assignments: Path, outcomes: Path, started_at: datetime) -> dict:
    """The measurement's manifest (see the module docstring)."""
    from ..environment import describe_environment
    from ..pipeline import code_version

    headline = {}
    for entry in summary.audiences:
        conversion = entry["conversion"]
        headline[entry["name"]] = {
            **{key: conversion[key] for key in ("treated", "control", "treated_rate", "control_rate", "absolute_lift",
                                                "absolute_low", "absolute_high", "p_value", "underpowered")},
            "revenue_lift": entry.get("revenue_per_customer", {}).get("absolute_lift"),
            "guardrails_worse": sorted(name for name, lift in entry["guardrails"].items() if lift["worse"]),
        }  # fmt: skip
    return {
        "format": _MANIFEST_FORMAT, "command": "measure", "status": "succeeded",
        "inputs": {"assignments": str(assignments.resolve()),
                   "outcomes": {"path": str(outcomes.resolve()), "sha256": _sha256(outcomes)}},
        "code_version": code_version(), "environment": describe_environment(),
        "started_at": started_at.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(),
        "wall_seconds": summary.seconds, "outside_audiences": summary.outside_audiences, "audiences": headline,
        "outputs": ["measure.json", "measure.html", "manifest.json"],
    }  # fmt: skip


def _log(entry: dict) -> None:
    conversion = entry["conversion"]
    logger.info("measure: %s: conversion %.4f treated against %.4f control, lift %+.4f [%.4f, %.4f], p = %.3g",
                entry["name"], conversion["treated_rate"], conversion["control_rate"], conversion["absolute_lift"],
                conversion["absolute_low"], conversion["absolute_high"], conversion["p_value"])  # fmt: skip
    if conversion["underpowered"]:
        logger.warning("measure: %s: underpowered: with %d treated and %d control customers the smallest lift this "
                       "test detects (80%% power, 5%% level) is %.4f; the observed %.4f is within noise",
                       entry["name"], conversion["treated"], conversion["control"],
                       conversion["minimum_detectable_effect"], conversion["absolute_lift"])  # fmt: skip
    for guardrail, lift in entry["guardrails"].items():
        if lift["worse"]:
            logger.warning("measure: %s: %s is worse in the treated group: %.4f against %.4f (lift %+.4f [%.4f, %.4f])",
                           entry["name"], guardrail, lift["treated_rate"], lift["control_rate"], lift["absolute_lift"],
                           lift["absolute_low"], lift["absolute_high"])  # fmt: skip
