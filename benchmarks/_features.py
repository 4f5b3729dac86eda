"""The feature benchmark: one feature subset, computed by segscale and by the tools a user
would otherwise pick (pandas, polars, DuckDB), from the same generated data.

The subset (issue 4): RFM (recency_days, frequency, monetary_total, aov, tenure_days and the
1-5 scores from quintiles), orders and spend in the last 30/90/365 days, and the spend share
of the five categories with most purchase lines. Definitions are segscale's
(``docs/features.md``), written out again for each peer as a user of that tool would:

- rows strictly before as-of; a line with negative quantity is a return;
- an order is the purchase lines of one (customer, order_id); its time is the first line's;
- monetary_total = gross purchase spend - absolute value of returns;
- windows hold orders with ``as_of - w days <= ts``;
- quintile cuts are linear-interpolated quantiles over customers with orders, and a score is
  1 + the cuts strictly below the value (5 - that for recency).

The peers read the raw world (``transactions/*.parquet``, keyed by ``customer_id``).
segscale reads its customer-clustered store, whose customers are identity-resolved, so it
counts fewer customers; totals of orders and money are the same, and each case reports them
as its quality columns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

__all__ = [
    "AS_OF",
    "CATEGORIES_K",
    "WINDOWS",
    "prepare_world_and_store",
    "run_duckdb",
    "run_ingest_and_features",
    "run_pandas",
    "run_polars",
    "run_segscale_features",
]

AS_OF = date(2025, 12, 1)
WINDOWS = (30, 90, 365)
CATEGORIES_K = 5
QUINTILES = (0.2, 0.4, 0.6, 0.8)
_GROUPS = ("rfm", "windows", "categories")


def _world_config(world: Path, run_dir: Path):
    from engine.config import FeatureOptions, load_config

    config = load_config(world / "segscale.toml")
    return dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, output_dir=run_dir, as_of=AS_OF),
        features=FeatureOptions(groups=_GROUPS, windows=WINDOWS, top_categories=CATEGORIES_K),
    )


def prepare_world_and_store(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    """Shared data for the feature cases: a clean world (seed 0) and its ingested store."""
    from engine.backend import dask_client, resolve_backend
    from engine.ingest import ingest
    from engine.synth import WorldSpec, generate_world

    world = directory / "world"
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        generate_world(world, WorldSpec(customers=size, seed=0), client=client, overwrite=True)
        summary = ingest(_world_config(world, directory / "run"), client=client)
    return {"world": world, "store": summary.out_dir / "store"}


def _import(module: str) -> None:
    import importlib

    importlib.import_module(module)


def _warm(client, *modules: str) -> None:
    """Import the stage's modules in every worker before the clock starts: the peers import
    their libraries outside it too."""
    for module in modules:
        client.run(_import, module)


def _quality(customers: int, orders, monetary) -> dict:
    return {"customers": int(customers), "orders": int(np.sum(orders)), "monetary_total": round(float(np.sum(monetary)), 2)}


def _segscale_result(summary, setup: float) -> dict:
    """A segscale case's result, with quality totals read back from the features it wrote."""
    import pyarrow.parquet as pq

    table = pq.read_table(summary.out_dir, columns=["frequency", "monetary_total"])
    frequency, monetary = table["frequency"].to_numpy(), table["monetary_total"].to_numpy().astype("float64")
    return {
        "rows": {"customers": summary.customers},
        "setup_seconds": setup,
        "data_path": str(summary.out_dir),
        "quality": _quality(table.num_rows, frequency, monetary),
    }


def run_segscale_features(size, workdir, backend_name, workers, clock, data) -> dict:
    """segscale's feature stage on the customer-clustered store (ingest untimed)."""
    from engine.backend import dask_client, resolve_backend
    from engine.features import build_features

    config = _world_config(data["world"], workdir)
    started = time.perf_counter()
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        _warm(client, "engine.features")
        setup = time.perf_counter() - started
        with clock:
            summary = build_features(
                data["store"], workdir / "features", as_of=AS_OF, options=config.features,
                backend_name=backend_name, client=client,
            )  # fmt: skip
    return _segscale_result(summary, setup)


def run_ingest_and_features(size, workdir, backend_name, workers, clock, data) -> dict:
    """segscale from the raw world: ingest (validation, identity, store) then features."""
    from engine.backend import dask_client, resolve_backend
    from engine.features import build_features
    from engine.ingest import ingest

    config = _world_config(data["world"], workdir / "run")
    started = time.perf_counter()
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        _warm(client, "engine.ingest", "engine.features")
        setup = time.perf_counter() - started
        with clock:
            ingested = ingest(config, client=client)
            summary = build_features(
                ingested.out_dir / "store", workdir / "features", as_of=AS_OF, options=config.features,
                backend_name=backend_name, client=client,
            )  # fmt: skip
    return _segscale_result(summary, setup)


def _scores(values: np.ndarray, buyer: np.ndarray, reverse: bool) -> np.ndarray:
    """1-5 scores from linear quintile cuts over buyers; 0 for customers without orders."""
    cuts = np.quantile(values[buyer], QUINTILES) if buyer.any() else np.array([])
    below = np.searchsorted(cuts, values, side="left")
    return np.where(buyer, 5 - below if reverse else 1 + below, 0).astype("int8")


# ---------------------------------------------------------------------------------------
# pandas


def run_pandas(size, workdir, backend_name, workers, clock, data) -> dict:
    """pandas: read the raw Parquet, groupby per order then per customer."""
    import pandas as pd

    with clock:
        as_of = pd.Timestamp(AS_OF, tz="UTC")
        lines = pd.read_parquet(
            data["world"] / "transactions", columns=["customer_id", "ts", "order_id", "quantity", "amount", "category"]
        )
        lines = lines[lines["ts"] < as_of]
        is_return = lines["quantity"] < 0
        bought, back = lines[~is_return], lines[is_return]
        orders = bought.groupby(["customer_id", "order_id"], sort=False).agg(ts=("ts", "min"), spend=("amount", "sum"))
        orders = orders.reset_index()
        per = orders.groupby("customer_id").agg(
            frequency=("ts", "size"), first=("ts", "min"), last=("ts", "max"), gross=("spend", "sum")
        )
        customers = pd.Index(lines["customer_id"].unique(), name="customer_id")
        per = per.reindex(customers)
        per["frequency"] = per["frequency"].fillna(0).astype("int32")
        per["gross"] = per["gross"].fillna(0.0)
        returned = back["amount"].abs().groupby(back["customer_id"]).sum().reindex(customers, fill_value=0.0)
        day = pd.Timedelta(days=1)
        out = pd.DataFrame(index=customers)
        out["recency_days"] = (as_of - per["last"]) / day
        out["frequency"] = per["frequency"]
        out["monetary_total"] = per["gross"] - returned
        out["aov"] = per["gross"] / per["frequency"].where(per["frequency"] > 0)
        out["tenure_days"] = (as_of - per["first"]) / day
        for window in WINDOWS:
            recent = orders[orders["ts"] >= as_of - window * day].groupby("customer_id")["spend"].agg(["size", "sum"])
            out[f"orders_{window}d"] = recent["size"].reindex(customers, fill_value=0).astype("int32")
            out[f"spend_{window}d"] = recent["sum"].reindex(customers, fill_value=0.0)
        top = bought["category"].value_counts().sort_index().sort_values(ascending=False, kind="stable").index[:CATEGORIES_K]
        spend = bought.pivot_table(index="customer_id", columns="category", values="amount", aggfunc="sum", observed=True)
        for category in top:
            out[f"category_share_{category}"] = (spend[category].fillna(0.0) / per["gross"].where(per["gross"] > 0)).reindex(customers)
        buyer = (out["frequency"] > 0).to_numpy()
        out["r_score"] = _scores(out["recency_days"].to_numpy(), buyer, reverse=True)
        out["f_score"] = _scores(out["frequency"].to_numpy(dtype="float64"), buyer, reverse=False)
        out["m_score"] = _scores(out["monetary_total"].to_numpy(), buyer, reverse=False)
        out.reset_index().to_parquet(workdir / "features.parquet", index=False)
    return {
        "rows": {"customers": len(out)},
        "quality": _quality(len(out), out["frequency"], out["monetary_total"]),
        "data_path": str(workdir / "features.parquet"),
    }


# ---------------------------------------------------------------------------------------
# polars


def run_polars(size, workdir, backend_name, workers, clock, data) -> dict:
    """polars: one lazy query over the raw Parquet, collected once."""
    from datetime import datetime, timezone

    import polars as pl

    with clock:
        as_of = datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=timezone.utc)
        lines = (
            pl.scan_parquet(str(data["world"] / "transactions" / "*.parquet"))
            .select("customer_id", "ts", "order_id", "quantity", "amount", "category")
            .filter(pl.col("ts") < as_of)
        )
        bought = lines.filter(pl.col("quantity") >= 0)
        top = (
            bought.group_by("category").len().sort(["len", "category"], descending=[True, False]).head(CATEGORIES_K)
            .collect()["category"].to_list()
        )  # fmt: skip
        orders = bought.group_by("customer_id", "order_id").agg(pl.col("ts").min(), pl.col("amount").sum().alias("spend"))
        day_us = 86_400_000_000
        since = (pl.lit(as_of) - pl.col("ts")).dt.total_microseconds() / day_us
        per = orders.group_by("customer_id").agg(
            pl.len().alias("frequency"),
            since.min().alias("recency_days"),
            since.max().alias("tenure_days"),
            pl.col("spend").sum().alias("gross"),
            *[(pl.col("ts") >= as_of - timedelta(days=w)).sum().alias(f"orders_{w}d") for w in WINDOWS],
            *[pl.col("spend").filter(pl.col("ts") >= as_of - timedelta(days=w)).sum().alias(f"spend_{w}d") for w in WINDOWS],
        )
        shares = bought.group_by("customer_id").agg(
            *[pl.col("amount").filter(pl.col("category") == c).sum().alias(f"category_spend_{c}") for c in top]
        )
        returned = lines.filter(pl.col("quantity") < 0).group_by("customer_id").agg(pl.col("amount").abs().sum().alias("returned"))
        customers = lines.select("customer_id").unique()
        out = (
            customers.join(per, on="customer_id", how="left")
            .join(returned, on="customer_id", how="left")
            .join(shares, on="customer_id", how="left")
            .with_columns(pl.col("frequency").fill_null(0), pl.col("gross").fill_null(0.0), pl.col("returned").fill_null(0.0))
            .with_columns(
                (pl.col("gross") - pl.col("returned")).alias("monetary_total"),
                (pl.col("gross") / pl.when(pl.col("frequency") > 0).then(pl.col("frequency"))).alias("aov"),
                *[pl.col(f"orders_{w}d").fill_null(0) for w in WINDOWS],
                *[pl.col(f"spend_{w}d").fill_null(0.0) for w in WINDOWS],
                *[
                    (pl.col(f"category_spend_{c}").fill_null(0.0) / pl.when(pl.col("gross") > 0).then(pl.col("gross"))).alias(f"category_share_{c}")
                    for c in top
                ],
            )
            .drop("gross", "returned", *[f"category_spend_{c}" for c in top])
            .collect()
        )
        buyer = (out["frequency"] > 0).to_numpy()
        out = out.with_columns(
            pl.Series("r_score", _scores(out["recency_days"].to_numpy(), buyer, reverse=True)),
            pl.Series("f_score", _scores(out["frequency"].to_numpy().astype("float64"), buyer, reverse=False)),
            pl.Series("m_score", _scores(out["monetary_total"].to_numpy(), buyer, reverse=False)),
        )
        out.write_parquet(workdir / "features.parquet")
    return {
        "rows": {"customers": out.height},
        "quality": _quality(out.height, out["frequency"].to_numpy(), out["monetary_total"].to_numpy()),
        "data_path": str(workdir / "features.parquet"),
    }


# ---------------------------------------------------------------------------------------
# DuckDB


def run_duckdb(size, workdir, backend_name, workers, clock, data) -> dict:
    """DuckDB: SQL over the raw Parquet; quintiles with quantile_cont (linear)."""
    import duckdb

    source = str(data["world"] / "transactions" / "*.parquet")
    windows = ",\n".join(
        f"count(*) FILTER (WHERE ts >= TIMESTAMPTZ '{AS_OF}' - INTERVAL {w} DAY) AS orders_{w}d, "
        f"coalesce(sum(spend) FILTER (WHERE ts >= TIMESTAMPTZ '{AS_OF}' - INTERVAL {w} DAY), 0) AS spend_{w}d"
        for w in WINDOWS
    )
    with clock, contextlib.closing(duckdb.connect()) as connection:
        connection.execute(f"SET threads = {workers}")
        connection.execute(
            f"CREATE TEMP VIEW lines AS SELECT customer_id, ts, order_id, quantity, amount, category "
            f"FROM read_parquet('{source}') WHERE ts < TIMESTAMPTZ '{AS_OF} 00:00:00+00'"
        )
        top = [row[0] for row in connection.execute(
            f"SELECT category FROM lines WHERE quantity >= 0 GROUP BY category ORDER BY count(*) DESC, category LIMIT {CATEGORIES_K}"
        ).fetchall()]  # fmt: skip
        shares = ", ".join(
            f"coalesce(sum(amount) FILTER (WHERE category = '{c}'), 0) / nullif(sum(amount), 0) AS category_share_{c}" for c in top
        )
        day = "86400000000.0"
        connection.execute(f"""
            CREATE TEMP TABLE features AS
            WITH orders AS (
                SELECT customer_id, order_id, min(ts) AS ts, sum(amount) AS spend
                FROM lines WHERE quantity >= 0 GROUP BY customer_id, order_id
            ), per AS (
                SELECT customer_id, count(*) AS frequency, sum(spend) AS gross,
                    date_diff('microsecond', max(ts), TIMESTAMPTZ '{AS_OF}') / {day} AS recency_days,
                    date_diff('microsecond', min(ts), TIMESTAMPTZ '{AS_OF}') / {day} AS tenure_days,
                    {windows}
                FROM orders GROUP BY customer_id
            ), shares AS (
                SELECT customer_id, {shares} FROM lines WHERE quantity >= 0 GROUP BY customer_id
            ), returned AS (
                SELECT customer_id, sum(abs(amount)) AS returned FROM lines WHERE quantity < 0 GROUP BY customer_id
            ), customers AS (SELECT DISTINCT customer_id FROM lines)
            SELECT c.customer_id, p.recency_days, coalesce(p.frequency, 0) AS frequency,
                coalesce(p.gross, 0) - coalesce(r.returned, 0) AS monetary_total,
                p.gross / nullif(p.frequency, 0) AS aov, p.tenure_days,
                {", ".join(f"coalesce(p.orders_{w}d, 0) AS orders_{w}d, coalesce(p.spend_{w}d, 0) AS spend_{w}d" for w in WINDOWS)},
                {", ".join(f"s.category_share_{c}" for c in top)}
            FROM customers c LEFT JOIN per p USING (customer_id) LEFT JOIN returned r USING (customer_id)
                LEFT JOIN shares s USING (customer_id)
        """)  # fmt: skip
        cuts = {}
        for name in ("recency_days", "frequency", "monetary_total"):
            cuts[name] = connection.execute(
                f"SELECT quantile_cont({name}, [0.2, 0.4, 0.6, 0.8]) FROM features WHERE frequency > 0"
            ).fetchone()[0]
        scores = []
        for score, name, reverse in (("r_score", "recency_days", True), ("f_score", "frequency", False), ("m_score", "monetary_total", False)):
            below = " + ".join(f"({name} > {cut})::INTEGER" for cut in cuts[name])
            scores.append(f"CASE WHEN frequency > 0 THEN {'5 - ' if reverse else '1 + '}({below}) ELSE 0 END::TINYINT AS {score}")
        target = workdir / "features.parquet"
        connection.execute(f"COPY (SELECT *, {', '.join(scores)} FROM features) TO '{target}' (FORMAT parquet)")
        customers, orders, monetary = connection.execute(
            "SELECT count(*), sum(frequency), sum(monetary_total) FROM features"
        ).fetchone()
    return {
        "rows": {"customers": customers},
        "quality": _quality(customers, orders, monetary),
        "data_path": str(target),
    }
