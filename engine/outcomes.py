"""What customers did after as-of: orders and spend in the next ``horizon_days``.

Read from the customer-clustered store one partition per task, like the feature stage, so
the outcome window [as_of, as_of + horizon) is the mirror image of the feature window: the
features of a backtest as-of see only rows before it, the outcomes only rows from it on.

A store can only answer for a window it holds: :func:`outcome_window` says where its data
end, and :func:`next_period_outcomes` refuses a window past that point, rather than report
every customer as having done nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from ._tasks import compute_tasks
from .exceptions import InputDataError, UsageError
from .ingest import read_store_meta, read_store_table

__all__ = [
    "OUTCOME_COLUMNS", "OutcomeWindow", "align_outcomes", "next_period_outcomes", "outcome_window", "partition_outcomes",
    "sample_key_bound",
]  # fmt: skip

OUTCOME_COLUMNS = ("orders_next", "spend_next")
_COLUMNS = ["customer_key", "ts", "amount", "is_return", "order_id"]


@dataclass(frozen=True)
class OutcomeWindow:
    """The outcome window [start, end) and the instant the store's data end.

    ``data_end`` is the midnight (UTC) after the latest timestamp of any store table, the
    same day boundary the feature stage takes as its default as-of, capped at the store's
    ``extracted_at``: ingest quarantines later timestamps as from the future, so nothing
    after it can be in the store.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    data_end: pd.Timestamp | None

    @property
    def covered(self) -> bool:
        """Whether the store holds the whole window."""
        return self.data_end is not None and self.end <= self.data_end


def _utc(moment) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _micros(stamp: pd.Timestamp) -> int:
    return stamp.value // 1_000


def _data_end(meta: dict) -> pd.Timestamp | None:
    latest = [_utc(t["max_ts"]) for t in meta["tables"].values() if t.get("max_ts") is not None]
    if not latest:
        return None
    end = max(latest).floor("D") + pd.Timedelta(days=1)
    if meta.get("extracted_at"):
        end = min(end, _utc(meta["extracted_at"]))
    return end


def outcome_window(store: str | os.PathLike, as_of, horizon_days: int) -> OutcomeWindow:
    """The window [as_of, as_of + horizon_days) and whether ``store`` holds all of it.

    Parameters
    ----------
    store : path
        The customer-clustered store (``<run>/ingest/store``).
    as_of : pandas.Timestamp, datetime or date
        Start of the window; naive values are UTC, a date is its midnight UTC.
    horizon_days : int
        Length of the window in days, at least 1.
    """
    if horizon_days < 1:
        raise UsageError(f"the outcome horizon must be at least 1 day, got {horizon_days}")
    start = _utc(as_of)
    return OutcomeWindow(start, start + pd.Timedelta(days=horizon_days), _data_end(read_store_meta(store)))


def sample_key_bound(fraction: float) -> str:
    """The customer key below which about ``fraction`` (0..1) of all keys lie: keys are "k"
    and the 16 hex digits of a keyed 64-bit hash, uniform, and sort as their value does."""
    return f"k{min(int(fraction * 2**64), 2**64 - 1):016x}"


def partition_outcomes(store: str, number: int, start_us: int, end_us: int, key_below: str | None = None) -> pd.DataFrame:
    """One partition's customers with a transaction row in [start, end): orders and net spend;
    only those whose key is below ``key_below`` when it is given."""
    table = read_store_table(Path(store), "transactions", number, _COLUMNS, end_us)
    table = table.filter(pc.greater_equal(table["ts"], start_us))
    if key_below is not None:
        table = table.filter(pc.less(table["customer_key"], key_below))
    frame = table.to_pandas()
    if "is_return" not in frame.columns:
        frame["is_return"] = False
    returns = frame["is_return"].fillna(False).astype(bool).to_numpy()
    amount = frame["amount"].to_numpy(dtype="float64", na_value=np.nan)
    # As in the features: return lines count by their absolute value, whatever their sign.
    frame["net"] = np.where(returns, -np.abs(amount), amount)
    # A counts-only store's amounts are all null: its spend is unknown (NaN), not 0.
    spend = frame.groupby("customer_key", sort=True)["net"].sum(min_count=1)
    # An order is what the feature stage calls one: purchase lines sharing an order id, or a
    # timestamp where there is no id. It counts when its lines add up to a positive amount,
    # or when its amount is unknown.
    buys = frame.loc[~returns, ["customer_key", "ts", "amount"]]
    order_id = frame.loc[~returns, "order_id"] if "order_id" in frame.columns else pd.Series("", index=buys.index)
    order_id = order_id.fillna("").astype(str)
    buys = buys.assign(order_id=order_id, ts=buys["ts"].where(order_id.eq(""), 0))
    order_spend = buys.groupby(["customer_key", "order_id", "ts"], sort=False)["amount"].sum(min_count=1)
    orders = ((order_spend > 0) | order_spend.isna()).groupby(level="customer_key").sum()
    return pd.DataFrame(
        {
            "customer_key": spend.index.to_numpy(),
            "orders_next": orders.reindex(spend.index, fill_value=0).to_numpy(dtype="int64"),
            "spend_next": spend.to_numpy(dtype="float64"),
        }
    )


def next_period_outcomes(
    store: str | os.PathLike, as_of, horizon_days: int, *, client=None, progress=None, key_below: str | None = None
) -> pd.DataFrame:
    """Orders and net spend of each customer in [as_of, as_of + horizon_days).

    Parameters
    ----------
    store : path
        The customer-clustered store (``<run>/ingest/store``).
    as_of : pandas.Timestamp, datetime or date
        Start of the window (UTC; a date is its midnight).
    horizon_days : int
    client : distributed.Client, optional
        Tasks (one per store partition) run on its cluster; without one, on Dask's local
        scheduler.
    progress : callable, optional
        ``progress(done, total)`` as partitions finish.
    key_below : str, optional
        Only customers whose key is below it (:func:`sample_key_bound`): a sample of them.

    Returns
    -------
    pandas.DataFrame
        One row per customer with any transaction row in the window, sorted by key:
        ``customer_key``, ``orders_next`` (int64: orders with a positive amount, or of
        unknown amount), ``spend_next`` (float64: purchases minus returns; NaN in a store
        without amounts). Customers without a row in the window are absent;
        :func:`align_outcomes` gives them zeros.

    Raises
    ------
    InputDataError
        ``store`` is not a store, or its data end before the window does.
    """
    window = outcome_window(store, as_of, horizon_days)
    if not window.covered:
        ends = "holds no timestamps" if window.data_end is None else f"ends at {window.data_end.isoformat()}"
        raise InputDataError(
            f"{store}: no outcomes for {window.start.isoformat()} to {window.end.isoformat()}: the store's data {ends}"
        )
    partitions = int(read_store_meta(store)["partitions"])
    start_us, end_us = _micros(window.start), _micros(window.end)
    tasks = [dask.delayed(partition_outcomes)(str(store), n, start_us, end_us, key_below) for n in range(partitions)]
    parts = compute_tasks(tasks, client, progress, "outcomes")
    frame = pd.concat(parts, ignore_index=True)
    # Partitions hold disjoint customers: sorting is only for a stable order across runs.
    return frame.sort_values("customer_key", ignore_index=True)


def align_outcomes(customer_keys, outcomes: pd.DataFrame) -> pd.DataFrame:
    """``outcomes`` row for row with ``customer_keys``: zeros for customers who did nothing.

    Only meaningful for a window :func:`outcome_window` says the store covers. A spend that
    is unknown (NaN: no amounts) stays NaN.
    """
    keys = pd.Index(np.asarray(customer_keys), name="customer_key")
    # fill_value fills the customers absent from ``outcomes`` only, not an unknown spend.
    aligned = outcomes.set_index("customer_key")[list(OUTCOME_COLUMNS)].reindex(keys, fill_value=0)
    return aligned.astype({"orders_next": "int64", "spend_next": "float64"}).reset_index()
