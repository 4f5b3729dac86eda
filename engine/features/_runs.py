"""Rows grouped by customer: where each customer's run starts, and positions among keys.

The store keeps every customer's rows together, sorted by (customer_key, ts); these helpers
work on pandas + NumPy and on cuDF + CuPy alike.
"""

from __future__ import annotations

from ..backend import positions_in, run_starts, to_array

__all__ = ["KEY", "NAN", "categorical", "changed", "codes_in", "customers_of", "last_rows", "ratio"]

KEY = "customer_key"
NAN = float("nan")


def changed(values, xp):
    """True where a row's value differs from the previous row's (always on the first row)."""
    changed = xp.ones(values.size, dtype=bool)
    if values.size:
        changed[1:] = values[1:] != values[:-1]
    return changed


def customers_of(namespace, frames, xp):
    """The sorted distinct customer keys over ``frames``, and each frame's rows' positions
    among them (int64). Rows are grouped by key within each frame."""
    starts = [run_starts(frame[KEY]) for frame in frames]
    runs = [frame[KEY].iloc[xp.flatnonzero(start)].reset_index(drop=True) for frame, start in zip(frames, starts)]
    run_of_row = [xp.cumsum(start) - 1 for start in starts]
    if len(frames) == 1:
        return runs[0], run_of_row
    keys = namespace.concat(runs, ignore_index=True).drop_duplicates().sort_values().reset_index(drop=True)
    return keys, [positions_in(run_keys, keys)[run] for run_keys, run in zip(runs, run_of_row)]


def last_rows(customer, xp):
    """True on the last row of each customer's run (rows grouped by customer)."""
    if customer.size == 0:
        return xp.zeros(0, dtype=bool)
    return xp.concatenate([customer[1:] != customer[:-1], xp.ones(1, dtype=bool)])


def categorical(series):
    return series if str(series.dtype) == "category" else series.astype("category")


def codes_in(series, values, xp):
    """Codes of ``series`` in ``values`` (int64), -1 for anything else or missing."""
    if len(series) == 0:
        return xp.zeros(0, dtype="int64")
    return to_array(categorical(series).cat.set_categories(list(values)).cat.codes, "int64", na_value=-1)


def ratio(numerator, denominator, xp):
    """numerator / denominator, NaN where the denominator is 0."""
    safe = xp.where(denominator == 0, 1, denominator)
    return xp.where(denominator == 0, NAN, numerator / safe)
