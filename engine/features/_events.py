"""Each customer's events summed up: all the event features and active weeks read of them.

A partition's events before the as-of instant T come down to one row per customer:

- ``count_<type>`` (int32) and ``last_<type>`` (int64 microseconds, ``NONE`` where there is
  none) for each event type, and ``last_event``, the latest event of any type, known or not;
- ``days_00`` .. ``days_11`` (uint32, low bit first): bit i of these 384 is set when the
  customer had an event on day i counted back from T, ``(T - 1 - ts) // DAY_US``, for the
  ``ACTIVE_WEEKS`` weeks active weeks look back over.

Counts, maxima and sets: the summary of two sets of rows is the sum, maximum and union of
theirs, exact in any order, and moving T forward by whole days only shifts the day bits.
So a summary as of T, aged to a later T' and combined with the summary of the rows that came
since, is the summary of every row before T', bit for bit, and the features computed from it
are those a full read computes. The feature stage keeps the summaries beside its output for
the next as-of to start from (``_pipeline``).
"""

from __future__ import annotations

from ..backend import array_namespace, dataframe_namespace, to_array
from ..contract import EVENT_TYPES
from ._definitions import ACTIVE_WEEKS, DAY_US
from ._runs import KEY, NAN, codes_in, customers_of, last_rows, ratio

__all__ = ["NONE", "age_summary", "combine_summaries", "event_columns", "event_weeks", "summarise_events"]

# "No such event" in a last_<type> column: below every timestamp, so maxima ignore it.
NONE = -(2**63)
_DAYS = 7 * ACTIVE_WEEKS
_WORDS = 12  # 32-bit words holding the day bits (384 >= _DAYS)
_DAY_COLUMNS = tuple(f"days_{word:02d}" for word in range(_WORDS))
_COUNTS = tuple(f"count_{event_type}" for event_type in EVENT_TYPES)
_LASTS = tuple(f"last_{event_type}" for event_type in EVENT_TYPES)


def _pack(days, xp):
    """(customers, 384) bools -> (customers, 12) uint32 words, low bit first (the words'
    bytes are little-endian on every host and GPU we run on)."""
    return xp.packbits(days.ravel(), bitorder="little").view("uint32").reshape(len(days), _WORDS)


def _unpack(words, xp):
    """(customers, 12) uint32 words -> (customers, 384) bools."""
    bits = xp.unpackbits(xp.ascontiguousarray(words).view("uint8").ravel(), bitorder="little")
    return bits.reshape(len(words), _WORDS * 32).astype(bool)


def _words(summary, xp):
    return xp.stack([to_array(summary[column], "uint32") for column in _DAY_COLUMNS], axis=1)


def _frame(namespace, keys, counts, lasts, last_event, words):
    frame = namespace.DataFrame({KEY: keys})
    for j, (count, last) in enumerate(zip(_COUNTS, _LASTS)):
        frame[count] = counts[:, j].astype("int32")
        frame[last] = lasts[:, j]
    frame["last_event"] = last_event
    for word, column in enumerate(_DAY_COLUMNS):
        frame[column] = words[:, word]
    return frame


def summarise_events(events, as_of_us: int):
    """The summary (module docstring) of ``events`` (``customer_key``, ``ts`` as int64
    microseconds, ``event_type``), rows before ``as_of_us`` grouped by customer and sorted by
    time within each, as the store holds them. One row per customer, sorted by key."""
    namespace, xp = dataframe_namespace(events), array_namespace(events)
    keys, (customer,) = customers_of(namespace, [events], xp)
    n, k = len(keys), len(EVENT_TYPES)
    ts = to_array(events["ts"], "int64")
    codes = codes_in(events["event_type"], EVENT_TYPES, xp)
    known = codes >= 0
    counts = xp.bincount(customer[known] * k + codes[known], minlength=n * k).reshape(n, k)
    lasts = xp.full((n, k), NONE, dtype="int64")
    for j in range(k):
        mine = codes == j
        of_type, at = customer[mine], ts[mine]
        final = last_rows(of_type, xp)  # the latest of a customer's rows: they are in time order
        lasts[of_type[final], j] = at[final]
    last_event = xp.full(n, NONE, dtype="int64")
    final = last_rows(customer, xp)
    last_event[customer[final]] = ts[final]
    day = (as_of_us - 1 - ts) // DAY_US
    recent = day < _DAYS
    days = xp.zeros(n * _WORDS * 32, dtype=bool)
    days[customer[recent] * (_WORDS * 32) + day[recent]] = True
    return _frame(namespace, keys, counts, lasts, last_event, _pack(days.reshape(n, _WORDS * 32), xp))


def age_summary(summary, days: int):
    """``summary`` as of ``days`` whole days later (no rows added): the day bits move back."""
    if days == 0:
        return summary
    xp = array_namespace(summary)
    bits = _unpack(_words(summary, xp), xp)
    moved = xp.zeros_like(bits)
    if days < _DAYS:
        moved[:, days:_DAYS] = bits[:, : _DAYS - days]
    aged = summary.copy()
    packed = _pack(moved, xp)
    for word, column in enumerate(_DAY_COLUMNS):
        aged[column] = packed[:, word]
    return aged


def combine_summaries(first, second):
    """The summary of the rows of two summaries as of the same instant (sums, maxima, unions)."""
    namespace, xp = dataframe_namespace(first), array_namespace(first)
    keys, (a, b) = customers_of(namespace, [first, second], xp)
    n = len(keys)
    counts = xp.zeros((n, len(EVENT_TYPES)), dtype="int64")
    lasts = xp.full((n, len(EVENT_TYPES)), NONE, dtype="int64")
    last_event = xp.full(n, NONE, dtype="int64")
    words = xp.zeros((n, _WORDS), dtype="uint32")
    # Each summary has one row per customer: a and b hold no position twice.
    for rows, summary in ((a, first), (b, second)):
        counts[rows] += xp.stack([to_array(summary[c], "int64") for c in _COUNTS], axis=1)
        lasts[rows] = xp.maximum(lasts[rows], xp.stack([to_array(summary[c], "int64") for c in _LASTS], axis=1))
        last_event[rows] = xp.maximum(last_event[rows], to_array(summary["last_event"], "int64"))
        words[rows] |= _words(summary, xp)
    return _frame(namespace, keys, counts, lasts, last_event, words)


def event_columns(summary, customer, n, frequency, as_of_us: int, xp, out) -> None:
    """The ``events`` group's columns into ``out``, for ``n`` customers of whom those of
    ``summary`` sit at positions ``customer``: counts and days since each event type, cart to
    purchase, email engagement and days since the last event."""
    end = as_of_us / DAY_US
    counts = xp.zeros((n, len(EVENT_TYPES)), dtype="int64")
    for j, event_type in enumerate(EVENT_TYPES):
        counts[customer, j] = to_array(summary[_COUNTS[j]], "int64")
        at = to_array(summary[_LASTS[j]], "int64")
        seen = at != NONE
        last = xp.full(n, NAN)
        last[customer[seen]] = end - at[seen] / DAY_US
        out[f"{event_type}_count"] = counts[:, j]
        out[f"days_since_{event_type}"] = last
    index = {event_type: j for j, event_type in enumerate(EVENT_TYPES)}
    out["cart_to_purchase"] = ratio(frequency, counts[:, index["add_to_cart"]], xp)
    out["email_engagement_rate"] = ratio(counts[:, index["email_click"]], counts[:, index["email_open"]], xp)
    at = to_array(summary["last_event"], "int64")
    since = xp.full(n, NAN)
    since[customer] = end - at / DAY_US
    out["days_since_last_event"] = since


def event_weeks(summary, customer, n, xp):
    """(n, ACTIVE_WEEKS) bools: the weeks counted back from as-of with an event, per customer."""
    weeks = xp.zeros((n, ACTIVE_WEEKS), dtype=bool)
    days = _unpack(_words(summary, xp), xp)[:, :_DAYS].reshape(len(customer), ACTIVE_WEEKS, 7)
    # Seven ORs of (customers, weeks) slices: any() along an axis of 7 took 20 ms a part.
    active = days[:, :, 0].copy()
    for day in range(1, 7):
        active |= days[:, :, day]
    weeks[customer] = active
    return weeks

