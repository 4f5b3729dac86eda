"""Quality against the synthetic world's truth (issues 5 and 6): propensity, lifetime value
and segments at a size, measured where the world knows the answer.

Shared data (``future-world``, built once per size, untimed): a world of ``size`` people
(seed 0, 1% dirt) whose next 90 days are simulated into ``truth/``, its store, the features
as of its end, and a table of every customer key that belongs to one person, with that
person's truth and purchase history (order grain: frequency, recency, T and the sum of the
repeat purchases' days since the first).

- ``propensity-truth``: ``train_propensity`` with the stage's defaults, then
  ``score_propensity`` of the features at the world's end (timed). Quality on what happened
  in the next 90 days:
  - ``auc``, ``ece``: of the scores;
  - ``oracle_auc``: of the truth's ``p_purchase_90d``, which knows whether each person is
    still alive and their current purchase rate; no history shows either;
  - ``history_bayes_auc``: of :func:`history_purchase_probability`, what an observer who knows
    the generating model and each customer's archetype computes from purchase history: the
    best any model of purchase history alone can do;
  - ``gap_to_oracle``, ``gap_to_history_bayes``: those AUCs minus the model's.
- ``propensity-truth-3-origins``: the same with ``[propensity] origins = 3``.
- ``value-truth``: ``estimate_value`` (MBG/NBD, which the world follows, order grain,
  90 days) timed. Then, untimed, an MBG/NBD fit on the customers of each archetype whose rate
  does not decline: each parameter's relative error against the generating one, and the
  largest distance from it in the fit's standard errors; and the same for a fit on 100,000
  customers drawn from the model itself (``simulate_btyd_summaries``), which tests the
  estimator alone.
- ``segments-truth``: ``build_segments`` with the stage's defaults (k chosen by silhouette)
  timed. Then, untimed, the adjusted Rand index against the planted archetypes of: those
  segments (``ari_vs_archetypes``), segments with k fixed at the number of archetypes
  (``ari_vs_archetypes_k_archetypes``) and the classic RFM grid (``rfm_grid_ari_vs_archetypes``);
  the ARI of the default run and one with the next seed (``ari_between_seeds``); and
  ``supervised_ari_vs_archetypes``, of a gradient-boosting classifier that is *told* the
  archetypes, predicting them out of fold from the very matrix k-means sees: about the best
  any partition of those features can do, which bounds what an unsupervised one can.
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ESTIMATOR_CHECK_CUSTOMERS",
    "history_purchase_probability",
    "prepare_future_world",
    "run_propensity_truth",
    "run_propensity_truth_3_origins",
    "run_segments_truth",
    "run_value_truth",
]

HORIZON_DAYS = 90
ESTIMATOR_CHECK_CUSTOMERS = 100_000
_ESTIMATOR_CHECK_PARAMS = {"r": 0.8, "alpha": 20.0, "a": 1.2, "b": 6.0}
_DECLINE_GRID = 64  # points of the uniform prior on a declining archetype's decay rate
# Customers the supervised reference learns from, out of fold (5 folds).
SUPERVISED_CUSTOMERS = 50_000
_MIN_PER_ARCHETYPE = 50


def _purchase_history(store: Path, as_of_day: int) -> pd.DataFrame:
    """Order-grain summaries as of ``as_of_day`` and the sum of repeat days since the first."""
    from engine.ingest import read_store_table
    from engine.value import purchase_days, summarise

    partitions = json.loads((store / "_store.json").read_text())["partitions"]
    columns = ["customer_key", "ts", "amount", "is_return", "order_id"]
    parts = []
    for number in range(int(partitions)):
        table = read_store_table(store, "transactions", number, columns, as_of_day * 86_400_000_000)
        days = purchase_days(table.to_pandas(), "order")
        summary = summarise(days, as_of_day, grain="order")
        since_first = days["day"] - days.groupby("customer_key")["day"].transform("min")
        summary["repeat_days_sum"] = since_first.groupby(days["customer_key"]).sum().reindex(summary["customer_key"]).to_numpy()
        parts.append(summary)
    return pd.concat(parts, ignore_index=True)


def prepare_future_world(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    """Shared data for the quality cases (see the module docstring)."""
    from engine.backend import dask_client, resolve_backend
    from engine.config import load_config
    from engine.features import build_features
    from engine.ingest import ingest
    from engine.synth import WorldSpec, generate_world, truth_by_customer_key

    world = directory / "world"
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        generate_world(world, WorldSpec(customers=size, seed=0, dirt=0.01, simulate_future=True), client=client,
                       overwrite=True)  # fmt: skip
        config = load_config(world / "segscale.toml")
        config = dataclasses.replace(config, run=dataclasses.replace(config.run, output_dir=directory / "run"))
        summary = ingest(config, client=client)
        store = summary.out_dir / "store"
        build_features(store, directory / "features", as_of=config.run.as_of, options=config.features,
                       backend_name=backend_name, client=client)  # fmt: skip
    as_of_day = (config.run.as_of - pd.Timestamp("1970-01-01").date()).days
    columns = ["archetype", "p_purchase_90d", "purchased_next_90d"]
    truth = truth_by_customer_key(world, summary.out_dir / "identity" / "mapping", columns)
    truth["archetype"] = truth["archetype"].astype(str)
    truth = truth.merge(_purchase_history(store, as_of_day), on="customer_key")
    truth.to_parquet(directory / "truth.parquet", index=False)
    return {"store": store, "features": directory / "features", "truth": directory / "truth.parquet",
            "as_of": config.run.as_of, "seed": config.run.seed, "feature_options": config.features}  # fmt: skip


def history_purchase_probability(history: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """P(a purchase in (T, T + horizon]) from purchase history, under the world's own model.

    ``history`` has ``archetype`` (name), ``frequency``, ``recency``, ``T`` (days, order grain)
    and ``repeat_days_sum``. Each archetype is an MBG/NBD buyer whose rate may decay as
    ``lambda exp(-d t)`` from the first purchase with d uniform on the archetype's range; the
    posterior integrates the rate (Gamma, closed form), dropout (Beta, closed form) and d
    (a grid). Without decay it is the MBG/NBD conditional probability.
    """
    from scipy.special import betaln, gammaln

    from engine.synth import ARCHETYPES

    probability = np.full(len(history), np.nan)
    for archetype in ARCHETYPES:
        rows = (history["archetype"] == archetype.name).to_numpy()
        if not rows.any():
            continue
        x, tx, T, days_sum = (history.loc[rows, c].to_numpy(dtype="float64")
                              for c in ("frequency", "recency", "T", "repeat_days_sum"))  # fmt: skip
        r, alpha = archetype.rate_shape, archetype.rate_shape / archetype.rate_mean
        a, b = archetype.dropout_a, archetype.dropout_b
        low, high = archetype.decline_per_day
        decays = np.linspace(low, high, _DECLINE_GRID) if high > 0 else np.zeros(1)
        log_alive, log_dropped, buys = [], [], []
        for decay in decays:

            def exposure(t, decay=decay):  # expected purchases in [0, t] at unit rate
                return t if decay == 0 else -np.expm1(-decay * t) / decay

            # Terms both branches share: the Gamma integral's constant and the repeats' rate.
            shared = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - decay * days_sum - betaln(a, b)
            so_far = alpha + exposure(T)
            log_alive.append(shared + betaln(a, b + x + 1) - (r + x) * np.log(so_far))
            log_dropped.append(shared + betaln(a + 1, b + x) - (r + x) * np.log(alpha + exposure(tx)))
            more = exposure(T + horizon_days) - exposure(T)
            buys.append(-np.expm1((r + x) * np.log(so_far / (so_far + more))))
        log_alive, log_dropped, buys = np.array(log_alive), np.array(log_dropped), np.array(buys)
        top = np.maximum(log_alive, log_dropped).max(axis=0)
        alive, dropped = np.exp(log_alive - top), np.exp(log_dropped - top)
        probability[rows] = (alive * buys).sum(axis=0) / (alive + dropped).sum(axis=0)
    return probability


def run_propensity_truth(size, workdir, backend_name, workers, clock, data, *, origins: int = 1) -> dict:
    """Train with the stage's defaults (and ``origins``), score the features at the end."""
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    from engine.backend import dask_client, resolve_backend
    from engine.config import PropensityOptions
    from engine.propensity import calibration_table, score_propensity, train_propensity

    options = PropensityOptions(origins=origins)
    with dask_client(resolve_backend(backend_name), workers=workers) as client, clock:
        trained = train_propensity(data["store"], workdir / "model", as_of=data["as_of"], options=options,
                                   feature_options=data["feature_options"], seed=data["seed"],
                                   backend_name=backend_name, client=client)  # fmt: skip
        scored = score_propensity(workdir / "model", data["features"], workdir / "scores", client=client)
    truth = pd.read_parquet(data["truth"])
    scores = pq.read_table(workdir / "scores", columns=["customer_key", "score"]).to_pandas()
    joined = truth.merge(scores, on="customer_key")
    outcome = joined["purchased_next_90d"].astype(int).to_numpy()
    auc = roc_auc_score(outcome, joined["score"])
    oracle = roc_auc_score(outcome, joined["p_purchase_90d"])
    history = roc_auc_score(outcome, history_purchase_probability(joined, HORIZON_DAYS))
    return {
        "rows": {"customers": scored.customers},
        "data_path": str(workdir),
        "quality": {
            "auc": round(auc, 4),
            "ece": round(calibration_table(outcome, joined["score"].to_numpy())[1], 4),
            "oracle_auc": round(oracle, 4),
            "history_bayes_auc": round(history, 4),
            "gap_to_oracle": round(oracle - auc, 4),
            "gap_to_history_bayes": round(history - auc, 4),
            "test_auc": round(trained.metrics["roc_auc"], 4),
            "test_ece": round(trained.metrics["ece"], 4),
            "origins": origins,
            "customers_vs_truth": len(joined),
        },
    }


def _recovery(prefix: str, fit, generating: dict) -> dict:
    """``{prefix}_{parameter}_rel_error`` (fitted / generating - 1), the largest in size, and
    the largest distance from the generating value in the fit's standard errors (``max_abs_z``;
    None when the data do not pin the parameters down)."""
    errors = {f"{prefix}_{name}_rel_error": round(fit.params[name] / value - 1, 4) for name, value in generating.items()}
    distances = [abs(fit.params[name] - value) / fit.standard_errors[name] if fit.standard_errors[name] else None
                 for name, value in generating.items()]  # fmt: skip
    return errors | {
        f"{prefix}_max_abs_rel_error": max(abs(e) for e in errors.values()),
        f"{prefix}_max_abs_z": None if None in distances else round(max(distances), 2),
    }


def run_value_truth(size, workdir, backend_name, workers, clock, data) -> dict:
    """Fit the value models on the store (timed); parameter recovery per archetype (untimed)."""
    import pyarrow.parquet as pq

    from engine.backend import dask_client, resolve_backend
    from engine.synth import ARCHETYPES, simulate_btyd_summaries
    from engine.value import estimate_value, fit_purchase_model

    with dask_client(resolve_backend(backend_name), workers=workers) as client, clock:
        summary = estimate_value(data["store"], workdir / "value", as_of=data["as_of"], horizon_days=HORIZON_DAYS,
                                 model="mbgnbd", grain="order", backend_name=backend_name, client=client)  # fmt: skip
    customers = pq.read_table(workdir / "value" / "customers", columns=["customer_key", "frequency", "recency", "T"])
    joined = pd.read_parquet(data["truth"], columns=["customer_key", "archetype"]).merge(
        customers.to_pandas(), on="customer_key"
    )
    quality = {}
    for archetype in ARCHETYPES:
        rows = joined[joined["archetype"] == archetype.name]
        if archetype.decline_per_day[1] > 0 or len(rows) == 0:
            continue  # a decaying rate is not the model's: nothing to recover
        fit = fit_purchase_model(*(rows[c].to_numpy() for c in ("frequency", "recency", "T")), model="mbgnbd")
        generating = {"r": archetype.rate_shape, "alpha": archetype.rate_shape / archetype.rate_mean,
                      "a": archetype.dropout_a, "b": archetype.dropout_b}  # fmt: skip
        quality[f"{archetype.name}_customers"] = len(rows)
        quality |= _recovery(archetype.name, fit, generating)
    draws = simulate_btyd_summaries(ESTIMATOR_CHECK_CUSTOMERS, _ESTIMATOR_CHECK_PARAMS, np.random.default_rng(0),
                                    model="mbgnbd")  # fmt: skip
    quality |= _recovery("estimator_check", fit_purchase_model(*draws, model="mbgnbd"), _ESTIMATOR_CHECK_PARAMS)
    return {"rows": {"customers": summary.customers}, "data_path": str(workdir), "quality": quality}


def _segments_of(out: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(out / "assignments", columns=["customer_key", "segment", "rfm_segment"]).to_pandas()


def _supervised_ari(out: Path, features: Path, truth: pd.DataFrame) -> float:
    """ARI of out-of-fold archetype predictions from the matrix the segment model prepares."""
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import adjusted_rand_score
    from sklearn.model_selection import cross_val_predict

    from engine.segments import SegmentFit

    fit = SegmentFit.from_dict(json.loads((out / "model.json").read_text()))
    frame = pq.read_table(features, columns=["customer_key", *fit.preparation.columns_]).to_pandas()
    frame = frame.merge(truth, on="customer_key")
    frame = frame.sample(n=min(len(frame), SUPERVISED_CUSTOMERS), random_state=0)
    # An archetype with a handful of customers cannot be learnt out of fold (as of a backtest,
    # new customers have mostly not arrived yet): it is left out of this reference.
    counts = frame["archetype"].value_counts()
    frame = frame[frame["archetype"].isin(counts[counts >= _MIN_PER_ARCHETYPE].index)]
    matrix = fit.preparation.transform(frame)
    predicted = cross_val_predict(HistGradientBoostingClassifier(random_state=0), matrix, frame["archetype"], cv=5)
    return float(adjusted_rand_score(frame["archetype"], predicted))


def run_segments_truth(size, workdir, backend_name, workers, clock, data) -> dict:
    """Segment with the stage's defaults (timed); agreement with the planted archetypes after."""
    from sklearn.metrics import adjusted_rand_score

    from engine.backend import dask_client, resolve_backend
    from engine.config import SegmentOptions
    from engine.segments import build_segments
    from engine.synth import ARCHETYPES

    seed, runs = data["seed"], {}
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        with clock:
            summary = build_segments(data["features"], workdir / "default", seed=seed, backend_name=backend_name,
                                     client=client)  # fmt: skip
        for name, options, run_seed in (("next-seed", SegmentOptions(), seed + 1),
                                        ("k-archetypes", SegmentOptions(k=len(ARCHETYPES)), seed)):  # fmt: skip
            runs[name] = build_segments(data["features"], workdir / name, options=options, seed=run_seed,
                                        backend_name=backend_name, client=client)  # fmt: skip
    truth = pd.read_parquet(data["truth"], columns=["customer_key", "archetype"])
    segments = _segments_of(workdir / "default")
    default = segments.merge(truth, on="customer_key")
    fixed = _segments_of(workdir / "k-archetypes").merge(truth, on="customer_key")
    seeds = segments.merge(_segments_of(workdir / "next-seed"), on="customer_key")
    return {
        "rows": {"customers": summary.customers},
        "data_path": str(workdir),
        "quality": {
            "k": summary.k,
            "silhouette": round(summary.silhouette, 4),
            "ari_vs_archetypes": round(adjusted_rand_score(default["archetype"], default["segment"]), 4),
            "ari_vs_archetypes_k_archetypes": round(adjusted_rand_score(fixed["archetype"], fixed["segment"]), 4),
            "rfm_grid_ari_vs_archetypes": round(adjusted_rand_score(default["archetype"], default["rfm_segment"]), 4),
            "supervised_ari_vs_archetypes": round(_supervised_ari(workdir / "default", data["features"], truth), 4),
            "ari_between_seeds": round(adjusted_rand_score(seeds["segment_x"], seeds["segment_y"]), 4),
            "k_next_seed": runs["next-seed"].k,
            "customers_vs_truth": len(default),
        },
    }


run_propensity_truth_3_origins = partial(run_propensity_truth, origins=3)
