"""One store partition's rows in, one row of features per customer out.

The store keeps every customer's rows together, sorted by (customer_key, ts), so each
reduction here is a segment reduction: a row's customer is found by comparing neighbouring
keys, sums are ``bincount`` by customer, first and last values are read at segment
boundaries, and gaps, windows and slopes come from :mod:`kernels`. Nothing hashes or sorts
the rows, and the same code runs on pandas + NumPy and on cuDF + CuPy: dataframe methods
common to both handle the string columns, and the array namespace of the columns does the
arithmetic.

Input frames hold only rows strictly before the as-of instant, with ``ts`` as int64
microseconds since the epoch (UTC).
"""

from __future__ import annotations

from ..backend import array_namespace, dataframe_namespace, joined_on, to_array
from ._definitions import ACTIVE_WEEKS, DAY_US, FeatureParams
from ._events import event_columns, event_weeks, summarise_events
from ._runs import KEY, NAN, categorical, changed, customers_of, ratio

__all__ = ["partition_features", "value_shares"]


def _local_codes(series, xp):
    """Codes of ``series`` among its own distinct values (int64), -1 for missing."""
    if len(series) == 0:
        return xp.zeros(0, dtype="int64")
    return to_array(categorical(series).cat.codes, "int64", na_value=-1)


def _value_spend(transactions, column, customer, n, bought, amounts, xp):
    """Spend and purchase lines per (customer, value) of ``column``, in long form.

    Returns a frame of ``row`` (the customer's position), ``value``, ``spend`` and ``lines``,
    and the customers' positions of each distinct pair (for distinct counts).
    """
    namespace = dataframe_namespace(transactions)
    codes = _local_codes(transactions[column], xp)
    rows = xp.nonzero(bought & (codes >= 0))[0]
    width = int(codes.max()) + 1 if codes.size else 1
    keys = customer[rows] * width + codes[rows]
    cells = n * width
    if cells <= 8 * rows.size + 1024:
        # Few distinct values: a dense (customer x value) table beats sorting the pairs.
        lines = xp.bincount(keys, minlength=cells)
        pairs = xp.nonzero(lines)[0]
        spend = xp.bincount(keys, weights=amounts[rows], minlength=cells)[pairs]
        lines = lines[pairs]
        # Any row of a pair carries its value, so whichever duplicate write wins is right.
        sample = xp.zeros(cells, dtype="int64")
        sample[keys] = rows
        sample = sample[pairs]
    else:
        pairs, first, inverse = xp.unique(keys, return_index=True, return_inverse=True)
        spend = xp.bincount(inverse, weights=amounts[rows], minlength=pairs.size)
        lines = xp.bincount(inverse, minlength=pairs.size)
        sample = rows[first]
    owners = pairs // width
    long = namespace.DataFrame({"row": owners.astype("int32"), "spend": spend, "lines": lines})
    # A categorical: its text is written once per distinct value, not once per pair.
    long["value"] = _text_categories(categorical(transactions[column])).iloc[sample].reset_index(drop=True)
    return long, owners


def _text_categories(series):
    """A categorical series with its categories as text (the share columns are named by them)."""
    categories = series.cat.categories
    if categories.dtype.kind in "OSU" or str(categories.dtype).startswith("str"):
        return series
    return series.cat.rename_categories(categories.astype("str"))


class _Orders:
    """The purchase lines of a partition collapsed into orders, grouped by customer.

    An order is a run of consecutive purchase lines of one customer sharing an order id (or,
    without order ids, a timestamp); ingest sorts lines by (customer_key, ts, order_id), so an
    order's lines are adjacent.
    """

    def __init__(self, customer, ts, amount, order_id, n, xp):
        new_time = changed(ts, xp)
        if order_id is not None:
            order_id = order_id.fillna("")
            new_id = to_array(order_id.ne(order_id.shift()), "bool", na_value=True)
            no_id = to_array(order_id.eq(""), "bool", na_value=True)
            new_order = new_id | (no_id & new_time)
        else:
            new_order = new_time
        start = changed(customer, xp) | new_order
        number = xp.cumsum(start) - 1
        self.count = int(number[-1]) + 1 if number.size else 0
        self.customer = customer[start]
        self.ts = ts[start]
        self.days = self.ts / DAY_US
        self.spend = xp.bincount(number, weights=amount, minlength=self.count)
        self.per_customer = xp.bincount(self.customer, minlength=n)
        self.offsets = xp.concatenate([xp.zeros(1, dtype="int64"), xp.cumsum(self.per_customer)])


def _transaction_features(transactions, customer, n, params, xp, out, spends):
    groups = params.groups
    end = params.as_of_us / DAY_US
    is_return = to_array(transactions["is_return"], "bool", na_value=False)
    buy = ~is_return
    columns = transactions.columns
    all_amounts = to_array(transactions["amount"], "float64", na_value=0.0)
    buyer, amount, returner = customer[buy], all_amounts[buy], customer[is_return]
    gross = xp.bincount(buyer, weights=amount, minlength=n)
    lines = xp.bincount(buyer, minlength=n)
    order_id = None
    if "order_id" in columns:
        order_id = transactions["order_id"][~transactions["is_return"].fillna(False)].reset_index(drop=True)
    orders = _Orders(buyer, to_array(transactions["ts"], "int64")[buy], amount, order_id, n, xp)
    frequency = orders.per_customer
    has_orders = frequency > 0
    first = orders.offsets[:-1]
    last = xp.where(has_orders, orders.offsets[1:] - 1, 0)
    order_days = orders.days if orders.count else xp.zeros(1)

    if "rfm" in groups:
        out["recency_days"] = xp.where(has_orders, end - order_days[last], NAN)
        out["frequency"] = frequency
        if params.amounts:
            returned = xp.bincount(returner, weights=xp.abs(all_amounts[is_return]), minlength=n)
            out["monetary_total"] = gross - returned
            out["aov"] = ratio(gross, frequency, xp)
        out["tenure_days"] = xp.where(has_orders, end - order_days[xp.where(has_orders, first, 0)], NAN)
    if groups & {"windows", "trend"}:
        from kernels import monthly_slope, window_sums

        spans = sorted({*params.windows, params.trend_days, 2 * params.trend_days})
        counts, sums = window_sums(orders.days, orders.spend, orders.offsets, end=end, windows=spans)
        column = {span: i for i, span in enumerate(spans)}
        if "windows" in groups:
            for span in params.windows:
                out[f"orders_{span}d"] = counts[:, column[span]]
                if params.amounts:
                    out[f"spend_{span}d"] = sums[:, column[span]]
        if "trend" in groups:
            recent, both = column[params.trend_days], column[2 * params.trend_days]
            trended = (("spend", sums),) if params.amounts else ()
            for name, totals in (*trended, ("order", counts.astype("float64"))):
                now, before = totals[:, recent], totals[:, both] - totals[:, recent]
                out[f"{name}_trend_{params.trend_days}d"] = ratio(now - before, now + before, xp)
            out["order_slope_12m"] = monthly_slope(orders.days, orders.offsets, end=end)
    if "gaps" in groups:
        from kernels import gap_stats

        gaps = gap_stats(orders.days, orders.offsets)
        out["gap_mean_days"], out["gap_median_days"], out["gap_std_days"] = gaps.mean, gaps.median, gaps.std
    if "basket" in groups:
        returns = xp.bincount(returner, minlength=n)
        out["return_rate"] = ratio(returns, lines + returns, xp)
        if "discount" in columns:
            discounted = (to_array(transactions["discount"], "float64", na_value=0.0)[buy] > 0).astype("float64")
            out["discount_share"] = ratio(xp.bincount(buyer, weights=discounted, minlength=n), lines, xp)
    wanted = [c for c in params.value_spend if c in columns]
    if "basket" in groups and "category" in columns and "category" not in wanted:
        wanted.append("category")
    for column in wanted:
        long, owners = _value_spend(transactions, column, customer, n, buy, all_amounts, xp)
        if column in params.value_spend:
            spends[column] = long
        if column == "category" and "basket" in groups:
            out["distinct_categories"] = xp.bincount(owners, minlength=n)
    if params.value_spend:
        out["_gross"] = gross
    return frequency, orders


def _active_weeks(orders, events, customer, n, params, xp):
    """Distinct weeks (counted back from as-of) with an order or an event, in the last year;
    ``events`` is the event summary of the customers at positions ``customer``, or None."""
    week = (params.as_of_us - 1 - orders.ts) // (7 * DAY_US)
    recent = week < ACTIVE_WEEKS
    seen = xp.zeros(n * ACTIVE_WEEKS, dtype=bool)
    seen[orders.customer[recent] * ACTIVE_WEEKS + week[recent]] = True
    seen = seen.reshape(n, ACTIVE_WEEKS)
    if events is not None:
        seen |= event_weeks(events, customer, n, xp)
    return seen.sum(axis=1)


def _profile(frame, customers, params, xp):
    """Left-join the non-sensitive profile columns; timestamps become days since."""
    if customers is None or len(customers.columns) <= 1:
        return frame
    profile = customers.drop_duplicates(subset=[KEY])
    for column in params.profile_timestamps:
        if column in profile.columns:
            days = (params.as_of_us - to_array(profile[column], "float64", na_value=NAN)) / DAY_US
            stem = column.removesuffix("_ts").removesuffix("_at").removesuffix("_date")
            profile = profile.drop(columns=[column])
            # Attributes stamped at or after as-of did not exist yet.
            profile[f"days_since_{stem}"] = xp.where(days > 0, days, NAN).astype("float32")
    return joined_on(frame, profile, KEY)


_INTEGER_PREFIXES = ("orders_", "frequency", "distinct_categories", "active_weeks")


def value_shares(spend_rows, spend_values, spend, gross, top):
    """Share of gross spend per customer for each of the ``top`` values (NumPy, host side).

    ``spend_rows``/``spend_values``/``spend`` are a long table from :func:`partition_features`
    (one entry per customer and value; the values as text or a pandas categorical of text);
    ``gross`` is the features' ``_gross``. Returns an
    array of shape (customers, len(top)): 0 where a customer bought none of a value, NaN
    where the customer has no gross spend.
    """
    import numpy as np
    import pandas as pd

    # Values outside the top (and missing ones) get code -1; a categorical is recoded by its categories.
    slot = pd.Categorical(spend_values, categories=list(top)).codes.astype("int64")
    mine = slot >= 0
    totals = np.zeros((len(gross), len(top)))
    # (customer, value) pairs are distinct, so each cell is written once.
    totals[np.asarray(spend_rows)[mine], slot[mine]] = np.asarray(spend)[mine]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.asarray(gross)[:, None] == 0, np.nan, totals / np.asarray(gross)[:, None])


def _dtype(name, values):
    """int32 for counts, float32 for everything else (int32 holds any per-customer count)."""
    if name == "_gross":
        return "float64"
    if name.startswith(_INTEGER_PREFIXES) or (name.endswith("_count") and values.dtype.kind in "iu"):
        return "int32"
    return "float32"


def partition_features(transactions, events, customers, params: FeatureParams, *, event_summary=None):
    """Features of every customer with activity in this partition, one row each.

    Parameters
    ----------
    transactions : DataFrame (pandas or cudf)
        ``customer_key``, ``ts`` (int64 us), ``amount``, ``is_return`` and optional
        ``order_id``, ``category``, ``channel``, ``discount``; sorted by (customer_key, ts).
    events : DataFrame or None
        ``customer_key``, ``ts``, ``event_type``; sorted the same way.
    customers : DataFrame or None
        ``customer_key`` and non-sensitive profile columns.
    params : FeatureParams
    event_summary : DataFrame, optional
        The summary of ``events`` (:func:`summarise_events`), in their place: what the event
        features and active weeks are computed from, made here when not given.

    Returns
    -------
    features : DataFrame of the same backend, sorted by ``customer_key``
        One row per customer with an order line or an event before as-of. RFM scores and
        category and channel shares are added later, from global quantiles and rankings;
        ``_gross`` (gross spend, their denominator) is present when ``params.value_spend`` is.
        Without ``params.amounts`` the spend columns (``monetary_total``, ``aov``,
        ``spend_<w>d``, ``spend_trend_<t>d``) are left out.
    spends : dict of str to DataFrame
        For each column of ``params.value_spend``: ``row`` (position in ``features``),
        ``value``, ``spend`` and ``lines`` per customer and value (see :func:`value_shares`).
    """
    namespace = dataframe_namespace(transactions)
    xp = array_namespace(transactions)
    if event_summary is None and events is not None:
        event_summary = summarise_events(events, params.as_of_us)
    active = [transactions] + ([event_summary] if event_summary is not None else [])
    keys, rows = customers_of(namespace, active, xp)
    n = len(keys)
    out: dict = {}
    spends: dict = {}
    frequency, orders = _transaction_features(transactions, rows[0], n, params, xp, out, spends)
    with_events = rows[1] if event_summary is not None else None
    if event_summary is not None and "events" in params.groups:
        event_columns(event_summary, with_events, n, frequency, params.as_of_us, xp, out)
    if "activity" in params.groups:
        out["active_weeks"] = _active_weeks(orders, event_summary, with_events, n, params, xp)
    # One construction: inserting the columns one by one cost a third of a millisecond each.
    frame = namespace.DataFrame({KEY: keys, **{name: values.astype(_dtype(name, values)) for name, values in out.items()}})
    if "profile" in params.groups:
        frame = _profile(frame, customers, params, xp)
    return frame.sort_values(KEY).reset_index(drop=True), spends
