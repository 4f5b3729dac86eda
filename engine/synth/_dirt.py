"""Realistic faults injected into raw tables, each one recorded for truth.

With a dirt rate above zero, ``ts`` and ``amount`` are written as text (as a messy export
would have them) so that malformed values can exist at all. Each dirty row carries one
fault; exact duplicates are extra copies inserted right after their original, and truth
points at the copy.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S"

# Faults per table, in the order their codes are drawn.
FAULTS = {
    "transactions": (
        "duplicate", "bad_timestamp", "future_timestamp", "negative_amount",
        "non_numeric_amount", "blank_customer_id",
    ),
    "events": ("duplicate", "bad_timestamp", "future_timestamp", "unknown_event_type", "blank_customer_id"),
    "customers": ("duplicate", "blank_customer_id"),
    "identities": ("duplicate", "junk_identifier"),
}  # fmt: skip

_BAD_TIMESTAMPS = ("", "2024-13-45 25:61:00", "not a date", "0000-00-00 00:00:00", "2024-02-30 10:00:00")
_NON_NUMERIC_AMOUNTS = ("N/A", "", "12,50", "$19.99", "#VALUE!")
_UNKNOWN_EVENT_TYPES = ("pageview", "VIEW ", "app_open", "click??", "purchase_intent")
_BLANK_IDS = ("", "   ", None)
# Placeholder identifiers that real CRMs are full of: shared by many unrelated customers.
_JUNK_IDENTIFIERS = {
    "email": ("test@test.com", "none@none.com", "unknown", ""),
    "phone": ("0000000000", "000-000-0000", "unknown"),
    "device_id": ("00000000000000000000000000000000", "unknown", "null"),
}
_SECONDS_PER_DAY = 86_400
MICROS_PER_DAY = _SECONDS_PER_DAY * 10**6


def _cycled(values, count):
    return pa.array([values[i % len(values)] for i in range(count)], type=pa.string())


def _replace(table, column, rows, replacement):
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows] = True
    values = table.column(column).combine_chunks()
    replaced = pc.replace_with_mask(values, pa.array(mask), replacement.cast(values.type))
    return table.set_column(table.schema.get_field_index(column), column, replaced)


def as_text(table, ts_columns=("ts",), number_columns=("amount",)):
    """The messy-export schema: timestamps and amounts as strings."""
    for column in ts_columns:
        if column in table.column_names:
            # Casting whole seconds to text is ~10x faster than strftime, whose %S adds
            # microseconds; it yields exactly TIMESTAMP_TEXT_FORMAT.
            seconds = table.column(column).cast(pa.timestamp("s", tz="UTC")).cast(pa.timestamp("s"))
            text = seconds.cast(pa.string())
            table = table.set_column(table.schema.get_field_index(column), column, text)
    for column in number_columns:
        if column in table.column_names:
            text = table.column(column).cast(pa.string())
            table = table.set_column(table.schema.get_field_index(column), column, text)
    return table


def inject(table, name, rng, rate, *, window_end_micros):
    """Inject faults into ``table`` at ``rate`` per row.

    Future timestamps land between a day and ten years after ``window_end_micros`` (a device
    clock set far ahead), so they are detectable against the extraction date.

    Returns
    -------
    table : pyarrow.Table
        With duplicates inserted and, for transactions and events, ``ts`` and ``amount``
        as text.
    dirty_row : numpy.ndarray of int64
        Positions of the faulty rows in the returned table.
    fault : numpy.ndarray of str
        The fault of each dirty row.
    """
    faults = FAULTS[name]
    n = table.num_rows
    rows = np.sort(rng.choice(n, size=rng.binomial(n, rate), replace=False))
    fault = np.array(faults)[rng.integers(len(faults), size=rows.size)]

    if name == "transactions":
        # A negated return line would still be a return; its fault becomes a non-numeric amount.
        amount = table.column("amount").to_numpy()
        fault[(fault == "negative_amount") & (amount[rows] <= 0)] = "non_numeric_amount"
        negative = rows[fault == "negative_amount"]
        amount = amount.copy()
        amount[negative] = -amount[negative]
        table = table.set_column(table.schema.get_field_index("amount"), "amount", pa.array(amount))
    if name in ("transactions", "events"):
        future = rows[fault == "future_timestamp"]
        ts = table.column("ts").cast(pa.int64()).to_numpy().copy()
        ts[future] = window_end_micros + (rng.uniform(1, 3650, future.size) * _SECONDS_PER_DAY).astype(np.int64) * 10**6
        ts_type = table.schema.field("ts").type
        table = table.set_column(table.schema.get_field_index("ts"), "ts", pa.array(ts).cast(ts_type))
        table = as_text(table)
        bad = rows[fault == "bad_timestamp"]
        table = _replace(table, "ts", bad, _cycled(_BAD_TIMESTAMPS, bad.size))
    if name == "transactions":
        bad = rows[fault == "non_numeric_amount"]
        table = _replace(table, "amount", bad, _cycled(_NON_NUMERIC_AMOUNTS, bad.size))
    if name == "events":
        bad = rows[fault == "unknown_event_type"]
        table = _replace(table, "event_type", bad, _cycled(_UNKNOWN_EVENT_TYPES, bad.size))
    if "blank_customer_id" in faults:
        bad = rows[fault == "blank_customer_id"]
        table = _replace(table, "customer_id", bad, _cycled(_BLANK_IDS, bad.size))
    if name == "identities":
        bad = rows[fault == "junk_identifier"]
        id_type = table.column("id_type").to_numpy(zero_copy_only=False)[bad]
        junk = [
            _JUNK_IDENTIFIERS[kind][i % len(_JUNK_IDENTIFIERS[kind])] for i, kind in enumerate(id_type)
        ]
        table = _replace(table, "id_value", bad, pa.array(junk, type=pa.string()))

    duplicated = np.zeros(n, dtype=np.int64)
    duplicated[rows[fault == "duplicate"]] = 1
    table = table.take(np.repeat(np.arange(n), 1 + duplicated))
    # Row i moves down by the copies inserted before it; a copy sits right after its original.
    shift = np.cumsum(duplicated) - duplicated
    dirty_row = rows + shift[rows] + duplicated[rows]
    return table, dirty_row, fault
