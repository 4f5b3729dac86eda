"""Row validation and typing, one partition at a time (issue 3, item 2).

``validate_partition(raw, table, rules)`` turns one partition of a raw input table (strings
from CSV, or typed values from Parquet) into the table's typed columns plus a ``reason``
column: null for a valid row, else the code of the first rule the row breaks. Nothing is
dropped here: the caller splits kept rows from quarantined ones on ``reason`` and writes the
quarantined rows' original values with ``as_text(raw)``.

Both functions are partition functions (STYLE 3): they take their dataframe namespace
(pandas or cudf) from their input, use only vectorised operations both libraries offer,
and work on an empty frame, so Dask ``meta`` is ``validate_partition(raw.iloc[:0], ...)``.

Text columns
------------
Text columns (``"str"`` in `TYPED_COLUMNS`, the ``reason`` column, everything `as_text`
returns) have the namespace's default string dtype, the one ``series.astype(str)`` gives:
``object`` on pandas 2.x and on cuDF, pandas' ``StringDtype(na_value=nan)`` ("str") on
pandas 3. Nulls stay null (NaN/None), never the text "None", "nan" or "<NA>". We do not use
pandas' opt-in ``"string"`` (``pd.NA``) dtype: it is not the default on any supported pandas,
Dask's and cuDF's metadata handling of it differ, and the default one round-trips through
Parquet as a plain string column everywhere. Do not ``astype(str)`` a column to "reach" this
dtype on pandas 2: that turns nulls into the text ``"nan"``/``"None"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas

from ..backend import array_namespace, dataframe_namespace, device_to_datetime, to_array
from ..contract import CONSENT_PREFIX, EVENT_TYPES, TABLES
from ..exceptions import InputDataError
from ._timestamps import parse_fixed_shape

__all__ = [
    # rules and codes
    "REASONS",
    "TABLE_REASONS",
    "ParseRules",
    # output schema
    "TYPED_COLUMNS",
    "SUPPRESSION_REASON",
    # partition functions
    "validate_partition",
    "as_text",
]

REASONS: dict[str, str] = {
    "blank_customer_id": "customer id is missing or blank",
    "bad_timestamp": "timestamp is missing, unparseable, or a local time that does not exist or is ambiguous",
    "future_timestamp": "timestamp is later than the extraction time (clock skew)",
    "non_numeric_amount": "amount is missing or not a plain number",
    "amount_out_of_bounds": "amount is larger in magnitude than [ingest] max_abs_amount",
    "non_numeric_quantity": "quantity is missing or not a plain number",
    "negative_amount": "amount is negative on a line that is not a return",
    "unknown_event_type": "event type is not one the engine knows",
    "bad_flag": "treated/converted is not a yes/no value",
    "bad_consent": "a consent_<channel> value is not a yes/no value (a blank one is unknown, which is no fault)",
    "blank_channel": "contact channel is missing or blank",
    "blank_reason": "suppression reason is missing or blank",
}

# The rules each table is checked against, in the order they are checked: a row's reason is
# the first one it fails.
TABLE_REASONS: dict[str, tuple[str, ...]] = {
    "transactions": (
        "blank_customer_id", "bad_timestamp", "future_timestamp",
        "non_numeric_amount", "amount_out_of_bounds", "non_numeric_quantity", "negative_amount",
    ),
    "events": ("blank_customer_id", "bad_timestamp", "future_timestamp", "unknown_event_type"),
    "customers": ("blank_customer_id", "bad_consent"),
    "identities": ("blank_customer_id",),
    "outcomes": ("blank_customer_id", "bad_flag"),
    "contacts": ("blank_customer_id", "bad_timestamp", "future_timestamp", "blank_channel"),
    # A suppression's ts is optional: only a value given and unreadable is bad_timestamp.
    "suppressions": ("blank_customer_id", "bad_timestamp", "future_timestamp", "blank_reason"),
}  # fmt: skip

_TEXT = "str"  # the namespace's default string dtype; see the module docstring
_UTC_TS = "datetime64[us, UTC]"

# The suppressions' ``reason`` (why a customer must not be contacted) would share a column with
# the quarantine's ``reason`` (why a row was rejected): until the store, it goes by this name.
SUPPRESSION_REASON = "suppression_reason"

TYPED_COLUMNS: dict[str, dict[str, str]] = {
    "transactions": {
        "customer_id": _TEXT,
        "ts": _UTC_TS,
        "amount": "float64",
        "order_id": _TEXT,
        "quantity": "float64",
        "category": _TEXT,
        "channel": _TEXT,
        "discount": "float64",
        "is_return": "bool",
    },
    "events": {
        "customer_id": _TEXT,
        "ts": _UTC_TS,
        "event_type": _TEXT,
        "channel": _TEXT,
        "category": _TEXT,
    },
    "customers": {"customer_id": _TEXT, "signup_ts": _UTC_TS, "region": _TEXT},
    "identities": {"customer_id": _TEXT, "id_type": _TEXT, "id_value": _TEXT},
    "outcomes": {"customer_id": _TEXT, "campaign": _TEXT, "treated": "bool", "converted": "bool"},
    "contacts": {"customer_id": _TEXT, "ts": _UTC_TS, "channel": _TEXT, "campaign": _TEXT},
    "suppressions": {"customer_id": _TEXT, "ts": _UTC_TS, "channel": _TEXT, SUPPRESSION_REASON: _TEXT},
}

_TRUE = ("true", "yes", "1", "t", "y")
_FALSE = ("false", "no", "0", "f", "n")
# An integer written as a float ("17850.0"): ids and flags read through a float column.
_INTEGRAL_FLOAT = r"^[+-]?[0-9]+\.0*$"
_FLOAT_SUFFIX = r"\.0*$"
# A UTC offset at the end of an ISO 8601 timestamp: "+02:00", "-0500". "Z" is checked apart.
# Four digits are required so that a date's "-01" is never read as an offset.
_OFFSET = r"[+-][0-9]{2}:?[0-9]{2}$"
_OFFSET_PARTS = r"([+-])([0-9]{2}):?([0-9]{2})$"
# Floats hold integers exactly up to 2**53; larger "integral" floats are not ids we can trust.
_EXACT_INT_LIMIT = 2.0**53


@dataclass(frozen=True)
class ParseRules:
    """How a source's values are read.

    Attributes
    ----------
    timestamp_format : str or None, default None
        ``strptime`` format of text timestamps; None parses ISO 8601. A format ending in
        ``%z`` requires a UTC offset on every value.
    timezone : str, default "UTC"
        IANA time zone of naive timestamps (text without an offset, or a naive datetime
        column). Local times that do not exist or are ambiguous (DST changes) are bad.
    extracted_at : pandas.Timestamp or None, default None
        When the data was extracted; later timestamps are ``future_timestamp``. A naive
        value is taken as UTC; it is stored tz-aware UTC. None: no future check.
    return_prefix : str or None, default None
        Transactions: a line whose order id starts with this is a return.
    max_abs_amount : float, default 1e9
        Transactions: amounts larger in magnitude are ``amount_out_of_bounds``.
    """

    timestamp_format: str | None = None
    timezone: str = "UTC"
    extracted_at: pandas.Timestamp | None = None
    return_prefix: str | None = None
    max_abs_amount: float = 1e9

    def __post_init__(self):
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"unknown time zone {self.timezone!r}: use an IANA name such as 'Europe/Berlin'") from None
        if self.extracted_at is not None:
            stamp = pandas.Timestamp(self.extracted_at)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            object.__setattr__(self, "extracted_at", stamp)
        if self.return_prefix == "":
            raise ValueError("return_prefix must not be empty (it would mark every line as a return)")


def validate_partition(raw, table: str, rules: ParseRules):
    """Type one partition of raw table `table` and give each row its first failing rule.

    Parameters
    ----------
    raw : pandas.DataFrame or cudf.DataFrame, shape (n, m)
        Canonical columns of `table`: all required ones, any optional ones (absent ones are
        filled with nulls). Customers may carry extra attribute columns. Values are text
        (CSV read as strings, nulls for empty cells) or typed (Parquet: datetimes with or
        without a time zone, numbers, bools, text), with nulls anywhere.
    table : str
        A key of `engine.contract.TABLES`.
    rules : ParseRules

    Returns
    -------
    DataFrame, shape (n, len(TYPED_COLUMNS[table]) + extras + 1)
        A new frame of the same kind, with `raw`'s index and row order: the columns of
        ``TYPED_COLUMNS[table]`` in that order, then (customers only) the extra attribute
        columns, unchanged except ``consent_<channel>`` flags (nullable booleans: null where
        blank), then ``reason`` (text: null when the row is valid, else the first failing code
        of ``TABLE_REASONS[table]``). Other tables' non-canonical columns are dropped.
        Suppressions' ``reason`` is typed as ``SUPPRESSION_REASON``. Contact channels and
        suppression reasons and channels are stripped and lower-cased; a blank suppression
        channel is null (every channel). Typed values of a rejected row are whatever could be
        read (possibly null; flags False); they are not meant to be used.

    Raises
    ------
    ValueError
        `table` is not a known table.
    InputDataError
        A required column is missing.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    missing = [column for column in TABLES[table].required if column not in raw.columns]
    if missing:
        raise InputDataError(f"table {table!r} lacks required column(s): {', '.join(missing)}")

    failures: dict[str, object] = {}  # reason -> boolean Series
    typed: dict[str, object] = {}

    customer_id = _integer_like_text(raw["customer_id"])
    typed["customer_id"] = customer_id
    failures["blank_customer_id"] = customer_id.fillna("") == ""

    if table in ("transactions", "events", "contacts") or (table == "suppressions" and "ts" in raw.columns):
        ts = _parse_timestamps(raw["ts"], rules)
        typed["ts"] = ts
        # A suppression may say nothing of when it was recorded; what it says must be a time.
        failures["bad_timestamp"] = ts.isna() & ~_blank(raw["ts"]) if table == "suppressions" else ts.isna()
        if rules.extracted_at is not None:
            failures["future_timestamp"] = _filled(ts > rules.extracted_at)

    if table == "transactions":
        _transactions(raw, rules, typed, failures)
    elif table == "events":
        event_type = _text(raw["event_type"])
        typed["event_type"] = event_type
        typed["channel"] = _optional_text(raw, "channel")
        typed["category"] = _optional_text(raw, "category")
        failures["unknown_event_type"] = ~_filled(event_type.isin(list(EVENT_TYPES)))
    elif table == "customers":
        typed["signup_ts"] = (
            _parse_timestamps(raw["signup_ts"], rules) if "signup_ts" in raw.columns else _nulls(raw, _UTC_TS)
        )
        typed["region"] = _optional_text(raw, "region")
    elif table == "identities":
        typed["id_type"] = _text(raw["id_type"])
        typed["id_value"] = _text(raw["id_value"])
    elif table == "outcomes":
        typed["campaign"] = _text(raw["campaign"])
        treated, treated_bad = _flag(raw["treated"])
        converted, converted_bad = _flag(raw["converted"])
        typed["treated"] = treated
        typed["converted"] = converted
        failures["bad_flag"] = treated_bad | converted_bad
    elif table == "contacts":
        channel = _word(raw["channel"])
        typed["channel"] = channel
        typed["campaign"] = _optional_text(raw, "campaign")
        failures["blank_channel"] = channel.isna()
    elif table == "suppressions":
        if "ts" not in raw.columns:
            typed["ts"] = _nulls(raw, _UTC_TS)
        typed["channel"] = _word(raw["channel"]) if "channel" in raw.columns else _nulls(raw, _TEXT)
        reason = _word(raw["reason"])
        typed[SUPPRESSION_REASON] = reason
        failures["blank_reason"] = reason.isna()

    columns = {name: typed[name] for name in TYPED_COLUMNS[table]}
    if table == "customers":
        unreadable_consent = None
        for name in raw.columns:
            if name.startswith(CONSENT_PREFIX):
                columns[name], unreadable = _consent(raw[name])
                unreadable_consent = unreadable if unreadable_consent is None else unreadable_consent | unreadable
            elif name not in columns and name != "reason":
                columns[name] = raw[name]
        if unreadable_consent is not None:
            failures["bad_consent"] = unreadable_consent
    columns["reason"] = _first_reason(raw, failures, TABLE_REASONS[table])
    xp = dataframe_namespace(raw)
    return xp.DataFrame(columns, index=raw.index)


def as_text(raw):
    """Every column of `raw` as text, nulls kept null: how quarantined rows keep their values.

    Parameters
    ----------
    raw : pandas.DataFrame or cudf.DataFrame

    Returns
    -------
    DataFrame
        Same index, columns and order. Text is unchanged ("12,50" stays "12,50"); numbers
        are written as Python writes them ("19.99", "17850.0"), bools as "True"/"False",
        datetimes ISO-like ("2024-06-01 10:00:00+00:00" on pandas). Nulls are nulls, never
        "None", "nan", "NaT" or "<NA>".
    """
    xp = dataframe_namespace(raw)
    return xp.DataFrame({name: _text(raw[name]) for name in raw.columns}, index=raw.index)


# -- transactions ---------------------------------------------------------------------------


def _transactions(raw, rules, typed, failures):
    if "amount" in raw.columns:
        amount, amount_ok = _number(raw["amount"])
        failures["non_numeric_amount"] = ~amount_ok
        failures["amount_out_of_bounds"] = _filled(amount.abs() > rules.max_abs_amount)
    else:
        # A counts-only source: every amount is unknown, which is no fault of the row.
        amount = _nulls(raw, "float64")
    typed["amount"] = amount

    order_id = _integer_like_text(raw["order_id"]) if "order_id" in raw.columns else _nulls(raw, _TEXT)
    typed["order_id"] = order_id
    if "quantity" in raw.columns:
        quantity, quantity_ok = _number(raw["quantity"])
        failures["non_numeric_quantity"] = ~quantity_ok
    else:
        quantity = _nulls(raw, "float64")
    typed["quantity"] = quantity

    is_return = _filled(quantity < 0)
    if rules.return_prefix is not None:
        is_return = is_return | order_id.fillna("").str.startswith(rules.return_prefix)
    typed["is_return"] = is_return.astype("bool")
    failures["negative_amount"] = _filled(amount < 0) & ~is_return

    typed["category"] = _optional_text(raw, "category")
    typed["channel"] = _optional_text(raw, "channel")
    if "discount" in raw.columns:
        typed["discount"] = _number(raw["discount"])[0]  # optional: non-numeric is just null
    else:
        typed["discount"] = _nulls(raw, "float64")


# -- helpers --------------------------------------------------------------------------------


def _first_reason(raw, failures, order):
    """The first failing code per row, or null.

    Rules are numbered in arrays and the codes looked up once: masking a text column per rule
    copied the column each time.
    """
    number = None
    # Walk the rules backwards so that an earlier rule overwrites a later one; 0: none failed.
    for position, code in reversed(list(enumerate(order, start=1))):
        if code in failures:
            failed = to_array(failures[code], dtype=bool)
            xp = array_namespace(failed)
            number = xp.where(failed, position, 0 if number is None else number)
    if number is None:
        return _nulls(raw, _TEXT)
    reason = dataframe_namespace(raw).Series([None, *order], dtype=str).take(number)
    reason.index = raw.index
    return reason


def _nulls(like, dtype):
    """An all-null column of `dtype` on `like`'s index."""
    xp = dataframe_namespace(like)
    return xp.Series(None, index=like.index, dtype=str if dtype == _TEXT else dtype)


def _filled(mask):
    """A boolean mask with nulls read as False (cuDF propagates nulls through comparisons)."""
    return mask.fillna(False).astype("bool")


def _text(series):
    """`series` as text, nulls kept null, whatever its dtype.

    ``astype(str)`` writes nulls as "None"/"nan"/"NaT"/"<NA>" on pandas 2 and cuDF, so they
    are put back from the input's own null mask. A pandas string dtype keeps them null (pandas
    3's default "str" always), and putting them back would cost a copy of an Arrow column per
    call (a quarter of validating 1.5M event rows went to these copies).
    """
    text = series.astype(str)
    if isinstance(text.dtype, pandas.StringDtype):
        return text
    return text.where(series.notna())


def _optional_text(raw, column):
    return _text(raw[column]) if column in raw.columns else _nulls(raw, _TEXT)


def _blank(series):
    """True where a value is null or only blanks."""
    return _text(series).str.strip().fillna("") == ""


def _word(series):
    """Free-text codes ("Email ", "SMS") stripped and lower-cased; blank ones null."""
    word = _text(series).str.strip().str.lower()
    return word.where(word.fillna("") != "")


def _integer_like_text(series):
    """Identifier text: stripped; integers written as floats (17850.0, "17850.0") as integers."""
    if series.dtype.kind == "f":
        integral = _filled(series.notna() & (series == series.round()) & (series.abs() < _EXACT_INT_LIMIT))
        digits = series.where(integral, 0).astype("int64").astype(str)
        text = digits.where(integral, _text(series))
    else:
        text = _text(series)
    text = text.str.strip()
    # fillna first: str.contains would give nulls (cuDF has no na= to fill them).
    integral_float = text.fillna("").str.contains(_INTEGRAL_FLOAT, regex=True)
    if not bool(integral_float.any()):  # the usual case: skip a regex pass over every row
        return text
    return text.where(~integral_float, text.str.replace(_FLOAT_SUFFIX, "", regex=True))


def _number(series):
    """(float64 values, ok mask): ok where the value is a finite plain number.

    Text is parsed as a plain decimal or scientific number after stripping blanks; anything
    else ("N/A", "12,50", "$19.99") is not guessed at and becomes null.
    """
    xp = dataframe_namespace(series)
    if series.dtype.kind in "iuf":
        values = series.astype("float64")
    else:
        values = xp.to_numeric(_text(series).str.strip(), errors="coerce").astype("float64")
    ok = _filled(values.abs() < math.inf)  # null, NaN and +-inf all fail
    return values.where(ok), ok


def _flag(series):
    """(bool values, bad mask) of a yes/no column."""
    if series.dtype.kind == "b":
        missing = series.isna()  # a nullable bool column's nulls are not yes/no answers
        return series.fillna(False).astype("bool"), missing
    word = _integer_like_text(series).str.lower()
    true = _filled(word.isin(list(_TRUE)))
    false = _filled(word.isin(list(_FALSE)))
    return true, ~(true | false)


def _consent(series):
    """(nullable bool values, unreadable mask) of a consent flag: yes/no words as `_flag`
    reads them; a blank value is unknown (null), anything else unreadable (and null)."""
    value, unknown = _flag(series)
    unreadable = unknown & ~_blank(series)
    nullable = "boolean" if dataframe_namespace(series).__name__ == "pandas" else "bool"
    return value.astype(nullable).where(~unknown), unreadable


def _parse_timestamps(series, rules):
    """Timestamps as datetime64[us, UTC]; null where missing, unparseable or not a real time."""
    if series.dtype.kind == "M":
        if series.dt.tz is None:
            return _localize(series.astype("datetime64[us]"), rules.timezone)
        return series.dt.tz_convert("UTC").astype(_UTC_TS)
    return _parse_text_timestamps(_text(series).str.strip(), rules)


def _localize(wall, timezone):
    """Naive local wall-clock times in `timezone` -> UTC; nonexistent/ambiguous -> NaT."""
    if timezone == "UTC":
        return wall.dt.tz_localize("UTC").astype(_UTC_TS)
    local = wall.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC").astype(_UTC_TS)


def _to_datetime(text, fmt, **options):
    """Text to times by strptime format ``fmt`` (None: any ISO 8601 form); null where the text
    is no such time. cuDF cannot coerce bad values: the backend layer parses there."""
    xp = dataframe_namespace(text)
    if xp.__name__ != "pandas":
        return device_to_datetime(text, fmt, _to_datetime, **options)
    fmt = "ISO8601" if fmt is None else fmt
    fixed = parse_fixed_shape(text, fmt) if not options else None
    if fixed is None:
        # cache=False: pandas' cache of unique values costs more than it saves on
        # timestamps, which are mostly distinct (5x slower on a million event times).
        return xp.to_datetime(text, format=fmt, errors="coerce", cache=False, **options)
    values, decided = fixed
    if not decided.all():
        rest = xp.to_datetime(text[~decided], format=fmt, errors="coerce", cache=False)
        values[~decided] = rest.to_numpy(dtype="datetime64[us]")
    return xp.Series(values, index=text.index)


def _parse_text_timestamps(text, rules):
    fmt = rules.timestamp_format
    if fmt is not None and ("%Z" in fmt or ("%z" in fmt and not fmt.rstrip().endswith("%z"))):
        # An offset or zone name in the middle of the format: let the parser place it.
        return _to_datetime(text, fmt, utc=True).astype(_UTC_TS)
    offset_required = fmt is not None and fmt.rstrip().endswith("%z")
    if fmt is not None and not offset_required:
        # A declared format without an offset: every value is local wall-clock time.
        return _localize(_to_datetime(text, fmt).astype("datetime64[us]"), rules.timezone)

    # ISO 8601 (or a format ending in %z): values may carry their own offset, which wins;
    # values without one are local time in rules.timezone. The offset is taken off the text
    # and applied by arithmetic, so mixed offsets in one column need no special parser mode.
    wall_format = fmt.rstrip()[:-2].rstrip() if offset_required else None
    filled = text.fillna("")
    is_z = filled.str.endswith("Z")
    has_offset = is_z | filled.str.contains(_OFFSET, regex=True)
    if not offset_required and not bool(has_offset.any()):
        return _localize(_to_datetime(text, wall_format).astype("datetime64[us]"), rules.timezone)

    wall_text = text.str.replace(_OFFSET, "", regex=True).str.replace("Z$", "", regex=True).str.strip()
    wall = _to_datetime(wall_text, wall_format).astype("datetime64[us]")
    parts = filled.str.extract(_OFFSET_PARTS)
    xp = dataframe_namespace(text)
    hours = xp.to_numeric(parts[1], errors="coerce")
    minutes = xp.to_numeric(parts[2], errors="coerce")
    offset_ok = is_z | _filled((hours < 24) & (minutes < 60))
    total = hours * 60 + minutes
    offset_minutes = total.where(~_filled(parts[0] == "-"), -total)
    offset_minutes = offset_minutes.where(offset_ok & ~is_z, 0).fillna(0).astype("int64")
    offset = (offset_minutes * 60).astype("timedelta64[s]")
    from_offset = (wall - offset).dt.tz_localize("UTC").astype(_UTC_TS).where(offset_ok)
    if offset_required:
        return from_offset.where(has_offset)
    return _localize(wall, rules.timezone).where(~has_offset, from_offset)
