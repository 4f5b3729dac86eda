"""The columns an audience condition can name, where each comes from, and the conditions'
check and evaluation (issue 27).

Every stage output is written one part per store partition, part N holding the customers of
store part N; so one partition of each, joined on ``customer_key``, is everything the
conditions of those customers need (no shuffle). Features are the left side: every customer
with features; a customer without a value row (no purchase before as-of) has NaN there, and a
condition on it does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..exceptions import ConfigError
from ..layout import RunLayout, part_files

__all__ = ["CLV_PERCENTILE", "Catalog", "condition_mask", "read_catalog"]

# Derived from the value stage's clv against every customer's (see clv_thresholds).
CLV_PERCENTILE = "clv_percentile"


def _source_dirs(layout: RunLayout) -> dict[str, Path]:
    return {
        "features": layout.features.root,
        "segments": layout.segments.assignments,
        "propensity": layout.propensity_scores.root,
        "value": layout.value.customers,
    }


@dataclass(frozen=True)
class Catalog:
    """Column -> (source, whether numeric) for the outputs this run has, and their directories."""

    columns: dict[str, tuple[str, bool]]
    directories: dict[str, Path]

    def check(self, audiences, source: str) -> None:
        """A one-line ConfigError for a condition on a column no output has, or of the wrong kind."""
        for number, audience in enumerate(audiences):
            for column, condition in audience.where.items():
                where = f"{source}: [activate.audiences[{number}].where.{column}] ({audience.name})"
                if column not in self.columns:
                    raise ConfigError(f"{where}: no output of this run has a column {column!r} "
                                      f"(known: {', '.join(sorted(self.columns))})")  # fmt: skip
                numeric = self.columns[column][1]
                if (condition.min is not None or condition.max is not None) and not numeric:
                    raise ConfigError(f"{where}: {column!r} is text; give values = [...], not min/max")

    def check_actions(self, actions, source: str) -> None:
        """A one-line ConfigError for a playbook this run's outputs cannot value."""
        for number, action in enumerate(actions):
            where = f"{source}: [activate.actions[{number}]] ({action.name})"
            if "score" not in self.columns:
                raise ConfigError(f"{where}: the playbook needs propensity scores; run the propensity stage")
            if action.value is None and "expected_spend" not in self.columns:
                raise ConfigError(f"{where}: no expected spend per customer (no value stage, or no amounts); "
                                  "give the action a value")  # fmt: skip

    def sources_of(self, columns) -> dict[str, list[str]]:
        """Which columns to read from which output (every output is read by its key)."""
        wanted: dict[str, list[str]] = {}
        for column in dict.fromkeys("clv" if column == CLV_PERCENTILE else column for column in columns):
            if column in self.columns:
                wanted.setdefault(self.columns[column][0], []).append(column)
        return wanted


def read_catalog(layout: RunLayout) -> Catalog:
    """The columns of the outputs the run directory holds (a stage that has not run adds none)."""
    columns: dict[str, tuple[str, bool]] = {}
    directories = {}
    for source, directory in _source_dirs(layout).items():
        files = part_files(directory)
        if not files:
            continue
        directories[source] = directory
        for item in pq.read_schema(files[0]):
            if item.name != "customer_key" and item.name not in columns:
                type_ = item.type.value_type if pa.types.is_dictionary(item.type) else item.type
                numeric = pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)
                columns[item.name] = (source, numeric)
    if "clv" in columns:
        columns[CLV_PERCENTILE] = ("value", True)
    return Catalog(columns, directories)


def condition_mask(frame: pd.DataFrame, column: str, condition) -> np.ndarray:
    """Where ``condition`` holds on ``frame[column]`` (a missing value never satisfies it)."""
    values = frame[column]
    if condition.values:
        known = values.notna().to_numpy()
        return known & values.astype(str).isin(condition.values).to_numpy()
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    mask = ~np.isnan(numbers)
    if condition.min is not None:
        mask &= numbers >= condition.min
    if condition.max is not None:
        mask &= numbers <= condition.max
    return mask
