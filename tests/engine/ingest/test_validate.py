import dataclasses
import pickle

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.contract import EVENT_TYPES, TABLES
from engine.exceptions import InputDataError
from engine.ingest._validate import (
    REASONS,
    SUPPRESSION_REASON,
    TABLE_REASONS,
    TYPED_COLUMNS,
    ParseRules,
    as_text,
    validate_partition,
)
from engine.synth import FAULTS, WorldSpec, generate_world

EXTRACTED = pd.Timestamp("2026-01-01", tz="UTC")
RULES = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S", extracted_at=EXTRACTED)
TEXT_DTYPE = pd.Series([], dtype=str).dtype  # object on pandas 2, "str" on pandas 3


def _on(backend, frame):
    """A pandas frame moved to the backend's dataframe library."""
    return backend.df.from_pandas(frame) if backend.is_gpu else frame


def _host(frame):
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def _text_frame(backend, data, index=None):
    """A CSV-like frame: every column text, None for empty cells."""
    frame = pd.DataFrame({name: pd.Series(values, dtype=str) for name, values in data.items()})
    if index is not None:
        frame.index = index
    return _on(backend, frame)


def _reasons(frame):
    return [None if pd.isna(value) else value for value in _host(frame)["reason"]]


def _values(frame, column):
    return [None if pd.isna(value) else value for value in _host(frame)[column]]


def _utc(text):
    return pd.Timestamp(text, tz="UTC")


def _transactions(**columns):
    base = {
        "customer_id": ["1", "2", "3", "4", "5"],
        "ts": ["2024-06-01 12:00:00"] * 5,
        "amount": ["10.5", "3", "0", "7.25", "1e2"],
    }
    return {**base, **columns}


# -- reasons and rules ------------------------------------------------------------------------


def test_reason_codes_are_described_and_tables_check_known_codes():
    assert set(REASONS) == {
        "blank_customer_id", "bad_timestamp", "future_timestamp", "non_numeric_amount", "amount_out_of_bounds",
        "non_numeric_quantity", "negative_amount", "unknown_event_type", "bad_flag", "bad_consent", "blank_channel",
        "blank_reason",
    }  # fmt: skip
    assert all(isinstance(text, str) and text and "\n" not in text for text in REASONS.values())
    assert set(TABLE_REASONS) == set(TABLES) == set(TYPED_COLUMNS)
    for table, codes in TABLE_REASONS.items():
        assert set(codes) <= set(REASONS), table
        # The suppressions' reason travels under another name beside the quarantine's reason.
        typed = {"reason" if name == SUPPRESSION_REASON else name for name in TYPED_COLUMNS[table]}
        assert set(TABLES[table].columns) <= typed, table


def test_parse_rules_normalise_extracted_at_and_reject_unknown_zones():
    assert ParseRules(extracted_at=pd.Timestamp("2026-01-01")).extracted_at == EXTRACTED
    assert ParseRules(extracted_at=pd.Timestamp("2026-01-01 01:00", tz="Europe/Berlin")).extracted_at == EXTRACTED
    assert str(ParseRules(extracted_at=EXTRACTED).extracted_at.tz) == "UTC"
    with pytest.raises(ValueError, match="Mars/Olympus"):
        ParseRules(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="return_prefix"):
        ParseRules(return_prefix="")


def test_partition_functions_and_rules_pickle():
    # Dask ships them to worker processes.
    rules = pickle.loads(pickle.dumps(RULES))
    assert rules == RULES
    assert pickle.loads(pickle.dumps(validate_partition)) is validate_partition
    assert pickle.loads(pickle.dumps(as_text)) is as_text


def test_unknown_table_and_missing_required_column_fail_clearly(backend):
    raw = _text_frame(backend, {"customer_id": ["1"], "amount": ["2.5"]})
    with pytest.raises(InputDataError, match="transactions.*ts"):
        validate_partition(raw, "transactions", RULES)
    with pytest.raises(ValueError, match="unknown table 'orders'"):
        validate_partition(raw, "orders", RULES)


# -- blank_customer_id -----------------------------------------------------------------------


def test_blank_customer_ids_are_rejected_and_ids_normalised(backend):
    raw = _text_frame(backend, _transactions(customer_id=["", "   ", None, " 17850.0 ", "007"]))
    out = validate_partition(raw, "transactions", RULES)
    assert _reasons(out) == ["blank_customer_id"] * 3 + [None, None]
    assert _values(out, "customer_id")[3:] == ["17850", "007"]


def test_float_and_int_customer_ids_from_parquet_become_decimal_text(backend):
    raw = pd.DataFrame(
        {
            "customer_id": [17850.0, np.nan, 12346.0, 1.5, 0.0],  # the UCI Online Retail case
            "ts": pd.to_datetime(["2024-06-01 12:00:00"] * 5),
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
            "order_id": np.array([536365, 536366, 1, 2, 3], dtype="int64"),
        }
    )
    out = validate_partition(_on(backend, raw), "transactions", RULES)
    assert _values(out, "customer_id") == ["17850", None, "12346", "1.5", "0"]
    assert _reasons(out) == [None, "blank_customer_id", None, None, None]
    assert _values(out, "order_id") == ["536365", "536366", "1", "2", "3"]

    ints = raw.assign(customer_id=np.array([1, 22, 333, 4444, 55555], dtype="int64"))
    assert _values(validate_partition(_on(backend, ints), "transactions", RULES), "customer_id") == [
        "1", "22", "333", "4444", "55555",
    ]  # fmt: skip


# -- timestamps ------------------------------------------------------------------------------


def test_text_timestamps_parse_with_the_declared_format(backend):
    raw = _text_frame(
        backend,
        _transactions(ts=["2024-06-01 12:00:00", "", "not a date", "2024-02-30 10:00:00", "2024-06-01T12:00:00"]),
    )
    out = validate_partition(raw, "transactions", RULES)
    assert _reasons(out) == [None, "bad_timestamp", "bad_timestamp", "bad_timestamp", "bad_timestamp"]
    assert _values(out, "ts")[0] == _utc("2024-06-01 12:00:00")
    assert str(_host(out)["ts"].dtype) == "datetime64[us, UTC]"


def test_null_timestamp_is_bad(backend):
    raw = _text_frame(backend, _transactions(ts=[None, "2024-06-01 12:00:00", None, "x", "2024-06-01 12:00:00"]))
    assert _reasons(validate_partition(raw, "transactions", RULES)) == [
        "bad_timestamp", None, "bad_timestamp", "bad_timestamp", None,
    ]  # fmt: skip


def test_naive_local_times_convert_to_utc_and_dst_gaps_and_overlaps_are_bad(backend):
    rules = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S", timezone="Europe/Berlin", extracted_at=EXTRACTED)
    raw = _text_frame(
        backend,
        _transactions(
            ts=[
                "2024-06-01 12:00:00",  # CEST, UTC+2
                "2024-03-31 02:30:00",  # clocks jump 02:00 -> 03:00: does not exist
                "2024-10-27 02:30:00",  # clocks fall back 03:00 -> 02:00: happens twice
                "2024-01-15 08:00:00",  # CET, UTC+1
                "2024-03-31 03:30:00",
            ]
        ),
    )
    out = validate_partition(raw, "transactions", rules)
    assert _reasons(out) == [None, "bad_timestamp", "bad_timestamp", None, None]
    ts = _values(out, "ts")
    assert ts[0] == _utc("2024-06-01 10:00:00")
    assert ts[3] == _utc("2024-01-15 07:00:00")
    assert ts[4] == _utc("2024-03-31 01:30:00")


def test_iso_text_honours_its_own_offsets(backend):
    rules = ParseRules(timezone="Europe/Berlin", extracted_at=EXTRACTED)  # ISO 8601, no format
    raw = _text_frame(
        backend,
        _transactions(
            ts=[
                "2024-06-01T12:00:00+02:00",
                "2024-06-01T12:00:00Z",
                "2024-06-01 12:00:00-0500",
                "2024-06-01 12:00:00",  # no offset: Berlin local time
                "2024-06-01T12:00:00+25:00",  # no such offset
            ]
        ),
    )
    out = validate_partition(raw, "transactions", rules)
    assert _values(out, "ts")[:4] == [
        _utc("2024-06-01 10:00:00"), _utc("2024-06-01 12:00:00"), _utc("2024-06-01 17:00:00"), _utc("2024-06-01 10:00:00"),
    ]  # fmt: skip
    assert _reasons(out) == [None, None, None, None, "bad_timestamp"]


def test_iso_text_without_offsets_accepts_dates_and_fractions(backend):
    rules = ParseRules(extracted_at=EXTRACTED)
    raw = _text_frame(
        backend,
        _transactions(ts=["2024-06-01", "2024-06-01T12:30", "2024-06-01 12:00:00.250000", "2024-13-01", " 2024-06-02 "]),
    )
    out = validate_partition(raw, "transactions", rules)
    assert _reasons(out) == [None, None, None, "bad_timestamp", None]
    assert _values(out, "ts") == [
        _utc("2024-06-01"), _utc("2024-06-01 12:30"), _utc("2024-06-01 12:00:00.25"), None, _utc("2024-06-02"),
    ]  # fmt: skip


def test_format_ending_in_percent_z_requires_an_offset(backend):
    rules = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S%z", extracted_at=EXTRACTED)
    raw = _text_frame(
        backend,
        _transactions(
            ts=["2024-06-01 12:00:00+0200", "2024-06-01 12:00:00", "2024-06-01 12:00:00-01:30", "x+0100", "2024-06-01 12:00:00Z"]
        ),
    )
    out = validate_partition(raw, "transactions", rules)
    assert _reasons(out) == [None, "bad_timestamp", None, "bad_timestamp", None]
    assert _values(out, "ts")[2] == _utc("2024-06-01 13:30:00")


def test_typed_timestamps_naive_are_local_and_aware_are_converted(backend):
    rules = ParseRules(timezone="Europe/Berlin", extracted_at=EXTRACTED)
    naive = pd.to_datetime(["2024-06-01 12:00:00", "2024-03-31 02:30:00", None, "2024-01-15 08:00:00", "2030-01-01 00:00:00"])
    raw = pd.DataFrame({"customer_id": ["1", "2", "3", "4", "5"], "ts": naive, "amount": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = validate_partition(_on(backend, raw), "transactions", rules)
    assert _reasons(out) == [None, "bad_timestamp", "bad_timestamp", None, "future_timestamp"]
    assert _values(out, "ts")[0] == _utc("2024-06-01 10:00:00")

    aware = raw.assign(ts=pd.Series(naive).dt.tz_localize("America/New_York", nonexistent="NaT"))
    out = validate_partition(_on(backend, aware), "transactions", rules)
    assert _values(out, "ts")[0] == _utc("2024-06-01 16:00:00")
    assert str(_host(out)["ts"].dtype) == "datetime64[us, UTC]"


def test_future_timestamps_are_clock_skew_only_when_extracted_at_is_set(backend):
    raw = _text_frame(
        backend, _transactions(ts=["2025-12-31 23:59:59", "2026-01-01 00:00:00", "2026-01-01 00:00:01", "2035-05-05 00:00:00", "x"])
    )
    assert _reasons(validate_partition(raw, "transactions", RULES)) == [
        None, None, "future_timestamp", "future_timestamp", "bad_timestamp",
    ]  # fmt: skip
    no_check = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S")
    assert _reasons(validate_partition(raw, "transactions", no_check)) == [None, None, None, None, "bad_timestamp"]


# -- amounts, quantities, returns ------------------------------------------------------------


def test_non_numeric_amounts_are_not_guessed(backend):
    raw = _text_frame(backend, _transactions(amount=["N/A", "", "12,50", "$19.99", "#VALUE!"]))
    assert _reasons(validate_partition(raw, "transactions", RULES)) == ["non_numeric_amount"] * 5
    raw = _text_frame(backend, _transactions(amount=[None, " 12.50 ", "-0", "1e3", "inf"]))
    out = validate_partition(raw, "transactions", RULES)
    assert _reasons(out) == ["non_numeric_amount", None, None, None, "non_numeric_amount"]
    assert _values(out, "amount")[1:4] == [12.5, 0.0, 1000.0]


def test_amounts_beyond_the_bound_are_quarantined_not_kept(backend):
    """1e308 is a plain number, but summed into spend it becomes infinity."""
    raw = _text_frame(backend, _transactions(amount=["1e308", "-1e308", "1e9", "1000000000.5", "-5e9"]))
    out = validate_partition(raw, "transactions", RULES)
    assert _reasons(out) == ["amount_out_of_bounds", "amount_out_of_bounds", None, "amount_out_of_bounds",
                             "amount_out_of_bounds"]  # fmt: skip
    wider = dataclasses.replace(RULES, max_abs_amount=1e10)
    assert _reasons(validate_partition(raw, "transactions", wider))[2:] == [None, None, "negative_amount"]


def test_typed_amounts_and_quantities(backend):
    raw = pd.DataFrame(
        {
            "customer_id": ["1", "2", "3", "4", "5"],
            "ts": pd.to_datetime(["2024-06-01 12:00:00"] * 5, utc=True),
            "amount": [19.99, np.nan, -5.0, -5.0, 0.1 + 0.2],
            "quantity": np.array([1, 1, 2, -2, 3], dtype="int64"),
        }
    )
    out = validate_partition(_on(backend, raw), "transactions", RULES)
    assert _reasons(out) == [None, "non_numeric_amount", "negative_amount", None, None]
    assert _values(out, "is_return") == [False, False, False, True, False]
    assert _values(out, "quantity") == [1.0, 1.0, 2.0, -2.0, 3.0]
    assert str(_host(out)["quantity"].dtype) == "float64"


def test_quantity_is_checked_only_when_the_source_has_it(backend):
    raw = _text_frame(backend, _transactions(quantity=["1", "two", None, "-1", "2.0"]))
    out = validate_partition(raw, "transactions", RULES)
    assert _reasons(out) == [None, "non_numeric_quantity", "non_numeric_quantity", None, None]

    out = validate_partition(_text_frame(backend, _transactions()), "transactions", RULES)
    assert _reasons(out) == [None] * 5
    assert _values(out, "quantity") == [None] * 5
    assert _values(out, "is_return") == [False] * 5


def test_returns_by_negative_quantity_or_order_prefix_may_have_negative_amounts(backend):
    rules = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S", return_prefix="C")
    raw = _text_frame(
        backend,
        _transactions(
            amount=["-5", "-5", "-5", "5", "-5"],
            quantity=["-1", "1", "1", "1", "1"],
            order_id=["536365", "C536379", "536380", "C536381", None],
        ),
    )
    out = validate_partition(raw, "transactions", rules)
    assert _values(out, "is_return") == [True, True, False, True, False]
    assert _reasons(out) == [None, None, "negative_amount", None, "negative_amount"]

    # Without a prefix rule, "C..." is just an order id.
    out = validate_partition(raw, "transactions", RULES)
    assert _values(out, "is_return") == [True, False, False, False, False]
    assert _reasons(out) == [None, "negative_amount", "negative_amount", None, "negative_amount"]


def test_order_ids_are_normalised_and_discounts_are_optional(backend):
    raw = _text_frame(
        backend, _transactions(order_id=[" 536365.0 ", "A-1", None, "12", "007"], discount=["0.1", "ten", None, "", "0"])
    )
    out = validate_partition(raw, "transactions", RULES)
    assert _values(out, "order_id") == ["536365", "A-1", None, "12", "007"]
    assert _values(out, "discount") == [0.1, None, None, None, 0.0]
    assert _reasons(out) == [None] * 5


def test_first_failing_rule_wins(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["", "1", "2", "3", "4"],
            "ts": ["x", "x", "2030-01-01 00:00:00", "2024-01-01 00:00:00", "2024-01-01 00:00:00"],
            "amount": ["N/A", "N/A", "N/A", "N/A", "-1"],
            "quantity": ["x", "x", "x", "x", "x"],
        },
    )
    assert _reasons(validate_partition(raw, "transactions", RULES)) == [
        "blank_customer_id", "bad_timestamp", "future_timestamp", "non_numeric_amount", "non_numeric_quantity",
    ]  # fmt: skip


# -- other tables ----------------------------------------------------------------------------


def test_events_need_an_exact_known_event_type(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", "2", "3", "4", "5", "6"],
            "ts": ["2024-06-01 12:00:00"] * 6,
            "event_type": ["view", "VIEW ", "pageview", None, "email_click", " view"],
            "channel": ["web", None, "app", "web", "email", "web"],
        },
    )
    out = validate_partition(raw, "events", RULES)
    assert _reasons(out) == [None, "unknown_event_type", "unknown_event_type", "unknown_event_type", None, "unknown_event_type"]
    assert list(_host(out).columns) == [*TYPED_COLUMNS["events"], "reason"]
    assert _values(out, "event_type")[1] == "VIEW "
    assert _values(out, "category") == [None] * 6
    assert set(EVENT_TYPES) >= {"view", "email_click"}


def test_customers_keep_attributes_and_a_bad_signup_is_only_null(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", " ", "3", "4", "5"],
            "signup_ts": ["2024-01-01 00:00:00", "2024-01-01 00:00:00", "garbage", None, "2024-02-30 00:00:00"],
            "age_band": ["25-34", None, "35-44", "18-24", "65+"],
            "region": ["north", "south", None, "east", "west"],
        },
    )
    out = validate_partition(raw, "customers", RULES)
    assert list(_host(out).columns) == ["customer_id", "signup_ts", "region", "age_band", "reason"]
    assert _reasons(out) == [None, "blank_customer_id", None, None, None]
    assert _values(out, "signup_ts") == [_utc("2024-01-01"), _utc("2024-01-01"), None, None, None]
    assert _values(out, "age_band") == ["25-34", None, "35-44", "18-24", "65+"]

    only_ids = validate_partition(_text_frame(backend, {"customer_id": ["1", "2"]}), "customers", RULES)
    assert list(_host(only_ids).columns) == [*TYPED_COLUMNS["customers"], "reason"]
    assert str(_host(only_ids)["signup_ts"].dtype) == "datetime64[us, UTC]"


def test_identities_check_only_the_customer_id(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", "", "3.0", "4", "5"],
            "id_type": ["email", "email", "phone", "device_id", "email"],
            "id_value": ["a@b.c", "x@y.z", "unknown", None, ""],
        },
    )
    out = validate_partition(raw, "identities", RULES)
    assert _reasons(out) == [None, "blank_customer_id", None, None, None]
    assert _values(out, "customer_id")[2] == "3"
    assert _values(out, "id_value") == ["a@b.c", "x@y.z", "unknown", None, ""]


def test_outcome_flags_from_text_and_bools(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", "2", "3", "4", "5", "6"],
            "campaign": ["spring"] * 6,
            "treated": ["true", " Yes ", "0", "F", "maybe", None],
            "converted": ["n", "1", "Y", "FALSE", "no", "t"],
        },
    )
    out = validate_partition(raw, "outcomes", RULES)
    assert _reasons(out) == [None, None, None, None, "bad_flag", "bad_flag"]
    assert _values(out, "treated")[:4] == [True, True, False, False]
    assert _values(out, "converted")[:4] == [False, True, True, False]
    assert str(_host(out)["treated"].dtype) == "bool"

    typed = pd.DataFrame(
        {
            "customer_id": ["1", "2", "3"],
            "campaign": ["a", "b", "c"],
            "treated": [True, False, True],
            "converted": [1.0, 0.0, 2.0],
        }
    )
    out = validate_partition(_on(backend, typed), "outcomes", RULES)
    assert _reasons(out) == [None, None, "bad_flag"]
    assert _values(out, "treated") == [True, False, True]
    assert _values(out, "converted")[:2] == [True, False]


# -- activation inputs: contacts, suppressions, consent flags --------------------------------


def test_contacts_need_a_time_and_a_channel_which_is_normalised(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", "2", "3", "4", "5"],
            "ts": ["2024-06-01 12:00:00", "2024-06-02 08:00:00", "2024-06-02 08:00:00", "someday", "2030-01-01 00:00:00"],
            "channel": [" Email ", "SMS", "  ", "push", "push"],
            "campaign": ["Spring", None, "x", "x", "x"],
        },
    )
    out = validate_partition(raw, "contacts", RULES)
    assert _reasons(out) == [None, None, "blank_channel", "bad_timestamp", "future_timestamp"]
    assert _values(out, "channel")[:3] == ["email", "sms", None]
    assert _values(out, "campaign")[:2] == ["Spring", None]  # campaigns are names: kept as written
    assert _values(out, "ts")[0] == _utc("2024-06-01 12:00")


def test_suppressions_need_a_reason_and_may_lack_a_time_or_a_channel(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", "2", "3", "4", "5"],
            "reason": [" Unsubscribed", "legal_hold", None, "complaint", "complaint"],
            "channel": ["EMAIL", None, "sms", " ", "sms"],
            "ts": ["2024-06-01 12:00:00", None, "2024-06-01 12:00:00", " ", "yesterday"],
        },
    )
    out = validate_partition(raw, "suppressions", RULES)
    assert _reasons(out) == [None, None, "blank_reason", None, "bad_timestamp"]
    assert _values(out, SUPPRESSION_REASON)[:2] == ["unsubscribed", "legal_hold"]
    assert "reason" in out.columns and _values(out, "channel")[:4] == ["email", None, "sms", None]
    assert _values(out, "ts")[:2] == [_utc("2024-06-01 12:00"), None]

    # Without ts or channel columns at all: unknown times, every channel.
    out = validate_partition(_text_frame(backend, {"customer_id": ["1"], "reason": ["complaint"]}), "suppressions", RULES)
    assert _reasons(out) == [None] and _values(out, "ts") == [None] and _values(out, "channel") == [None]


def test_consent_flags_become_nullable_booleans_and_unreadable_ones_are_quarantined(backend):
    raw = _text_frame(
        backend,
        {
            "customer_id": ["1", "2", "3", "4", "5"],
            "consent_email": ["TRUE", " no ", "Y", None, "maybe"],
            "consent_sms": ["1", "0", "n", "yes", "yes"],
            "region": ["north"] * 5,
        },
    )
    out = validate_partition(raw, "customers", RULES)
    assert _reasons(out) == [None, None, None, None, "bad_consent"]
    assert _values(out, "consent_email")[:4] == [True, False, True, None]
    assert _values(out, "consent_sms") == [True, False, False, True, True]
    assert _values(out, "region") == ["north"] * 5  # other attributes pass through as they are
    if not backend.is_gpu:  # cuDF's bool column holds nulls itself
        assert str(out["consent_email"].dtype) == "boolean"

    typed = pd.DataFrame({"customer_id": ["1", "2", "3"], "consent_push": pd.array([True, None, False], "boolean")})
    out = validate_partition(_on(backend, typed), "customers", RULES)
    assert _reasons(out) == [None, None, None] and _values(out, "consent_push") == [True, None, False]


# -- shape, dtypes, empty frames -------------------------------------------------------------


def _expected_dtype(spec):
    return TEXT_DTYPE if spec == "str" else pd.Series([], dtype=spec).dtype


_MINIMAL = {
    "transactions": {"customer_id": ["1"], "ts": ["2024-06-01 12:00:00"], "amount": ["2.5"]},
    "events": {"customer_id": ["1"], "ts": ["2024-06-01 12:00:00"], "event_type": ["view"]},
    "customers": {"customer_id": ["1"]},
    "identities": {"customer_id": ["1"], "id_type": ["email"], "id_value": ["a@b.c"]},
    "outcomes": {"customer_id": ["1"], "campaign": ["a"], "treated": ["yes"], "converted": ["no"]},
    "contacts": {"customer_id": ["1"], "ts": ["2024-06-01 12:00:00"], "channel": ["email"]},
    "suppressions": {"customer_id": ["1"], "reason": ["unsubscribed"]},
}


@pytest.mark.parametrize("table", list(TYPED_COLUMNS))
def test_empty_frame_gives_the_same_columns_and_dtypes_as_a_full_one(backend, table):
    raw = _text_frame(backend, _MINIMAL[table])
    full = _host(validate_partition(raw, table, RULES))
    empty = _host(validate_partition(raw.iloc[:0], table, RULES))
    expected = {**{name: _expected_dtype(spec) for name, spec in TYPED_COLUMNS[table].items()}, "reason": TEXT_DTYPE}
    assert len(empty) == 0
    assert dict(empty.dtypes) == expected
    assert dict(full.dtypes) == expected
    assert _reasons(full) == [None]


def test_index_length_and_order_are_kept(backend):
    raw = _text_frame(backend, _transactions(customer_id=["5", "", "3", "2", "1"]), index=[40, 40, 7, 13, 2])
    out = validate_partition(raw, "transactions", RULES)
    assert list(_host(out).index) == [40, 40, 7, 13, 2]
    assert _values(out, "customer_id") == ["5", "", "3", "2", "1"]
    assert out is not raw


def test_meta_from_an_empty_frame_works_with_dask_map_partitions():
    import dask.dataframe as dd

    raw = pd.DataFrame({name: pd.Series(values * 4, dtype=str) for name, values in _transactions().items()})
    ddf = dd.from_pandas(raw, npartitions=3)
    meta = validate_partition(raw.iloc[:0], "transactions", RULES)
    result = ddf.map_partitions(validate_partition, "transactions", RULES, meta=meta).compute(scheduler="sync")
    assert len(result) == 20
    assert result["reason"].isna().all()
    assert list(result.columns) == list(meta.columns)


# -- as_text ---------------------------------------------------------------------------------


def test_as_text_keeps_original_spellings_and_nulls(backend):
    raw = _text_frame(
        backend, {"amount": ["12,50", None, "$19.99", " 7 ", ""], "ts": ["2024-02-30 10:00:00", "x", None, "", "VIEW "]}
    )
    text = _host(as_text(raw))
    assert _values(text, "amount") == ["12,50", None, "$19.99", " 7 ", ""]
    assert _values(text, "ts") == ["2024-02-30 10:00:00", "x", None, "", "VIEW "]


def test_as_text_writes_typed_values_as_text_without_null_words(backend):
    raw = pd.DataFrame(
        {
            "customer_id": [17850.0, np.nan, 3.0],
            "amount": [19.99, np.nan, 0.1 + 0.2],
            "quantity": pd.array([1, None, -2], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "ts": pd.to_datetime(["2024-06-01 10:00:00", None, "2024-06-01 10:00:01.5"], utc=True, format="ISO8601"),
            "naive": pd.to_datetime(["2024-06-01 10:00:00", None, "2024-06-01"], format="ISO8601"),
            "name": np.array(["a", None, "c"], dtype=object),
        },
        index=[3, 1, 2],
    )
    text = _host(as_text(_on(backend, raw)))
    assert list(text.index) == [3, 1, 2]
    assert list(text.columns) == list(raw.columns)
    for column in text.columns:
        assert text[column].dtype == TEXT_DTYPE, column
        assert text[column].iloc[1] is None or pd.isna(text[column].iloc[1]), column
        assert not text[column].isin(["None", "nan", "NaN", "<NA>", "NaT"]).any(), column
    assert _values(text, "customer_id") == ["17850.0", None, "3.0"]
    assert _values(text, "amount")[0] == "19.99"
    assert _values(text, "quantity") == ["1", None, "-2"]
    assert _values(text, "flag") == ["True", None, "False"]
    assert _values(text, "name") == ["a", None, "c"]
    assert _values(text, "ts")[0].startswith("2024-06-01")
    assert "10:00:00" in _values(text, "ts")[0]
    assert pd.Timestamp(_values(text, "ts")[2]) == _utc("2024-06-01 10:00:01.5")
    assert pd.Timestamp(_values(text, "naive")[0]) == pd.Timestamp("2024-06-01 10:00:00")


def test_as_text_of_an_empty_frame_keeps_its_columns(backend):
    raw = _text_frame(backend, {"a": ["x"], "b": ["y"]}).iloc[:0]
    text = _host(as_text(raw))
    assert list(text.columns) == ["a", "b"]
    assert len(text) == 0


# -- the synthetic world ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, WorldSpec(customers=2000, seed=9, chunk_size=1000, dirt=0.03))
    return out


# Faults whose rows validation must leave alone: copies are dropped by deduplication, junk
# identifiers are handled by identity resolution.
_NOT_VALIDATION_FAULTS = {"duplicate", "junk_identifier"}


@pytest.mark.parametrize("table", ["transactions", "events", "customers", "identities"])
def test_every_injected_fault_gets_its_reason_and_no_clean_row_is_lost(dirty_world, table):
    rules = ParseRules(timestamp_format="%Y-%m-%d %H:%M:%S", timezone="UTC", extracted_at=EXTRACTED)
    truth = pq.read_table(dirty_world / "truth" / "dirty_rows").to_pandas()
    truth = truth[truth["table"] == table]
    seen_faults = set()
    parts = sorted((dirty_world / table).glob("*.parquet"))
    assert len(parts) == 2
    for part in parts:
        raw = pq.read_table(part).to_pandas()
        out = validate_partition(raw, table, rules)
        assert len(out) == len(raw)
        reason = np.array(_reasons(out), dtype=object)
        dirty = truth[truth["file"] == part.name]
        expected = np.full(len(raw), None, dtype=object)
        expected[dirty["row"].to_numpy()] = dirty["fault"].to_numpy()
        judged = ~np.isin(expected, list(_NOT_VALIDATION_FAULTS))
        wrong = np.flatnonzero(judged & (reason != expected))
        assert wrong.size == 0, (
            f"{part.name}: {wrong.size} rows misjudged, e.g. "
            f"{raw.iloc[wrong[:5]].to_dict('records')} expected {expected[wrong[:5]]} got {reason[wrong[:5]]}"
        )
        # Duplicate copies and junk identifiers are valid rows as far as validation goes.
        assert all(value is None for value in reason[~judged])
        seen_faults |= set(dirty["fault"])
    # The world exercised every fault of this table.
    assert seen_faults == set(FAULTS[table])
