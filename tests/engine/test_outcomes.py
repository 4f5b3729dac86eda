"""Next-period outcomes on a hand-made two-partition store."""

import json
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.exceptions import InputDataError, UsageError
from engine.outcomes import align_outcomes, next_period_outcomes, outcome_window, sample_key_bound

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")
SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("amount", pa.float64()),
        ("order_id", pa.large_string()),
        ("is_return", pa.bool_()),
        ("customer_key", pa.large_string()),
    ]
)

# (customer, ts, amount, order_id, is_return), sorted by (customer, ts) within each part.
PARTS = [
    [
        # a: before as-of (ignored); order o1 of two lines (30); a return of 10 stored with a
        # positive amount; order o2 (5); a line exactly at as-of + 10 days (ignored).
        ("a", "2025-02-28 23:59:59", 500.0, "o0", False),
        ("a", "2025-03-01 00:00:00", 20.0, "o1", False),
        ("a", "2025-03-01 00:00:00", 10.0, "o1", False),
        ("a", "2025-03-03 12:00:00", 10.0, "r1", True),
        ("a", "2025-03-05 08:00:00", 5.0, "o2", False),
        ("a", "2025-03-11 00:00:00", 999.0, "o3", False),
        # b: only a return in the window: present, no order, negative spend.
        ("b", "2025-03-04 00:00:00", -7.5, None, True),
        # c: only before as-of: absent.
        ("c", "2025-01-15 00:00:00", 40.0, "o4", False),
    ],
    [
        # d: two lines without order id at one time (one order), one at another time, and an
        # order whose lines net to zero (not counted).
        ("d", "2025-03-02 10:00:00", 4.0, None, False),
        ("d", "2025-03-02 10:00:00", 6.0, None, False),
        ("d", "2025-03-09 10:00:00", 3.0, None, False),
        ("d", "2025-03-10 23:59:59", 0.0, "o5", False),
        # e: only after the window: absent.
        ("e", "2025-03-12 00:00:00", 80.0, "o6", False),
    ],
]


def _write_store(root, parts, extracted_at="2025-04-01T00:00:00+00:00"):
    store = root / "store"
    (store / "transactions").mkdir(parents=True)
    stamps = []
    for number, rows in enumerate(parts):
        columns = list(zip(*rows)) if rows else [[] for _ in SCHEMA]
        ts = [pd.Timestamp(t, tz="UTC") for t in columns[1]]
        stamps += ts
        table = pa.table(
            {
                "ts": ts,
                "amount": columns[2],
                "order_id": columns[3],
                "is_return": columns[4],
                "customer_key": columns[0],
            },
            schema=SCHEMA,
        )
        pq.write_table(table, store / "transactions" / f"part-{number:05d}.parquet")
    meta = {
        "partitions": len(parts),
        "key": "customer_key",
        "extracted_at": extracted_at,
        "tables": {"transactions": {"min_ts": str(min(stamps)), "max_ts": str(max(stamps))}},
    }
    (store / "_store.json").write_text(json.dumps(meta))
    return store


@pytest.fixture
def store(tmp_path):
    return _write_store(tmp_path, PARTS)


def test_counts_orders_and_nets_returns_inside_the_window_only(store):
    outcomes = next_period_outcomes(store, AS_OF, 10)
    assert outcomes["customer_key"].tolist() == ["a", "b", "d"]
    assert outcomes["orders_next"].tolist() == [2, 0, 2]
    assert outcomes["spend_next"].tolist() == pytest.approx([20 + 10 - 10 + 5, -7.5, 4 + 6 + 3])
    assert str(outcomes["orders_next"].dtype) == "int64" and str(outcomes["spend_next"].dtype) == "float64"


def test_a_key_bound_keeps_the_customers_below_it(store):
    # Keys here are single letters: "b" keeps only "a"; "c" keeps "a" and "b".
    assert next_period_outcomes(store, AS_OF, 10, key_below="b")["customer_key"].tolist() == ["a"]
    assert next_period_outcomes(store, AS_OF, 10, key_below="c")["customer_key"].tolist() == ["a", "b"]


def test_a_key_bound_keeps_its_fraction_of_real_keys():
    from engine.ingest._pseudonym import pseudonymise

    keys, _ = pseudonymise([f"customer-{i}" for i in range(20_000)], b"a-test-key-of-some-length", 1)
    assert sample_key_bound(0.0) == "k" + "0" * 16 and sample_key_bound(1.0) == "k" + "f" * 16
    for fraction in (0.05, 0.5):
        kept = sum(key < sample_key_bound(fraction) for key in keys) / len(keys)
        assert abs(kept - fraction) < 0.01


def test_as_of_may_be_a_naive_datetime_or_a_date(store):
    expected = next_period_outcomes(store, AS_OF, 10)
    for as_of in (date(2025, 3, 1), pd.Timestamp("2025-03-01").to_pydatetime()):
        pd.testing.assert_frame_equal(next_period_outcomes(store, as_of, 10), expected)


def test_a_longer_window_takes_in_the_later_rows(store):
    outcomes = next_period_outcomes(store, AS_OF, 12).set_index("customer_key")
    assert outcomes.loc["a", "spend_next"] == pytest.approx(25 + 999) and outcomes.loc["a", "orders_next"] == 3
    assert outcomes.loc["e", "orders_next"] == 1 and "c" not in outcomes.index


def test_window_coverage_follows_the_last_day_and_the_extraction(tmp_path):
    store = _write_store(tmp_path / "one", PARTS)
    # The last row is on 2025-03-12: the store holds up to the next midnight.
    assert outcome_window(store, AS_OF, 12).covered
    window = outcome_window(store, AS_OF, 13)
    assert not window.covered and window.data_end == pd.Timestamp("2025-03-13", tz="UTC")
    cut = _write_store(tmp_path / "two", PARTS, extracted_at="2025-03-10T00:00:00+00:00")
    assert outcome_window(cut, AS_OF, 9).covered and not outcome_window(cut, AS_OF, 10).covered


def test_a_window_past_the_data_is_refused_not_zero(store):
    with pytest.raises(InputDataError, match="no outcomes"):
        next_period_outcomes(store, AS_OF, 30)
    with pytest.raises(UsageError, match="at least 1 day"):
        outcome_window(store, AS_OF, 0)


def test_not_a_store_is_an_input_error(tmp_path):
    with pytest.raises(InputDataError, match="not a segscale store"):
        next_period_outcomes(tmp_path, AS_OF, 10)


def test_align_fills_customers_without_rows_with_zeros(store):
    aligned = align_outcomes(["d", "c", "a"], next_period_outcomes(store, AS_OF, 10))
    assert aligned["customer_key"].tolist() == ["d", "c", "a"]
    assert aligned["orders_next"].tolist() == [2, 0, 2] and aligned["spend_next"].tolist() == pytest.approx([13, 0, 25])


def test_without_amounts_every_order_counts_and_spend_is_unknown(tmp_path):
    """A counts-only store (amounts all null): an order of unknown amount is still an order,
    and its spend stays unknown through align_outcomes, where a customer without rows gets 0."""
    unknown = [[(key, ts, None, order, is_return) for key, ts, _, order, is_return in part] for part in PARTS]
    outcomes = next_period_outcomes(_write_store(tmp_path, unknown), AS_OF, 10)
    assert outcomes["customer_key"].tolist() == ["a", "b", "d"]
    # d's order o5 netted to zero with amounts; its amount is unknown now, so it counts.
    assert outcomes["orders_next"].tolist() == [2, 0, 3]
    assert outcomes["spend_next"].isna().all()
    aligned = align_outcomes(["d", "c"], outcomes)
    assert aligned["orders_next"].tolist() == [3, 0] and pd.isna(aligned["spend_next"][0]) and aligned["spend_next"][1] == 0
