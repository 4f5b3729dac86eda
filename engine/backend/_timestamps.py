"""Text timestamps to times on cuDF, with invalid text as null: what ``errors="coerce"`` does
on pandas and cannot do on cuDF.

cuDF's ``to_datetime`` refuses ``errors="coerce"`` for any column (RAPIDS 26.06,
``cudf/core/tools/datetimes.py:154-157``), refuses ``%z``/``%Z``, and without a format infers
one from the first value. So each row is checked here first: its whole text against an
anchored regex made from the format (libcudf's ``is_timestamp`` checks ranges, such as 30
February, but accepts text after the last field), then ``str.istimestamp`` for the ranges;
rows that pass are parsed by libcudf's ``to_timestamps`` and the others are null. A format
with a directive libcudf does not parse (``%b``, ``%a``, ``%Z`` ...) or a zone in the middle
of the format is parsed on the host by pandas, so results never differ, only the speed.

Differences from pandas, each a row the GPU rejects and pandas accepts (never a different
value): ``%f`` must be the last field, and ISO 8601 text outside four shapes (date; date and
minutes; seconds; fractions) is rejected. See docs/gpu.md.
"""

from __future__ import annotations

__all__ = ["device_to_datetime", "format_shape"]

# libcudf's strptime directives (cudf/strings/convert/convert_datetime.hpp:26-47), with the
# widths Python's strptime reads them at.
_DIRECTIVES = {
    "Y": "[0-9]{4}", "y": "[0-9]{2}", "m": "[0-9]{1,2}", "d": "[0-9]{1,2}", "H": "[0-9]{1,2}",
    "I": "[0-9]{1,2}", "M": "[0-9]{1,2}", "S": "[0-9]{1,2}", "f": "[0-9]{1,9}", "j": "[0-9]{1,3}",
    "p": "(AM|PM|am|pm)",
}  # fmt: skip
# ISO 8601 wall-clock shapes (offsets already taken off, "T" read as a space).
_ISO = (
    ("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{1,9}$", "%Y-%m-%d %H:%M:%S.%9f"),
    ("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$", "%Y-%m-%d %H:%M:%S"),
    ("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$", "%Y-%m-%d %H:%M"),
    ("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "%Y-%m-%d"),
)
_LITERAL = set(" -:/,_")


def format_shape(fmt: str) -> str | None:
    """An anchored regex for the whole text of strptime format ``fmt``; None when ``fmt`` has
    a directive libcudf does not parse."""
    parts, i = ["^"], 0
    while i < len(fmt):
        if fmt[i] != "%":
            parts.append(fmt[i] if fmt[i].isalnum() or fmt[i] in _LITERAL else "\\" + fmt[i])
            i += 1
            continue
        directive = fmt[i + 1 : i + 2]
        if directive == "%":
            parts.append("%")
        elif directive in _DIRECTIVES:
            parts.append(_DIRECTIVES[directive])
        else:
            return None
        i += 2
    return "".join(parts) + "$"


def _parse(text, shape: str, device_format: str):
    """datetime64[us] of the rows of cuDF text ``text`` with ``shape`` that are real times; null elsewhere."""
    import cudf
    import pylibcudf as plc

    ok = text.str.match(shape).fillna(False) & text.str.istimestamp(device_format).fillna(False)
    column, _ = text.where(ok).to_pylibcudf()  # rows that fail are null in, null out
    parsed = plc.strings.convert.convert_datetime.to_timestamps(
        column, plc.DataType(plc.TypeId.TIMESTAMP_MICROSECONDS), device_format
    )
    return cudf.Series.from_pylibcudf(parsed, {"index": text.index})


def device_to_datetime(text, fmt: str | None, host_parse, **options):
    """cuDF text ``text`` as datetime64[us] by strptime format ``fmt`` (None: ISO 8601), null
    where the text is not such a time. ``host_parse(pandas_text, fmt, **options)`` is the pandas
    parser, used where libcudf cannot parse the format (see the module docstring)."""
    if not options:
        if fmt is None:
            spaced = text.str.replace("T", " ", regex=False)
            parsed = None
            for shape, device_format in _ISO:
                one = _parse(spaced, shape, device_format)
                parsed = one if parsed is None else parsed.fillna(one)
            return parsed
        shape = format_shape(fmt)
        if shape is not None:
            return _parse(text, shape, fmt.replace("%f", "%9f"))
    import cudf

    return cudf.from_pandas(host_parse(text.to_pandas(), fmt, **options))
