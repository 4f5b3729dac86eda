"""partition_features on tiny customers whose features are worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from engine.features import FEATURE_GROUPS, FeatureParams, partition_features
from engine.features._partition import value_shares

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def _us(days_before: float) -> int:
    """int64 microseconds of the instant ``days_before`` days before as-of."""
    return int((AS_OF - pd.Timedelta(days=days_before)).value // 1000)


def _params(**overrides):
    values = {
        "as_of_us": int(AS_OF.value // 1000),
        "value_spend": ("category", "channel"),
        "profile_timestamps": ("signup_ts",),
    }
    return FeatureParams(**{**values, **overrides})


def _host(frame):
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def _with_shares(frame, spends, top):
    """The features with share columns for the given top values, as the pipeline adds them."""
    frame = _host(frame)
    for column, values in top.items():
        long = _host(spends[column])
        shares = value_shares(long["row"], long["value"].tolist(), long["spend"], frame["_gross"], values)
        for j, value in enumerate(values):
            frame[f"{column}_share_{value}"] = shares[:, j]
    return frame


# A: one order of one line, 10 days before as-of.
# B: order o1 (two lines, 91 days before), order o2 (one line, 30 days before), and a return
#    line 20 days before.
# C: events only.
TRANSACTIONS = [
    # customer, days before, amount, order_id, category, channel, discount, is_return
    ("kA", 10, 10.0, "a1", "toys", "web", 0.0, False),
    ("kB", 91, 5.0, "o1", "toys", "store", 1.0, False),
    ("kB", 91, 15.0, "o1", "books", "store", 0.0, False),
    ("kB", 30, 30.0, "o2", "toys", "web", 0.0, False),
    ("kB", 20, -10.0, "o2", "toys", "web", 0.0, True),
]
EVENTS = [
    ("kA", 12, "view"),
    ("kB", 40, "email_open"),
    ("kB", 35, "email_click"),
    ("kB", 31, "email_open"),
    ("kC", 100, "view"),
    ("kC", 3, "view"),
    ("kC", 2, "add_to_cart"),
]


def _frames(backend, amounts=True):
    """The frames of a store part; without ``amounts`` the amounts are null, as a counts-only
    store holds them."""
    transactions = pd.DataFrame(
        [(c, _us(d), a if amounts else None, o, cat, ch, disc, r) for c, d, a, o, cat, ch, disc, r in TRANSACTIONS],
        columns=["customer_key", "ts", "amount", "order_id", "category", "channel", "discount", "is_return"],
    ).astype({"amount": "float64"})
    events = pd.DataFrame([(c, _us(d), e) for c, d, e in EVENTS], columns=["customer_key", "ts", "event_type"])
    customers = pd.DataFrame(
        {
            "customer_key": ["kA", "kC", "kZ"],
            "region": ["north", None, "east"],
            "signup_ts": [_us(100), _us(-5), _us(1)],
        }
    )
    frames = [transactions.sort_values(["customer_key", "ts"], kind="stable"), events, customers]
    if backend.is_gpu:
        frames = [backend.df.from_pandas(frame) for frame in frames]
    return frames


@pytest.fixture
def features(backend):
    frame, spends = partition_features(*_frames(backend), _params())
    frame = _with_shares(frame, spends, {"category": ("toys", "books"), "channel": ("web", "store")})
    return frame.set_index("customer_key")


def test_one_row_per_active_customer(features):
    # kZ has a profile but no activity.
    assert features.index.tolist() == ["kA", "kB", "kC"]


def test_single_order_customer(features):
    a = features.loc["kA"]
    assert a["recency_days"] == pytest.approx(10)
    assert a["tenure_days"] == pytest.approx(10)
    assert (a["frequency"], a["orders_30d"], a["orders_90d"], a["orders_365d"]) == (1, 1, 1, 1)
    assert a["monetary_total"] == pytest.approx(10) and a["aov"] == pytest.approx(10)
    assert math.isnan(a["gap_mean_days"]) and math.isnan(a["gap_median_days"]) and math.isnan(a["gap_std_days"])
    assert a["return_rate"] == 0 and a["discount_share"] == 0
    assert a["category_share_toys"] == 1 and a["category_share_books"] == 0
    assert a["channel_share_web"] == 1 and a["_gross"] == 10
    # One recent order, nothing in the 90 days before: spend and order trends are +1.
    assert a["spend_trend_90d"] == pytest.approx(1) and a["order_trend_90d"] == pytest.approx(1)
    assert a["view_count"] == 1 and a["days_since_view"] == pytest.approx(12)
    assert math.isnan(a["cart_to_purchase"])  # no carts
    # Order 10 days back (week 1) and a view 12 days back (week 1).
    assert a["active_weeks"] == 1


def test_customer_with_returns_and_two_orders(features):
    b = features.loc["kB"]
    assert b["frequency"] == 2
    assert b["recency_days"] == pytest.approx(30) and b["tenure_days"] == pytest.approx(91)
    # Gross 50 over two orders; the return of 10 comes off the monetary total only.
    assert b["monetary_total"] == pytest.approx(40) and b["aov"] == pytest.approx(25)
    # The window [as_of - 30 d, as_of) includes its start; 91 days is outside 90.
    assert (b["orders_30d"], b["orders_90d"], b["orders_365d"]) == (1, 1, 2)
    assert (b["spend_30d"], b["spend_90d"], b["spend_365d"]) == pytest.approx((30, 30, 50))
    assert b["gap_mean_days"] == pytest.approx(61) and b["gap_median_days"] == pytest.approx(61)
    assert b["gap_std_days"] == pytest.approx(0)
    # Last 90 days: 30 spent in 1 order; the 90 before: 20 in 1 order.
    assert b["spend_trend_90d"] == pytest.approx((30 - 20) / 50) and b["order_trend_90d"] == 0
    assert b["return_rate"] == pytest.approx(1 / 4)
    assert b["discount_share"] == pytest.approx(1 / 3)
    assert b["distinct_categories"] == 2
    assert b["category_share_toys"] == pytest.approx(35 / 50) and b["category_share_books"] == pytest.approx(15 / 50)
    assert b["channel_share_store"] == pytest.approx(20 / 50) and b["channel_share_web"] == pytest.approx(30 / 50)
    assert (b["email_open_count"], b["email_click_count"]) == (2, 1)
    assert b["email_engagement_rate"] == pytest.approx(0.5)
    assert b["days_since_email_open"] == pytest.approx(31) and b["days_since_last_event"] == pytest.approx(31)
    # Orders in weeks 12 and 4, emails in weeks 5, 4 and 4.
    assert b["active_weeks"] == 3
    # Slope of monthly orders over 12 bins of 30 days (bin 11 the newest): orders in bins 11
    # (30 days back is exactly the start of bin 11) and 8 (91 days back).
    counts = np.zeros(12)
    counts[[11, 8]] = 1
    assert b["order_slope_12m"] == pytest.approx(np.polyfit(np.arange(12), counts, 1)[0], abs=1e-6)


def test_events_only_customer(features):
    c = features.loc["kC"]
    assert c["frequency"] == 0 and c["monetary_total"] == 0 and c["orders_365d"] == 0
    for name in ("recency_days", "tenure_days", "aov", "return_rate", "spend_trend_90d", "category_share_toys"):
        assert math.isnan(c[name]), name
    assert c["order_slope_12m"] == 0
    assert c["view_count"] == 2 and c["days_since_view"] == pytest.approx(3)
    assert c["add_to_cart_count"] == 1 and c["cart_to_purchase"] == 0
    assert math.isnan(c["days_since_email_open"])
    assert c["days_since_last_event"] == pytest.approx(2)
    # Events 100 days back (week 14) and 2-3 days back (week 0).
    assert c["active_weeks"] == 2


def test_profile_attributes_pass_through(features):
    assert features.loc["kA", "region"] == "north"
    assert features.loc["kA", "days_since_signup"] == pytest.approx(100)
    # No profile row: missing; signed up after as-of: missing too (it did not exist yet).
    assert pd.isna(features.loc["kB", "region"]) and math.isnan(features.loc["kB", "days_since_signup"])
    assert math.isnan(features.loc["kC", "days_since_signup"])
    assert "signup_ts" not in features.columns


def test_dtypes_are_compact(features):
    assert features["frequency"].dtype == np.int32 and features["view_count"].dtype == np.int32
    assert features["recency_days"].dtype == np.float32 and features["monetary_total"].dtype == np.float32


def test_groups_select_columns(backend):
    only, _ = partition_features(*_frames(backend), _params(groups=frozenset({"rfm", "windows"}), value_spend=()))
    assert set(only.columns) == {
        "customer_key", "recency_days", "frequency", "monetary_total", "aov", "tenure_days",
        "orders_30d", "spend_30d", "orders_90d", "spend_90d", "orders_365d", "spend_365d",
    }  # fmt: skip
    every, spends = partition_features(*_frames(backend), _params(groups=frozenset(FEATURE_GROUPS)))
    assert set(spends) == {"category", "channel"} and "_gross" in every.columns
    assert set(only.columns) < set(every.columns)


def test_without_amounts_no_spend_feature_is_made(backend, features):
    """A counts-only store's amounts are null: the spend columns are left out, not 0, and
    the rest is what the same lines with amounts give."""
    frame, spends = partition_features(*_frames(backend, amounts=False), _params(value_spend=(), amounts=False))
    frame = _host(frame).set_index("customer_key")
    spend = ["monetary_total", "aov", "spend_30d", "spend_90d", "spend_365d", "spend_trend_90d", "_gross"]
    assert spends == {} and not set(spend) & set(frame.columns)
    assert list(frame.columns) == [c for c in features.columns if c in frame.columns]
    pd.testing.assert_frame_equal(frame, features[frame.columns])


def test_order_lines_without_order_ids_group_by_timestamp():
    transactions = pd.DataFrame(
        {
            "customer_key": ["k1", "k1", "k1"],
            "ts": [_us(5), _us(5), _us(2)],
            "amount": [1.0, 2.0, 4.0],
            "is_return": [False, False, False],
        }
    )
    frame, _ = partition_features(transactions, None, None, _params(groups=frozenset({"rfm", "gaps"}), value_spend=()))
    assert frame.loc[0, "frequency"] == 2
    assert frame.loc[0, "aov"] == pytest.approx(3.5)
    assert frame.loc[0, "gap_mean_days"] == pytest.approx(3)


def test_an_empty_partition_gives_an_empty_frame():
    transactions = pd.DataFrame(
        {"customer_key": pd.Series([], dtype="str"), "ts": pd.Series([], dtype="int64"),
         "amount": pd.Series([], dtype="float64"), "is_return": pd.Series([], dtype="bool")}
    )  # fmt: skip
    frame, _ = partition_features(transactions, None, None, _params(groups=frozenset({"rfm", "windows", "gaps", "trend"}), value_spend=()))
    assert len(frame) == 0
    assert "gap_mean_days" in frame.columns and "order_slope_12m" in frame.columns


@pytest.mark.parametrize("categories", [3, 200], ids=["dense-table", "sorted-pairs"])
def test_spend_per_value_matches_a_groupby(categories):
    # 20 customers x 10 lines; 200 distinct categories takes the sorted-pairs path.
    rng = np.random.default_rng(categories)
    lines = pd.DataFrame(
        {
            "customer_key": np.repeat([f"k{i:02d}" for i in range(20)], 10),
            "ts": np.tile(np.arange(10) * 86_400_000_000, 20) + _us(400),
            "amount": rng.integers(1, 100, 200).astype("float64"),
            "is_return": rng.random(200) < 0.1,
            "category": [f"c{v}" for v in rng.permutation(200) % categories],
        }
    )
    frame, spends = partition_features(lines, None, None, _params(groups=frozenset({"basket"}), value_spend=("category",)))
    long = spends["category"]
    got = {(frame["customer_key"][r], v): (s, n) for r, v, s, n in zip(long["row"], long["value"], long["spend"], long["lines"])}
    bought = lines[~lines["is_return"]]
    expected = bought.groupby(["customer_key", "category"])["amount"].agg(["sum", "size"])
    assert got == {key: (row["sum"], row["size"]) for key, row in expected.iterrows()}
    distinct = bought.groupby("customer_key")["category"].nunique()
    assert dict(zip(frame["customer_key"], frame["distinct_categories"])) == distinct.to_dict()
