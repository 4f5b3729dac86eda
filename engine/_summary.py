"""What a stage reports, as JSON: one rule for every stage's summary.

A stage's summary is a dataclass inheriting :class:`Summary`; its fields are what the stage
record, the run manifest and ``--json`` hold, turned JSON-ready by :func:`json_ready`
(paths and dates as text, numpy values as Python's, frames as lists of rows). A field marked
``field(metadata=FLATTEN)`` holds a dict whose keys join the summary's own (the value
stage's document, written to ``value.json`` too).
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime
from pathlib import PurePath

import numpy as np
import pandas as pd

__all__ = ["FLATTEN", "Summary", "json_ready"]

FLATTEN = {"flatten": True}


def json_ready(value):
    """``value`` as plain JSON types, recursively."""
    if isinstance(value, Summary):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: json_ready(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, pd.DataFrame):
        return [json_ready(row) for row in value.to_dict("records")]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


class Summary:
    """A dataclass mixin: ``to_dict()`` is its fields, JSON-ready (see the module docstring)."""

    def to_dict(self) -> dict:
        document = {}
        for field in dataclasses.fields(self):
            value = json_ready(getattr(self, field.name))
            if field.metadata.get("flatten"):
                document.update(value)
            else:
                document[field.name] = value
        return document
