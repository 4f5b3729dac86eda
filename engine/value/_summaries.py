"""RFM summaries in the buy-till-you-die convention, per store partition.

A **purchase** is, by ``grain``:

- ``"day"`` (the BTYD convention): a calendar day (UTC) on which a customer has purchase
  lines (returns left out) adding up to 0 or more; several orders on one day are one
  purchase, at the start of that day;
- ``"order"``: an order (purchase lines sharing an order id, or a timestamp where there is no
  id, as the feature stage defines it) worth 0 or more, at its first line's timestamp.

A purchase worth nothing (a free sample, a fully discounted order) is still a transaction, as
lifetimes and BTYD count them: it counts in frequency, recency and T, and is left out of the
spend model only (``monetary`` averages what it cost; the Gamma-Gamma fit takes the repeat
buyers whose ``monetary`` is positive).

Calibration covers the purchases before the as-of instant (a midnight). ``T`` runs from the
first purchase to the **origin**, by ``calibration_end``:

- ``"last_day"`` (the BTYD convention of lifetimes and BTYD, and of the published fits): the
  start of the last calibration day, the day before as-of. With day grain every purchase sits
  at the start of its day, so the calibration period holds the points up to T and the holdout
  the points after it; a customer who first bought on the last day has T = 0;
- ``"as_of"``: the as-of midnight itself, one day more. With ``"order"`` grain purchases keep
  their times, and T always runs to as-of.

Per customer, in days (fractional with ``"order"``):

- ``frequency``: purchases before as-of minus 1 (repeat purchases);
- ``recency``: from the first to the last purchase before as-of;
- ``T``: from the first purchase to the origin;
- ``monetary``: the mean value of the repeat purchases, the first left out (the Gamma-Gamma
  convention: the first purchase often differs); 0 without repeats.

With a holdout of ``horizon_days`` the same pass also reads [as-of, as-of + horizon) and adds
what each customer did in it: ``holdout_purchases``, ``holdout_spend`` (their value) and
``holdout_wait`` (days from the origin to the first one, at the start of its day with
``"last_day"``, the middle with ``"as_of"``; NaN if none).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..backend import run_starts, to_host
from ..ingest import read_store_table
from ..layout import part_name

__all__ = [
    "CALIBRATION_ENDS", "GRAINS", "HOLDOUT_COLUMNS", "SUMMARY_COLUMNS", "TRACKING_DAYS", "Purchases", "origin_lag",
    "partition_summaries", "purchase_days", "summarise", "tracking_counts",
]  # fmt: skip

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary")
HOLDOUT_COLUMNS = ("holdout_purchases", "holdout_spend", "holdout_wait")
GRAINS = ("day", "order")
CALIBRATION_ENDS = ("last_day", "as_of")
MICROS_PER_DAY = 86_400 * 1_000_000
# How far before as-of the tracking counts reach (ten years); earlier days count as this far.
TRACKING_DAYS = 3_653


class Purchases(NamedTuple):
    """:func:`purchase_days` rows as arrays, sorted by customer and day: ``customer`` indexes
    ``keys`` (the distinct ``customer_key`` values, sorted), so that each customer's
    purchases are one run of rows, reduced per customer without a groupby."""

    customer: np.ndarray
    day: np.ndarray
    value: np.ndarray
    keys: pd.Index

    @classmethod
    def of(cls, days: pd.DataFrame) -> Purchases:
        """``days``: :func:`purchase_days` rows."""
        customer, keys = pd.factorize(days["customer_key"], sort=True)
        return cls(customer, days["day"].to_numpy(), days["value"].to_numpy(dtype="float64"), keys)

    def frame(self) -> pd.DataFrame:
        """The :func:`purchase_days` rows."""
        keys = self.keys.take(self.customer).to_numpy()
        return pd.DataFrame({"customer_key": keys, "day": self.day, "value": self.value})


def _run_starts(*columns: np.ndarray) -> np.ndarray:
    """Where each run of rows alike on ``columns`` starts (the rows sorted by them)."""
    changed = np.zeros(max(len(columns[0]) - 1, 0), dtype=bool)
    for column in columns:
        changed |= column[1:] != column[:-1]
    return np.flatnonzero(np.r_[len(columns[0]) > 0, changed])


def _customer_codes(keys: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(keys, sort=True)``. A store part's keys are sorted, Arrow-backed as
    ``read_store_table`` gives them: their codes count the runs of equal keys, 7 ms for 480k
    keys where the factorization hashed them in 14."""
    if isinstance(keys.array, pd.arrays.ArrowExtensionArray) and not keys.hasnans:
        starts = run_starts(keys)
        runs = keys.iloc[np.flatnonzero(starts)]
        ordered = pa.array(runs)
        if len(ordered) < 2 or pc.all(pc.less(ordered[:-1], ordered[1:])).as_py():
            return np.cumsum(starts) - 1, pd.Index(runs)
    return pd.factorize(keys, sort=True)


def _is_sorted(customer: np.ndarray, day: np.ndarray) -> bool:
    """Whether the rows are sorted by customer, then day."""
    step = np.diff(customer)
    return bool((step >= 0).all() and (np.diff(day)[step == 0] >= 0).all())


def _day_totals(customer: np.ndarray, day: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, ...]:
    """Lines summed per customer and day, sorted by both.

    A store part's lines are sorted by customer and time, so each day's lines are a run:
    ``np.add.reduceat`` sums the runs as a pandas groupby sums groups that are runs (to the
    same bits) without the groupby's cost. Lines in another order go through the groupby,
    which sums groups that are not runs another way (compensated)."""
    if _is_sorted(customer, day):
        starts = _run_starts(customer, day)
        return customer[starts], day[starts], np.add.reduceat(value, starts)
    lines = pd.DataFrame({"customer": customer, "day": day, "value": value})
    totals = lines.groupby(["customer", "day"], sort=False, as_index=False)["value"].sum()
    totals = totals.sort_values(["customer", "day"])
    return totals["customer"].to_numpy(), totals["day"].to_numpy(), totals["value"].to_numpy()


def _order_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Purchase lines (no returns) -> :func:`purchase_days` rows with ``grain="order"``."""
    ts = frame["ts"].to_numpy(dtype="int64")
    lines = pd.DataFrame(
        {"customer_key": frame["customer_key"].to_numpy(), "value": frame["amount"].to_numpy("float64", na_value=0.0)}
    )
    order_id = frame["order_id"] if "order_id" in frame.columns else pd.Series("", index=frame.index)
    lines["order_id"] = order_id.fillna("").astype(str).to_numpy()
    lines["moment"] = np.where(lines["order_id"].eq(""), ts, 0)
    lines["day"] = ts / MICROS_PER_DAY
    grouped = lines.groupby(["customer_key", "order_id", "moment"], sort=False)
    totals = grouped.agg(day=("day", "min"), value=("value", "sum")).reset_index()
    # An order that nets out negative without a return is no purchase (see _purchases).
    totals = totals.loc[totals["value"] >= 0, ["customer_key", "day", "value"]]
    return totals.sort_values(["customer_key", "day"], ignore_index=True)


def _purchases(frame: pd.DataFrame, grain: str) -> Purchases:
    """:func:`purchase_days`, as arrays."""
    kept = np.ones(len(frame), dtype=bool)
    if "is_return" in frame.columns:
        kept = ~frame["is_return"].fillna(False).astype(bool).to_numpy()
    if grain != "day":
        return Purchases.of(_order_totals(frame[kept]))
    customer, keys = _customer_codes(frame["customer_key"])
    kept &= customer >= 0  # a line without a customer is in no group, as in a groupby
    ts = frame["ts"].to_numpy(dtype="int64")[kept]
    value = frame["amount"].to_numpy("float64", na_value=0.0)[kept]
    customer, day, value = _day_totals(customer[kept], ts // MICROS_PER_DAY, value)
    # A day that nets out negative without a return is no purchase; ingest quarantines such
    # lines, so this only guards direct callers.
    purchase = value >= 0
    return Purchases(customer[purchase], day[purchase], value[purchase], keys)


def purchase_days(frame: pd.DataFrame, grain: str = "day") -> pd.DataFrame:
    """Purchase lines -> one row per purchase: ``customer_key``, ``day``, ``value`` (0 or more).

    ``frame`` has ``customer_key``, ``ts`` (int64 microseconds, UTC), ``amount`` and
    optionally ``is_return`` and ``order_id``; ``day`` counts days since 1970-01-01 (whole
    days with ``grain="day"``). Sorted by customer and day.
    """
    return _purchases(frame, grain).frame()


def origin_lag(grain: str = "day", calibration_end: str = "last_day") -> int:
    """Days from the origin T runs to up to the as-of midnight (see the module docstring)."""
    return 1 if grain == "day" and calibration_end == "last_day" else 0


def summarise(
    days: pd.DataFrame, as_of_day: int, horizon_days: int | None = None, grain: str = "day",
    calibration_end: str = "last_day",
) -> pd.DataFrame:  # fmt: skip
    """Per-customer summaries from :func:`purchase_days` rows (see the module docstring).

    Customers whose first purchase is on or after ``as_of_day`` are left out: the model has
    nothing on them. Sorted by ``customer_key``.
    """
    return _summarise(Purchases.of(days), as_of_day, horizon_days, grain, calibration_end)


def _by_customer(
    values: np.ndarray, customers: np.ndarray, wanted: np.ndarray, keys: int, missing: float
) -> np.ndarray:
    """``values`` (one per customer of ``customers``) for each customer of ``wanted``, and
    ``missing`` for those not in ``customers`` (customers: codes below ``keys``)."""
    table = np.full(keys, missing, dtype="float64")
    table[customers] = values
    return table[wanted]


def _summarise(
    purchases: Purchases, as_of_day: int, horizon_days: int | None, grain: str, calibration_end: str
) -> pd.DataFrame:
    """:func:`summarise`. Each customer's purchases are a run sorted by day: the first, the last
    and their count come from the run's ends, their total from ``np.add.reduceat`` (the sum
    pandas gives sorted groups, to the bit)."""
    before = purchases.day < as_of_day
    customer, day, value = purchases.customer[before], purchases.day[before], purchases.value[before]
    starts = _run_starts(customer)
    count = np.diff(starts, append=len(customer))
    first, last = day[starts], day[starts + count - 1]
    origin = as_of_day - origin_lag(grain, calibration_end)
    repeats = (count - 1).astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(repeats > 0, (np.add.reduceat(value, starts) - value[starts]) / repeats, 0.0)
    summarised = customer[starts]
    summary = pd.DataFrame(
        {
            "customer_key": purchases.keys.take(summarised).to_numpy(),
            "frequency": repeats,
            "recency": (last - first).astype("float64"),
            "T": (origin - first).astype("float64"),
            "monetary": monetary,
        }
    )
    if horizon_days is None:
        return summary
    after = (purchases.day >= as_of_day) & (purchases.day < as_of_day + horizon_days)
    customer, day, value = purchases.customer[after], purchases.day[after], purchases.value[after]
    starts = _run_starts(customer)
    later, keys = customer[starts], len(purchases.keys)
    summary["holdout_purchases"] = _by_customer(np.diff(starts, append=len(customer)), later, summarised, keys, 0.0)
    summary["holdout_spend"] = _by_customer(np.add.reduceat(value, starts), later, summarised, keys, 0.0)
    # Measured to the origin, a day-grain purchase is at the start of its day; measured to
    # as-of, it could have been at any time of its day: take the middle.
    midpoint = 0.5 if grain == "day" and origin == as_of_day else 0.0
    summary["holdout_wait"] = _by_customer(day[starts] - origin + midpoint, later, summarised, keys, np.nan)
    return summary


def tracking_counts(purchases: Purchases, as_of_day: int, horizon_days: int | None) -> dict[str, np.ndarray]:
    """What the tracking chart adds up over partitions, for the customers :func:`summarise`
    keeps (first purchase before as-of).

    ``first[d]``: customers whose first purchase was ``d`` days before as-of (1 to
    :data:`TRACKING_DAYS`). ``repeats[TRACKING_DAYS + u]``: their repeat purchases on day ``u``
    from as-of (negative before it), through the holdout.
    """
    moment = purchases.day.astype("float64")
    # Rows are sorted by customer and day: each customer's first row is their first purchase.
    is_first = np.zeros(len(moment), dtype=bool)
    is_first[_run_starts(purchases.customer)] = True
    first = moment[np.flatnonzero(is_first)[np.cumsum(is_first) - 1]]
    kept = first < as_of_day
    offsets = as_of_day - np.floor(moment[kept & is_first]).astype(np.int64)
    offsets = np.clip(offsets, 1, TRACKING_DAYS)
    repeat = kept & ~is_first & (moment < as_of_day + (horizon_days or 0))
    when = np.clip(np.floor(moment[repeat]).astype(np.int64) - as_of_day, -TRACKING_DAYS, None) + TRACKING_DAYS
    return {
        "first": np.bincount(offsets, minlength=TRACKING_DAYS + 1),
        "repeats": np.bincount(when, minlength=TRACKING_DAYS + (horizon_days or 0)),
    }


def _summary_columns(grain: str) -> list[str]:
    # Order ids tell orders apart only with the order grain.
    return ["customer_key", "ts", "amount", "is_return", *(["order_id"] if grain == "order" else [])]


def write_summaries(directory: str, as_of_day: int, grain: str, calibration_end: str, number: int,
                    transactions) -> None:  # fmt: skip
    """Write the summaries of store partition ``number`` at ``as_of_day`` (no holdout) to
    ``directory`` from its rows another stage read: ``transactions``, a frame of either
    backend holding every row before as-of with ``ts`` in int64 microseconds, as
    ``read_store_table`` gives them. The same summaries :func:`partition_summaries` makes,
    without a second read of the partition."""
    columns = [column for column in _summary_columns(grain) if column in transactions.columns]
    summaries = _summarise(_purchases(to_host(transactions[columns]), grain), as_of_day, None, grain, calibration_end)
    table = pa.Table.from_pandas(summaries, preserve_index=False)
    pq.write_table(table, Path(directory) / part_name(number), compression="none", write_statistics=False)


def partition_summaries(
    store: str, number: int, as_of_day: int, horizon_days: int | None, grain: str = "day", window_days: int = 0,
    calibration_end: str = "last_day",
) -> tuple[pd.DataFrame, dict[str, np.ndarray], pd.DataFrame | None]:  # fmt: skip
    """Summaries of the customers of store partition ``number`` (nothing after the holdout is
    read), their :func:`tracking_counts`, and with ``window_days`` the summaries as of that
    many days before as-of with those days as their holdout (for choosing the model)."""
    end_day = as_of_day + (horizon_days or 0)
    table = read_store_table(Path(store), "transactions", number, _summary_columns(grain), end_day * MICROS_PER_DAY)
    purchases = _purchases(table.to_pandas(), grain)
    # The window's holdout ends at as-of: nothing after it is read into the choice.
    window = None
    if window_days:
        window = _summarise(purchases, as_of_day - window_days, window_days, grain, calibration_end)
    summaries = _summarise(purchases, as_of_day, horizon_days, grain, calibration_end)
    return summaries, tracking_counts(purchases, as_of_day, horizon_days), window
