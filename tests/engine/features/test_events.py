"""Event summaries: aged and combined, they are the summary of every row, bit for bit."""

import numpy as np
import pandas as pd
import pytest

from engine.contract import EVENT_TYPES
from engine.features._definitions import DAY_US
from engine.features._events import NONE, age_summary, combine_summaries, summarise_events

AS_OF_US = int(pd.Timestamp("2025-06-01", tz="UTC").value // 1000)


def _events(seed, customers=300, rows=6000, before_us=AS_OF_US, span_days=500):
    """Random events before ``before_us``, some of a type no feature counts, in store order."""
    rng = np.random.default_rng(seed)
    keys = np.array([f"{i:017x}" for i in rng.choice(10 * customers, customers, replace=False)])
    ts = before_us - rng.integers(1, span_days * DAY_US, rows)
    kinds = np.array([*EVENT_TYPES, "wishlist"])[rng.integers(0, len(EVENT_TYPES) + 1, rows)]
    frame = pd.DataFrame({"customer_key": keys[rng.integers(0, customers, rows)], "ts": ts, "event_type": kinds})
    return frame.sort_values(["customer_key", "ts"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("days", [1, 7, 30, 400])
def test_an_aged_summary_with_the_new_rows_is_the_summary_of_every_row(days):
    later = AS_OF_US + days * DAY_US
    every = _events(seed=days, before_us=later)
    old, new = every[every["ts"] < AS_OF_US], every[every["ts"] >= AS_OF_US]
    assert len(old) and len(new)
    pieced = combine_summaries(age_summary(summarise_events(old, AS_OF_US), days), summarise_events(new, later))
    pd.testing.assert_frame_equal(pieced, summarise_events(every, later))


def test_a_summary_counts_known_types_and_keeps_the_latest_of_each():
    events = _events(seed=1)
    summary = summarise_events(events, AS_OF_US).set_index("customer_key")
    for key, rows in events.groupby("customer_key"):
        for event_type in EVENT_TYPES:
            mine = rows[rows["event_type"] == event_type]
            assert summary.loc[key, f"count_{event_type}"] == len(mine)
            assert summary.loc[key, f"last_{event_type}"] == (mine["ts"].max() if len(mine) else NONE)
        assert summary.loc[key, "last_event"] == rows["ts"].max()  # the unknown type counts here
        days = {int((AS_OF_US - 1 - t) // DAY_US) for t in rows["ts"]}
        words = summary.loc[key, [f"days_{w:02d}" for w in range(12)]].to_numpy(dtype=np.uint64)
        bits = {32 * w + b for w in range(12) for b in range(32) if (int(words[w]) >> b) & 1}
        assert bits == {day for day in days if day < 364}

