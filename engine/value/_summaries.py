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

import numpy as np
import pandas as pd

from ..ingest import read_store_table

__all__ = [
    "CALIBRATION_ENDS", "GRAINS", "HOLDOUT_COLUMNS", "SUMMARY_COLUMNS", "TRACKING_DAYS", "origin_lag",
    "partition_summaries", "purchase_days", "summarise", "tracking_counts",
]  # fmt: skip

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary")
HOLDOUT_COLUMNS = ("holdout_purchases", "holdout_spend", "holdout_wait")
GRAINS = ("day", "order")
CALIBRATION_ENDS = ("last_day", "as_of")
MICROS_PER_DAY = 86_400 * 1_000_000
# How far before as-of the tracking counts reach (ten years); earlier days count as this far.
TRACKING_DAYS = 3_653


def purchase_days(frame: pd.DataFrame, grain: str = "day") -> pd.DataFrame:
    """Purchase lines -> one row per purchase: ``customer_key``, ``day``, ``value`` (0 or more).

    ``frame`` has ``customer_key``, ``ts`` (int64 microseconds, UTC), ``amount`` and
    optionally ``is_return`` and ``order_id``; ``day`` counts days since 1970-01-01 (whole
    days with ``grain="day"``). Sorted by customer and day.
    """
    if "is_return" in frame.columns:
        frame = frame[~frame["is_return"].fillna(False).astype(bool)]
    ts = frame["ts"].to_numpy(dtype="int64")
    lines = pd.DataFrame(
        {"customer_key": frame["customer_key"].to_numpy(), "value": frame["amount"].to_numpy("float64", na_value=0.0)}
    )
    if grain == "day":
        lines["day"] = ts // MICROS_PER_DAY
        totals = lines.groupby(["customer_key", "day"], sort=False, as_index=False)["value"].sum()
    else:
        order_id = frame["order_id"] if "order_id" in frame.columns else pd.Series("", index=frame.index)
        lines["order_id"] = order_id.fillna("").astype(str).to_numpy()
        lines["moment"] = np.where(lines["order_id"].eq(""), ts, 0)
        lines["day"] = ts / MICROS_PER_DAY
        grouped = lines.groupby(["customer_key", "order_id", "moment"], sort=False)
        totals = grouped.agg(day=("day", "min"), value=("value", "sum")).reset_index()
    # A day (or order) that nets out negative without a return is no purchase; ingest
    # quarantines such lines, so this only guards direct callers.
    totals = totals.loc[totals["value"] >= 0, ["customer_key", "day", "value"]]
    return totals.sort_values(["customer_key", "day"], ignore_index=True)


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
    before = days[days["day"] < as_of_day]
    grouped = before.groupby("customer_key", sort=True)
    first, last = grouped["day"].min(), grouped["day"].max()
    count, total = grouped["day"].size(), grouped["value"].sum()
    first_value = before.drop_duplicates("customer_key").set_index("customer_key")["value"].reindex(first.index)
    origin = as_of_day - origin_lag(grain, calibration_end)
    repeats = (count - 1).to_numpy(dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(repeats > 0, (total - first_value).to_numpy() / repeats, 0.0)
    summary = pd.DataFrame(
        {
            "customer_key": first.index.to_numpy(),
            "frequency": repeats,
            "recency": (last - first).to_numpy(dtype="float64"),
            "T": (origin - first).to_numpy(dtype="float64"),
            "monetary": monetary,
        }
    )
    if horizon_days is None:
        return summary
    after = days[(days["day"] >= as_of_day) & (days["day"] < as_of_day + horizon_days)]
    later = after.groupby("customer_key", sort=True)
    keys = pd.Index(summary["customer_key"])
    summary["holdout_purchases"] = later["day"].size().reindex(keys, fill_value=0).to_numpy(dtype="float64")
    summary["holdout_spend"] = later["value"].sum().reindex(keys, fill_value=0.0).to_numpy(dtype="float64")
    # Measured to the origin, a day-grain purchase is at the start of its day; measured to
    # as-of, it could have been at any time of its day: take the middle.
    midpoint = 0.5 if grain == "day" and origin == as_of_day else 0.0
    summary["holdout_wait"] = (later["day"].min() - origin + midpoint).reindex(keys).to_numpy(dtype="float64")
    return summary


def tracking_counts(days: pd.DataFrame, as_of_day: int, horizon_days: int | None) -> dict[str, np.ndarray]:
    """What the tracking chart adds up over partitions, for the customers :func:`summarise`
    keeps (first purchase before as-of).

    ``first[d]``: customers whose first purchase was ``d`` days before as-of (1 to
    :data:`TRACKING_DAYS`). ``repeats[TRACKING_DAYS + u]``: their repeat purchases on day ``u``
    from as-of (negative before it), through the holdout.
    """
    moment = days["day"].to_numpy(dtype="float64")
    # Rows are sorted by customer and day: each customer's first row is their first purchase.
    is_first = ~days["customer_key"].duplicated().to_numpy()
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


def partition_summaries(
    store: str, number: int, as_of_day: int, horizon_days: int | None, grain: str = "day", window_days: int = 0,
    calibration_end: str = "last_day",
) -> tuple[pd.DataFrame, dict[str, np.ndarray], pd.DataFrame | None]:  # fmt: skip
    """Summaries of the customers of store partition ``number`` (nothing after the holdout is
    read), their :func:`tracking_counts`, and with ``window_days`` the summaries as of that
    many days before as-of with those days as their holdout (for choosing the model)."""
    end_day = as_of_day + (horizon_days or 0)
    columns = ["customer_key", "ts", "amount", "is_return", "order_id"]
    table = read_store_table(Path(store), "transactions", number, columns, end_day * MICROS_PER_DAY)
    days = purchase_days(table.to_pandas(), grain)
    # The window's holdout ends at as-of: nothing after it is read into the choice.
    window = summarise(days, as_of_day - window_days, window_days, grain, calibration_end) if window_days else None
    summaries = summarise(days, as_of_day, horizon_days, grain, calibration_end)
    return summaries, tracking_counts(days, as_of_day, horizon_days), window
