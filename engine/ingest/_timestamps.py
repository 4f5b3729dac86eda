"""Text timestamps of one fixed shape, read from their bytes (the pandas backend).

pandas parses an Arrow string column by first copying it into an array of Python str: that
copy was half of parsing 1.5M event times, and parsing was half of validating them. Most
timestamp columns written by machines have one fixed shape ("2024-06-01 10:00:00"), and
those values are read here straight from the column's bytes with NumPy arithmetic.

Only values that are certainly valid in the shape are decided here: the right length, digits
and separators where they belong, a month, day, hour, minute and second that exist, a year
between 1900 and 2200. Every other value (another shape, 30 February, a leap second, a null)
is left to pandas as before, so the results are pandas' own, only sooner.
"""

from __future__ import annotations

import numpy
import pyarrow

__all__ = ["parse_fixed_shape"]

# Length, and the separator between date and time (None: a date alone).
_DATE_TIME = (19, b" ")
_DATE_T_TIME = (19, b"T")
_DATE = (10, None)
_SHAPES: dict[str, tuple[tuple[int, bytes | None], ...]] = {
    "%Y-%m-%d %H:%M:%S": (_DATE_TIME,),
    "%Y-%m-%dT%H:%M:%S": (_DATE_T_TIME,),
    "%Y-%m-%d": (_DATE,),
    "ISO8601": (_DATE_TIME, _DATE_T_TIME, _DATE),
}
_DIGITS = {19: (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18), 10: (0, 1, 2, 3, 5, 6, 8, 9)}
_SEPARATORS = {19: ((4, b"-"), (7, b"-"), (13, b":"), (16, b":")), 10: ((4, b"-"), (7, b"-"))}
_DAYS_IN_MONTH = numpy.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=numpy.int32)
_MICROS_PER_SECOND = 1_000_000


def parse_fixed_shape(text, fmt: str):
    """Decide the values of ``text`` (a pandas series of str) that have a fixed shape of ``fmt``.

    Returns
    -------
    (values, decided) or None
        ``values``: numpy datetime64[us], NaT where not decided; ``decided``: bool mask of
        the values read here. None when ``fmt`` has no fixed shape.
    """
    shapes = _SHAPES.get(fmt)
    if shapes is None:
        return None
    strings = pyarrow.array(text, from_pandas=True)
    if isinstance(strings, pyarrow.ChunkedArray):
        strings = strings.combine_chunks()
    lengths = pyarrow.compute.binary_length(strings).to_numpy(zero_copy_only=False)
    values = numpy.full(len(text), numpy.datetime64("NaT"), dtype="datetime64[us]")
    decided = numpy.zeros(len(text), dtype=bool)
    for length in sorted({length for length, _ in shapes}):
        positions = numpy.flatnonzero(lengths == length)  # nulls give NaN: never equal
        if not len(positions):
            continue
        same = strings if len(positions) == len(strings) else strings.take(pyarrow.array(positions))
        separators = [separator for size, separator in shapes if size == length]
        micros, valid = _read(_fixed_width_bytes(same, length), separators)
        values[positions[valid]] = micros[valid].astype("datetime64[us]")
        decided[positions[valid]] = True
    return values, decided


def _fixed_width_bytes(strings, length: int) -> numpy.ndarray:
    """The bytes of strings that all have ``length`` bytes, as an (n, length) uint8 array."""
    offset_type = numpy.int64 if pyarrow.types.is_large_string(strings.type) else numpy.int32
    _, offsets, data = strings.buffers()
    offsets = numpy.frombuffer(offsets, dtype=offset_type)[strings.offset : strings.offset + len(strings) + 1]
    flat = numpy.frombuffer(data, dtype=numpy.uint8)[offsets[0] : offsets[-1]]
    return flat.reshape(len(strings), length)


def _number(digits: numpy.ndarray, first: int, count: int) -> numpy.ndarray:
    # int32 is wide enough for every field, and narrow arrays are most of the speed here.
    number = digits[:, first].astype(numpy.int32)
    for position in range(first + 1, first + count):
        number *= 10
        number += digits[:, position]
    return number


def _read(rows: numpy.ndarray, separators) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(microseconds since the epoch, valid) of fixed-width rows of timestamp text."""
    length = rows.shape[1]
    digits = rows - numpy.uint8(ord("0"))  # bytes below "0" wrap past 9
    valid = (digits[:, list(_DIGITS[length])] <= 9).all(axis=1)
    for position, separator in _SEPARATORS[length]:
        valid &= rows[:, position] == ord(separator)
    if length == 19:
        valid &= numpy.isin(rows[:, 10], [ord(separator) for separator in separators])
    year, month, day = _number(digits, 0, 4), _number(digits, 5, 2), _number(digits, 8, 2)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[numpy.clip(month, 0, 12)] + (leap & (month == 2))
    valid &= (year >= 1900) & (year <= 2200) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    seconds = _days_since_epoch(year, month, day).astype(numpy.int64) * 86_400
    if length == 19:
        hour, minute, second = _number(digits, 11, 2), _number(digits, 14, 2), _number(digits, 17, 2)
        valid &= (hour <= 23) & (minute <= 59) & (second <= 59)
        seconds += hour * 3600 + minute * 60 + second
    return seconds * _MICROS_PER_SECOND, valid


def _days_since_epoch(year, month, day):
    """Days from 1970-01-01 of proleptic Gregorian dates (H. Hinnant's days_from_civil)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + numpy.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468
