"""Fixed-shape timestamps read from their bytes: the same values as pandas' parser, always."""

import numpy as np
import pandas as pd
import pytest

from engine.ingest._timestamps import parse_fixed_shape
from engine.ingest._validate import _to_datetime


def _texts(rows, seed=0):
    """Timestamp text near the fixed shapes: valid values, impossible dates, leap days and
    seconds, other separators, digits swapped for letters, other lengths, nulls."""
    rng = np.random.default_rng(seed)
    year = rng.choice([1899, 1900, 1970, 2000, 2023, 2024, 2100, 2200, 2201, 9999], rows)
    month, day = rng.integers(0, 14, rows), rng.integers(0, 33, rows)
    hour, minute, second = rng.integers(0, 25, rows), rng.integers(0, 61, rows), rng.integers(0, 61, rows)
    separator = rng.choice([" ", "T", "_"], rows, p=[0.6, 0.3, 0.1])
    texts = [f"{y:04d}-{m:02d}-{d:02d}{s}{h:02d}:{mi:02d}:{se:02d}"
             for y, m, d, s, h, mi, se in zip(year, month, day, separator, hour, minute, second)]  # fmt: skip
    for index in rng.choice(rows, rows // 5, replace=False):
        text = texts[index]
        edit = rng.integers(0, 5)
        if edit == 0:
            texts[index] = text[:10]  # a date alone
        elif edit == 1:
            position = rng.integers(0, len(text))
            texts[index] = text[:position] + "x" + text[position + 1 :]
        elif edit == 2:
            texts[index] = text + ".5"
        elif edit == 3:
            texts[index] = text.replace("-", "/")
        else:
            texts[index] = None
    return pd.Series(texts, dtype="str")


@pytest.mark.parametrize("fmt", ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", None])
def test_fixed_shapes_give_what_pandas_gives(fmt):
    text = _texts(20_000)
    expected = pd.to_datetime(text, format=fmt or "ISO8601", errors="coerce").astype("datetime64[us]")
    parsed = _to_datetime(text, fmt).astype("datetime64[us]")
    pd.testing.assert_series_equal(parsed, expected, check_names=False)
    # Values were read from the bytes, not all left to pandas.
    values, decided = parse_fixed_shape(text, fmt or "ISO8601")
    assert decided.any()
    assert (values[decided] == expected.to_numpy()[decided]).all()


def test_values_it_cannot_be_sure_of_are_left_to_pandas():
    text = pd.Series(["2024-02-29 10:00:00", "2023-02-29 10:00:00", "2024-01-05 03:04:60",
                      "1899-12-31 23:59:59", "2024-13-01 00:00:00", None, "2024-1-5 3:04:05"], dtype="str")  # fmt: skip
    values, decided = parse_fixed_shape(text, "%Y-%m-%d %H:%M:%S")
    assert decided.tolist() == [True, False, False, False, False, False, False]
    assert values[0] == np.datetime64("2024-02-29T10:00:00", "us")
    # pandas rolls a 60th second over: whatever it does, the result is its own.
    parsed = _to_datetime(text, "%Y-%m-%d %H:%M:%S")
    assert parsed.iloc[2] == pd.Timestamp("2024-01-05 03:05:00")
    assert parsed.iloc[[1, 4, 5]].isna().all()
    assert parse_fixed_shape(text, "%d/%m/%Y") is None
