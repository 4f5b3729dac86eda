"""Bring your own table: train and evaluate on any customer-level CSV or Parquet file.

One row per customer, an id column and a label column; every other column is an input
unless dropped or declared sensitive. Text columns whose non-blank values all read as
numbers (a CSV's ``" "`` for a missing total) become numbers with gaps; other text columns
are categories. Labels may be 1/0, true/false, yes/no, y/n (any case) or booleans.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._tasks import staged_output
from ..backend import resolve_backend
from ..config import PropensityOptions
from ..exceptions import InputDataError
from ._labels import LABEL
from ._pipeline import TrainSummary, _summary
from ._train import fit_and_evaluate, write_model

__all__ = ["coerce_columns", "parse_labels", "read_customer_table", "train_table"]

_POSITIVE = {"1", "1.0", "true", "yes", "y", "t"}
_NEGATIVE = {"0", "0.0", "false", "no", "n", "f"}
_SEPARATORS = ",;\t|"


def read_customer_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV (separator sniffed from the header among , ; tab |) or Parquet file, as text
    columns where the file has text."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq") or path.is_dir():
        return pd.read_parquet(path)
    with open(path, newline="", encoding="utf-8-sig") as file:
        header = file.readline()
    try:
        separator = csv.Sniffer().sniff(header, delimiters=_SEPARATORS).delimiter
    except csv.Error:
        separator = ","
    try:
        return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputDataError(f"{path}: cannot read as CSV ({' '.join(str(error).split())})") from None


def coerce_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers from text where every non-blank value is one; blanks become missing."""
    coerced = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            coerced[name] = column
            continue
        text = column.astype("string").str.strip()
        text = text.mask(text.eq(""))
        numbers = pd.to_numeric(text, errors="coerce")
        if text.notna().any() and numbers.notna().sum() == text.notna().sum():
            coerced[name] = numbers.astype("float64")
        else:
            coerced[name] = text
    return pd.DataFrame(coerced, index=frame.index)


def parse_labels(column: pd.Series, *, name: str) -> np.ndarray:
    """0/1 labels from 1/0, true/false, yes/no, y/n; a one-line error naming unknown values."""
    text = column.astype("string").str.strip().str.lower()
    positive, negative = text.isin(_POSITIVE), text.isin(_NEGATIVE)
    unknown = sorted(set(text[~(positive | negative)].fillna("(blank)")))
    if unknown:
        shown = ", ".join(repr(value) for value in unknown[:5])
        raise InputDataError(f"label column {name!r}: cannot read {shown} as yes/no (use 1/0, true/false or yes/no)")
    return positive.to_numpy().astype("int8")


def train_table(
    path: str | os.PathLike,
    *,
    id_column: str | None,
    target: str,
    drop=(),
    sensitive=(),
    out: str | os.PathLike | None = None,
    options: PropensityOptions | None = None,
    seed: int = 0,
    backend_name: str = "auto",
) -> TrainSummary:
    """Train and evaluate a propensity model on a customer table; see the module docstring.

    Parameters
    ----------
    path : path
        CSV or Parquet, one row per customer.
    id_column : str or None
        The customer id column; None numbers the rows (row 0 is ``"0"``).
    target : str
        The label column.
    drop : iterable of str
        Columns that are not inputs (e.g. one that leaks the label).
    sensitive : iterable of str
        Columns audited for fairness and never used as inputs.
    out : path, optional
        Where to write the model directory; None only evaluates.
    options : PropensityOptions, optional
        Model, splits, calibration and bands (``target``, ``horizon_days`` do not apply).

    Raises
    ------
    InputDataError
        A named column is missing, ids repeat, labels are unreadable or too few of a class.
    """
    started = time.perf_counter()
    options = options or PropensityOptions()
    backend = resolve_backend(backend_name)
    raw = read_customer_table(path)
    named = [name for name in (id_column, target, *drop, *sensitive) if name is not None]
    missing = [name for name in named if name not in raw.columns]
    if missing:
        raise InputDataError(f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(raw.columns)})")
    keys = raw[id_column].astype("string").str.strip() if id_column else pd.Series(raw.index.astype(str))
    if keys.isna().any() or keys.duplicated().any():
        raise InputDataError(f"{path}: id column {id_column!r} must be unique and non-blank, one row per customer")
    inputs = [name for name in raw.columns if name not in set(named)]
    frame = coerce_columns(raw[inputs])
    frame.insert(0, "customer_key", keys.to_numpy(dtype=object))
    frame[LABEL] = parse_labels(raw[target], name=target)
    audited = raw[list(sensitive)].assign(customer_key=frame["customer_key"]) if sensitive else None
    trained = fit_and_evaluate(
        frame, features=inputs, options=options, seed=seed, backend=backend, sensitive=audited,
        sensitive_columns=list(sensitive),
    )  # fmt: skip
    window = {"table": str(path), "id": id_column, "target": target}
    if out is not None:
        with staged_output(Path(out)) as staging:
            write_model(staging, trained, options=options, seed=seed, backend=backend,
                        source={**window, "dropped": list(drop), "sensitive": list(sensitive)})  # fmt: skip
    summary = _summary(Path(out) if out is not None else None, trained, options, window, started)
    summary.target = target
    return summary
