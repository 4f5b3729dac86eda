"""The GPU's text-timestamp parsing: shapes checked on the CPU, values on the GPU."""

import re

import pandas as pd
import pytest

from engine.backend._timestamps import format_shape

FORMATS = ["%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M", "%Y.%m.%d", "%Y-%m-%dT%H:%M:%S.%f", "%m/%d/%y %I:%M %p", "%Y%m%d"]
TEXTS = [
    "2024-06-01 10:00:00", "2024-6-1 7:05:09", "2024-06-01 10:00:00junk", " 2024-06-01 10:00:00", "2024-06-01",
    "01/06/2024 10:00", "1/6/2024 10:00", "2024.06.01", "2024-06-01T10:00:00.123456", "2024-06-01T10:00:00.1",
    "06/01/24 10:00 PM", "06/01/24 10:00 pm", "20240601", "2024-02-30 10:00:00", "", "None", "2024/06/01",
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_shape_accepts_what_pandas_parses_and_no_trailing_text(fmt):
    """libcudf's is_timestamp accepts text after the last field; the shape must not, and must
    never refuse a text pandas reads by the same format."""
    shape = re.compile(format_shape(fmt))
    for text in TEXTS:
        parsed = pd.to_datetime(pd.Series([text]), format=fmt, errors="coerce").notna().iloc[0]
        if parsed:
            assert shape.match(text), (fmt, text)
        if text.endswith("junk") or text.startswith(" "):
            assert not shape.match(text), (fmt, text)


def test_formats_libcudf_cannot_parse_have_no_shape():
    assert format_shape("%d %b %Y") is None and format_shape("%A %d") is None and format_shape("%Y %Z") is None
    assert format_shape("100%% %Y") == "^100% [0-9]{4}$"
