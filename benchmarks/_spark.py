"""Spark peers (issue 8, 2c): the feature subset, k-means and the random forest in Spark MLlib,
local mode, written as a PySpark user would, on the same data as the other peers.

Each run starts its own ``local[workers]`` session in a fresh JVM, outside the clock, and
warms it with a small shuffle query (the first query pays for class loading and code
generation, as a Dask case's workers import their modules before the clock). The JVM is
ended after the run, so its memory is not charged to the cases that follow and the driver
memory setting always takes effect. Start-up is reported as ``setup_seconds``. Input
matrices are loaded and cached in Spark before the clock, as the scikit-learn peers load
theirs; MLlib uses its Java BLAS where the machine has no native one.

- ``features-spark`` computes the subset of ``benchmarks/_features.py`` (its docstring has
  the definitions) with the DataFrame API from the raw world's Parquet, quintiles with the
  exact, linearly interpolated ``percentile``, and writes a Parquet directory. Its quality
  columns are the totals (customers, orders, money) the other feature peers report.
- ``kmeans-spark`` fits ``pyspark.ml.clustering.KMeans`` on every row of the k-means cases'
  prepared matrix, then predicts every row. Same k, max_iter, tol and seed; but Spark
  initialises with k-means|| (its default, the scalable variant of k-means++) and fits once,
  where scikit-learn uses k-means++ with ``n_init`` restarts, and Spark's ``tol`` bounds how
  far every centre moved, where scikit-learn's is relative to the data's variance. Inertia
  (and, when scikit-learn ran, ``inertia_vs_sklearn`` and ``ari_vs_sklearn``) is computed
  from its labels and centres as for the other k-means cases.
- ``rf-spark`` fits ``pyspark.ml.classification.RandomForestClassifier`` on the scikit-learn
  peer's train matrix and scores its test matrix. Same trees, depth, features per split,
  minimum rows per leaf and seed; class weights are balanced over the whole train split
  (``weightCol``; Spark has no per-bootstrap ``balanced_subsample``) and continuous features
  are split on 32 bins (Spark's ``maxBins``), where scikit-learn searches every threshold.
  Quality is the test AUC, and ``auc_diff_vs_sklearn`` when scikit-learn ran.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import _features, _propensity, _segments

__all__ = [
    "FOREST_SETTINGS",
    "KMEANS_SETTINGS",
    "driver_memory",
    "local_spark",
    "run_spark_features",
    "run_spark_forest",
    "run_spark_kmeans",
]

KMEANS_SETTINGS = (
    f"k={_segments.K}, k-means|| (Spark's default; one run, no n_init), tol={_segments._TOL:g} (centre shift), "
    f"max_iter={_segments._MAX_ITER}, seed={_segments._SEED}"
)
FOREST_SETTINGS = (
    f"numTrees={_propensity.OPTIONS.n_estimators}, maxDepth={_propensity.OPTIONS.max_depth}, "
    f"featureSubsetStrategy=int({_propensity.OPTIONS.max_features} x features), "
    f"minInstancesPerNode={_propensity.OPTIONS.min_samples_leaf}, class weights balanced over the train split, "
    f"maxBins=32 (Spark's default), seed={_propensity._SEED}"
)
_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


def driver_memory() -> str:
    """JVM heap for the local driver (which is also the executor): half the machine's memory,
    1 to 32 GiB, leaving the rest to the OS, its page cache and this Python process."""
    import psutil

    return f"{min(32, max(1, psutil.virtual_memory().total // 2**31))}g"


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).is_file():
        raise RuntimeError("Spark needs a Java runtime (17 or later): none in JAVA_HOME or on PATH")
    return java


def _end_jvm() -> None:
    """Stop the JVM PySpark launched; ``SparkSession.stop`` leaves it running for the next."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    with contextlib.suppress(Exception):  # the connection may already be closed
        gateway.shutdown()
    if gateway.proc is not None:
        gateway.proc.stdin.close()  # the gateway server exits when its stdin closes
        gateway.proc.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None


@contextlib.contextmanager
def local_spark(workers: int, scratch: Path, memory: str | None = None):
    """A warmed-up ``local[workers]`` SparkSession in a JVM of its own, ended on exit.

    Parameters
    ----------
    workers : int
        Task threads (cores) Spark uses.
    scratch : path
        Directory for Spark's spill and shuffle files and its logging configuration.
    memory : str, optional
        Driver heap, e.g. ``"4g"``; default :func:`driver_memory`.

    Yields
    ------
    pyspark.sql.SparkSession

    Raises
    ------
    RuntimeError
        No Java runtime is found.
    """
    from pyspark.sql import SparkSession

    _java()
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "log4j2.properties").write_text(_LOG4J)
    builder = (
        SparkSession.builder.master(f"local[{workers}]")
        .appName("segscale-bench")
        .config("spark.driver.memory", memory or driver_memory())
        .config("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile={scratch / 'log4j2.properties'}")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.local.dir", str(scratch))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # The default of 200 is sized for clusters; on a few local cores it doubles the time of
        # small runs (measured at 1.5k customers on 2 cores), and adaptive execution still
        # coalesces partitions that come out small.
        .config("spark.sql.shuffle.partitions", str(8 * workers))
    )
    try:
        with warnings.catch_warnings():
            # PySpark warns about pandas >= 3 on start-up; these cases never convert to pandas.
            warnings.filterwarnings(
                "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
            )
            spark = builder.getOrCreate()
        spark.range(10_000, numPartitions=workers).selectExpr("id % 7 AS g").groupBy("g").count().collect()
        yield spark
    finally:
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
        _end_jvm()


# ---------------------------------------------------------------------------------------
# features


def _feature_frame(spark, transactions: Path):
    """The feature subset per customer, without the RFM scores, as a lazy DataFrame (the top
    categories, whose shares are columns, are found with a query of their own)."""
    from pyspark.sql import functions as F

    as_of = datetime(_features.AS_OF.year, _features.AS_OF.month, _features.AS_OF.day, tzinfo=timezone.utc)
    as_of_us = F.unix_micros(F.lit(as_of))
    lines = (
        spark.read.parquet(str(transactions))
        .select("customer_id", "ts", "order_id", "quantity", "amount", "category")
        .where(F.col("ts") < F.lit(as_of))
    )
    bought = lines.where(F.col("quantity") >= 0)
    top = [
        row["category"]
        for row in bought.groupBy("category")
        .count()
        .orderBy(F.desc("count"), "category")
        .limit(_features.CATEGORIES_K)
        .collect()
    ]
    orders = bought.groupBy("customer_id", "order_id").agg(F.min("ts").alias("ts"), F.sum("amount").alias("spend"))
    days_since = (as_of_us - F.unix_micros("ts")) / 86_400_000_000
    in_window = {w: F.col("ts") >= F.lit(as_of) - F.expr(f"INTERVAL {w} DAYS") for w in _features.WINDOWS}
    per = orders.groupBy("customer_id").agg(
        F.count("*").alias("frequency"),
        F.sum("spend").alias("gross"),
        F.min(days_since).alias("recency_days"),
        F.max(days_since).alias("tenure_days"),
        *[F.count_if(in_window[w]).alias(f"orders_{w}d") for w in _features.WINDOWS],
        *[F.sum(F.when(in_window[w], F.col("spend"))).alias(f"spend_{w}d") for w in _features.WINDOWS],
    )
    shares = bought.groupBy("customer_id").agg(
        *[F.sum(F.when(F.col("category") == c, F.col("amount"))).alias(f"category_spend_{c}") for c in top]
    )
    returned = lines.where(F.col("quantity") < 0).groupBy("customer_id").agg(F.sum(F.abs("amount")).alias("returned"))
    gross = F.coalesce(F.col("gross"), F.lit(0.0))
    frequency = F.coalesce(F.col("frequency"), F.lit(0))
    features = (
        lines.select("customer_id").distinct()
        .join(per, "customer_id", "left").join(returned, "customer_id", "left").join(shares, "customer_id", "left")
        .select(
            "customer_id",
            "recency_days",
            frequency.alias("frequency"),
            (gross - F.coalesce(F.col("returned"), F.lit(0.0))).alias("monetary_total"),
            (F.col("gross") / F.when(frequency > 0, frequency)).alias("aov"),
            "tenure_days",
            *[
                column
                for w in _features.WINDOWS
                for column in (
                    F.coalesce(F.col(f"orders_{w}d"), F.lit(0)).alias(f"orders_{w}d"),
                    F.coalesce(F.col(f"spend_{w}d"), F.lit(0.0)).alias(f"spend_{w}d"),
                )
            ],
            *[
                (F.coalesce(F.col(f"category_spend_{c}"), F.lit(0.0)) / F.when(gross > 0, gross)).alias(f"category_share_{c}")
                for c in top
            ],
        )
    )  # fmt: skip
    return features


def _score_columns(features):
    """RFM scores: 1 + the buyers' linear quintile cuts strictly below the value (5 - that for
    recency); 0 for customers without orders."""
    from pyspark.sql import functions as F

    measures = ("recency_days", "frequency", "monetary_total")
    cuts = (
        features.where(F.col("frequency") > 0)
        .agg(*[F.percentile(F.col(name).cast("double"), list(_features.QUINTILES)).alias(name) for name in measures])
        .first()
    )
    scores = []
    for score, name, reverse in (
        ("r_score", "recency_days", True),
        ("f_score", "frequency", False),
        ("m_score", "monetary_total", False),
    ):
        below = sum((F.col(name) > cut).cast("int") for cut in (cuts[name] or []))
        value = (F.lit(5) - below) if reverse else (F.lit(1) + below)
        scores.append(F.when(F.col("frequency") > 0, value).otherwise(0).cast("tinyint").alias(score))
    return scores


def run_spark_features(size, workdir, backend_name, workers, clock, data) -> dict:
    """Spark: the feature subset from the raw world's Parquet, written as a Parquet directory."""
    import pyarrow.parquet as pq

    target = workdir / "features"
    started = time.perf_counter()
    with local_spark(workers, workdir / "spark") as spark:
        setup = time.perf_counter() - started
        with clock:
            features = _feature_frame(spark, data["world"] / "transactions")
            features = features.cache()  # read by the quintiles and by the write
            features.select("*", *_score_columns(features)).write.parquet(str(target))
            features.unpersist()
    table = pq.read_table(target, columns=["frequency", "monetary_total"])
    return {
        "rows": {"customers": table.num_rows},
        "setup_seconds": setup,
        "quality": _features._quality(
            table.num_rows, table["frequency"].to_numpy(), table["monetary_total"].to_numpy()
        ),
        "data_path": str(target),
    }


# ---------------------------------------------------------------------------------------
# k-means and the random forest: prepared matrices


def _matrix_frame(spark, matrix: np.ndarray, path: Path, **extra: np.ndarray):
    """The matrix as a cached DataFrame of (row, features vector, ``extra`` columns), in as
    many parts as Spark has cores: written to Parquet and assembled as a Spark user would
    load a feature table. Built and counted here, before any clock starts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.feature import VectorAssembler

    columns = [f"x{j}" for j in range(matrix.shape[1])]
    table = pa.table(
        {"row": np.arange(matrix.shape[0]), **{name: matrix[:, j] for j, name in enumerate(columns)}, **extra}
    )
    pq.write_table(table, path)
    frame = VectorAssembler(inputCols=columns, outputCol="features").transform(spark.read.parquet(str(path)))
    frame = frame.select("row", "features", *extra).repartition(spark.sparkContext.defaultParallelism).cache()
    frame.count()
    return frame


def _in_row_order(frame, column: str) -> np.ndarray:
    return frame.orderBy("row").select(column).toArrow()[column].to_numpy()


# ---------------------------------------------------------------------------------------
# k-means


def run_spark_kmeans(size, workdir, backend_name, workers, clock, data) -> dict:
    """Spark MLlib: ``KMeans(...).fit`` on every row, then ``transform`` (predict) of every row."""
    from pyspark.ml.clustering import KMeans

    matrix = np.load(data["matrix"])
    started = time.perf_counter()
    with local_spark(workers, workdir / "spark") as spark:
        frame = _matrix_frame(spark, matrix, workdir / "matrix.parquet")
        setup = time.perf_counter() - started
        with clock:
            model = KMeans(
                k=_segments.K, initMode="k-means||", maxIter=_segments._MAX_ITER, tol=_segments._TOL,
                seed=_segments._SEED, featuresCol="features",
            ).fit(frame)  # fmt: skip
            predictions = model.transform(frame).select("row", "prediction").cache()
            predictions.count()  # materialises the labels of every row
        labels = _in_row_order(predictions, "prediction").astype(np.int64)
        iterations = int(model.summary.numIter)
        centres = np.array([np.asarray(centre) for centre in model.clusterCenters()])
    inertia = _segments._inertia(matrix, labels, centres, data["rows_per_part"])
    quality = {"inertia": round(inertia, 2), "iterations": iterations}
    reference = data.get("sklearn")
    if reference is not None:
        from sklearn.metrics import adjusted_rand_score

        quality["inertia_vs_sklearn"] = round(inertia / reference["inertia"], 5)
        quality["ari_vs_sklearn"] = round(float(adjusted_rand_score(reference["labels"], labels)), 4)
    return {"rows": {"customers": int(labels.size)}, "setup_seconds": setup, "quality": quality}


# ---------------------------------------------------------------------------------------
# random forest


def run_spark_forest(size, workdir, backend_name, workers, clock, data) -> dict:
    """Spark MLlib: ``RandomForestClassifier(...).fit`` on the train matrix, the probability of
    the test matrix."""
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.functions import vector_to_array

    options = _propensity.OPTIONS
    train_matrix, train_labels = np.load(data["train_matrix"]), np.load(data["train_labels"]).astype(np.float64)
    test_matrix, test_labels = np.load(data["test_matrix"]), np.load(data["test_labels"])
    # scikit-learn's "balanced_subsample" weighs classes within each bootstrap sample; Spark can
    # only weigh rows, so the weights are "balanced" over the whole train split.
    counts = np.bincount(train_labels.astype(np.int64), minlength=2)
    weights = (len(train_labels) / (2 * np.maximum(counts, 1)))[train_labels.astype(np.int64)]
    # scikit-learn draws int(max_features x features) per split; a Spark fraction would round up.
    per_split = max(1, int(options.max_features * train_matrix.shape[1]))
    started = time.perf_counter()
    with local_spark(workers, workdir / "spark") as spark:
        train = _matrix_frame(spark, train_matrix, workdir / "train.parquet", label=train_labels, weight=weights)
        test = _matrix_frame(spark, test_matrix, workdir / "test.parquet")
        setup = time.perf_counter() - started
        with clock:
            model = RandomForestClassifier(
                numTrees=options.n_estimators, maxDepth=options.max_depth, featureSubsetStrategy=str(per_split),
                minInstancesPerNode=options.min_samples_leaf, weightCol="weight", seed=_propensity._SEED,
            ).fit(train)  # fmt: skip
            scored = model.transform(test).select("row", vector_to_array("probability")[1].alias("score")).cache()
            scored.count()  # materialises the score of every test row
        scores = _in_row_order(scored, "score").astype(np.float64)
    auc = _propensity._auc(test_labels, scores)
    return {
        "rows": {"train": len(train_labels), "test": len(test_labels)},
        "setup_seconds": setup,
        "quality": _propensity._quality(auc, data, features_per_split=per_split),
    }
