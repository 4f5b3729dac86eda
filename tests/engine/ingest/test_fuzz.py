"""Bad input, fuzzed: never a traceback, nothing lost.

Whatever a file holds (wrong and missing columns, mixed types, text in any bytes, empty and
header-only files, huge strings, NaN, infinities and extreme numbers, odd and far-future
timestamps, duplicate headers, gzip that is not gzip), ingest either refuses it with a
one-line ``InputDataError`` naming the file, or keeps and quarantines its rows so that rows
read = kept + quarantined + duplicates. The default tier tries a few hundred values and a few
dozen files; ``SEGSCALE_FUZZ_EXAMPLES=2000 python -m pytest tests/engine/ingest/test_fuzz.py``
is the long tier.
"""

import gzip
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import load_config
from engine.exceptions import InputDataError
from engine.ingest import ingest
from engine.ingest._validate import REASONS, ParseRules, validate_partition

EXAMPLES = int(os.environ.get("SEGSCALE_FUZZ_EXAMPLES", "0"))
RULES = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S", extracted_at=pd.Timestamp("2026-01-01"))

_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["1e308", "-1e308", "1e-320", "nan", "-inf", "0x10", "1,5", "", " ", "12.50 ", "1_000"]),
)
_TIMES = st.one_of(
    st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(), max_value=pd.Timestamp("2200-12-31").to_pydatetime())
    .map(lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(["", "2024-02-30 10:00:00", "9999-12-31 23:59:59", "0001-01-01 00:00:00", "2024-01-01",
                     "1700000000", "2024-01-01T10:00:00Z", "yesterday"]),
)  # fmt: skip
_TEXT = st.one_of(st.text(max_size=12), st.text(min_size=5_000, max_size=20_000), st.sampled_from(["", " ", "None", "ñ"]))


@settings(max_examples=EXAMPLES or 200, deadline=None)
@given(st.lists(st.tuples(_TEXT, _TIMES, _NUMBERS, _NUMBERS), min_size=1, max_size=20))
def test_every_row_is_kept_typed_or_quarantined_with_a_known_reason(rows):
    raw = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "quantity"], dtype=str)
    out = validate_partition(raw, "transactions", RULES)
    assert len(out) == len(raw) and list(out.index) == list(raw.index)
    reasons = out["reason"]
    assert set(reasons.dropna()) <= set(REASONS)
    kept = out[reasons.isna()]
    amounts = kept["amount"].to_numpy(dtype="float64")
    assert np.isfinite(amounts).all() and (np.abs(amounts) <= RULES.max_abs_amount).all()
    assert kept["ts"].notna().all() and (kept["ts"] <= RULES.extracted_at).all()
    assert kept["customer_id"].str.strip().str.len().gt(0).all()


_REQUIRED = ["customer_id", "ts", "amount"]
_HEADERS = st.one_of(
    # Mostly the columns ingest needs, in any order, among others (a repeated one included).
    st.tuples(st.permutations(_REQUIRED), st.lists(st.sampled_from(["quantity", "order_id", "note", "amount", ""]),
                                                   max_size=2)).map(lambda parts: [*parts[0], *parts[1]]),
    st.lists(st.sampled_from([*_REQUIRED, "quantity", "note", ""]), max_size=5),
)  # fmt: skip
_CELLS = st.one_of(_TEXT.filter(lambda text: len(text) < 100), _NUMBERS, _TIMES)
# Columns ingest reads hold mostly what they should, so that files get past the door too.
def _mostly(*good):
    return st.one_of(*[st.sampled_from(good)] * 3, _CELLS)


_BY_COLUMN = {
    "customer_id": _mostly("A", "B", "C", "42", "4.2e1"),
    "ts": _mostly("2024-03-01 10:00:00", "2025-12-31 23:59:59"),
    "amount": _mostly("3.5", "0", "-2", "1e9"),
}


@st.composite
def _files(draw) -> bytes:
    """The bytes of a transactions file: a header of any columns, rows of any cells, or junk."""
    shape = draw(st.sampled_from(["table"] * 6 + ["empty", "header only", "bytes"]))
    if shape == "empty":
        return b""
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    header = draw(_HEADERS)
    cells = [_BY_COLUMN.get(name, _CELLS) for name in header]
    frame = pd.DataFrame(draw(st.lists(st.tuples(*cells), min_size=1, max_size=8)) if header else [])
    text = ",".join(header) + "\n"
    if shape == "table":
        text += frame.to_csv(header=False, index=False) if len(frame.columns) else ""
    encoding = draw(st.sampled_from(["utf-8"] * 4 + ["latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=max(EXAMPLES // 5, 60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_files(), st.sampled_from(["tx.csv"] * 4 + ["tx.csv.gz", "tx.csv.gz (not gzip)"]))
def test_any_file_is_refused_in_one_line_or_fully_accounted_for(content, name):
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        path = name.split(" ")[0]
        (directory / path).write_bytes(gzip.compress(content) if name == "tx.csv.gz" else content)
        (directory / "run.toml").write_text(
            f'[inputs.transactions]\npath = "{path}"\ntimestamp_format = "%Y-%m-%d %H:%M:%S"\n'
            '[ingest]\npseudonym_key = "k-for-tests"\n'
        )
        try:
            summary = ingest(load_config(directory / "run.toml"))
        except InputDataError as error:
            message = str(error)
            assert "\n" not in message and path in message, message
            return
        counts = summary.tables["transactions"]
        quarantined = sum(counts["quarantined"].values())
        assert counts["read"] == counts["kept"] + quarantined + counts["duplicates"] > 0
        assert math.isfinite(counts["kept"])
