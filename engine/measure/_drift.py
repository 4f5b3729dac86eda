"""Drift of every feature and score between two runs: the population stability index (issue 32).

PSI = sum over bins of (actual share - expected share) x ln(actual share / expected share),
with the bins the deciles of the earlier run (the expected distribution; values repeated
across deciles share a bin, so a column of few values gets few bins) and the later run's
shares over the same edges. A share of 0 is taken as 1e-4 so that an emptied bin counts
instead of dividing by zero. Above :data:`SHIFTED` (0.2, the usual rule) a column has shifted.

Each run's columns are read part by part, every n-th row, at most ``sample`` rows: the cost
stays flat however many customers there are. A table that keeps those rows beside its parts
(``engine._samples``, as the feature stage keeps one) is read from there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._samples import even_rows, kept_sample, numeric_columns_of
from ..layout import RunLayout, part_files

__all__ = ["SHIFTED", "drift_sample", "drift_sources", "population_stability", "run_drift"]

SHIFTED = 0.2
_BINS = 10
_FLOOR = 1e-4
_SAMPLE = 1_000_000


def population_stability(expected: np.ndarray, actual: np.ndarray, bins: int = _BINS) -> float:
    """PSI of ``actual`` against ``expected`` (NaN values left out; NaN when either is empty)."""
    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if not len(expected) or not len(actual):
        return float("nan")
    inner = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = [np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1) / len(values)
              for values in (expected, actual)]  # fmt: skip
    before, after = (np.maximum(share, _FLOOR) for share in shares)
    return float(np.sum((after - before) * np.log(after / before)))


def _as_float(table: pa.Table) -> pd.DataFrame:
    return pd.DataFrame({column: table.column(column).to_numpy(zero_copy_only=False).astype("float64")
                         for column in table.column_names})  # fmt: skip


def drift_sources(layout: RunLayout) -> dict[str, tuple[Path, tuple | None]]:
    """What drift follows in a run: source -> (its parts, its columns; None: every numeric one)."""
    return {"features": (layout.features.root, None), "propensity": (layout.propensity_scores.root, ("score",)),
            "value": (layout.value.customers, ("p_alive", "clv"))}  # fmt: skip


def drift_sample(directory: Path, columns, sample: int) -> pd.DataFrame:
    """Every n-th row of each part of ``directory``, at most about ``sample`` rows in all, of
    ``columns`` (None: every numeric column), as float64."""
    files = part_files(directory)
    columns = numeric_columns_of(directory) if columns is None else list(columns)
    kept = kept_sample(directory, columns, sample)
    if kept is not None:
        return _as_float(pq.read_table(kept, columns=columns))
    pieces = [even_rows(pq.read_table(path, columns=columns), columns, len(files), sample) for path in files]
    return _as_float(pa.concat_tables(pieces)) if pieces else pd.DataFrame({column: [] for column in columns})


def run_drift(previous: str | Path, current: str | Path, sample: int = _SAMPLE) -> list[dict]:
    """PSI of every numeric feature, the propensity score and the value stage's P(alive) and CLV,
    from run directory ``previous`` to ``current`` (columns both runs have); sorted by PSI,
    largest first, each with ``shifted`` (above :data:`SHIFTED`)."""
    before, after = drift_sources(RunLayout(previous)), drift_sources(RunLayout(current))
    rows = []
    for source, (old, wanted) in before.items():
        new = after[source][0]
        both = set(numeric_columns_of(new))
        columns = [c for c in numeric_columns_of(old) if c in both and (wanted is None or c in wanted)]
        if not columns:
            continue
        expected, actual = drift_sample(old, columns, sample), drift_sample(new, columns, sample)
        for column in columns:
            psi = population_stability(expected[column].to_numpy(), actual[column].to_numpy())
            rows.append({"source": source, "column": column, "psi": round(psi, 4),
                         "shifted": bool(np.isfinite(psi) and psi > SHIFTED)})  # fmt: skip
    return sorted(rows, key=lambda row: -row["psi"] if np.isfinite(row["psi"]) else 0.0)
