"""Segments against the RFM grid at equal group count, on what customers did next (issue 29).

Two backtests, each with its data prepared once, untimed:

- ``backtest-world`` (size = customers): a synthetic world (seed 0, 1% dirt) with the
  backtest config ``segscale demo`` uses, as of 90 days before the world's end; its store,
  the features as of then, and each customer key's planted archetype.
- ``online-retail`` (size ignored: the file is what it is): the UCI Online Retail file
  (``../shared/datasets/online_retail.csv.gz``) through ``examples/online_retail.toml``, as
  of 2011-09-09, so the 90 days after it are in the store.

- ``segments-backtest`` and ``segments-online-retail``: ``build_segments`` with the stage's
  defaults (k chosen by the engine), timed. Quality: the chosen k and how, and per measure the
  segments', the equal-sized RFM grid's (its best cut on that measure, named) and the
  difference's estimate with its 95% bootstrap interval (``_low``, ``_high``; from
  ``evaluation.json``'s ``at_equal_groups``), and whether the segments win outside it; on the synthetic world also the ARI against the planted archetypes beside a classifier
  told them (``_quality._supervised_ari``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pandas as pd

from ._quality import _supervised_ari

__all__ = ["prepare_backtest_world", "prepare_online_retail", "run_segments_backtest", "run_segments_online_retail"]

ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = ROOT.parent / "shared" / "datasets" / "online_retail.csv.gz"
ONLINE_RETAIL_AS_OF = date(2011, 9, 9)
HOLDOUT_DAYS = 90


def _store_and_features(config, directory: Path, backend_name: str, workers: int):
    from engine.backend import dask_client, resolve_backend
    from engine.features import build_features
    from engine.ingest import ingest

    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        summary = ingest(config, client=client)
        build_features(summary.out_dir / "store", directory / "features", as_of=config.run.as_of,
                       options=config.features, backend_name=backend_name, client=client)  # fmt: skip
    return summary


def prepare_backtest_world(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.config import load_config
    from engine.synth import (
        WorldSpec,
        generate_world,
        truth_by_customer_key,
        write_backtest_config,
    )

    world, spec = directory / "world", WorldSpec(customers=size, seed=0, dirt=0.01)
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        generate_world(world, spec, client=client, overwrite=True)
    config = load_config(write_backtest_config(world, spec, holdout_days=HOLDOUT_DAYS))
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, output_dir=directory / "run"))
    summary = _store_and_features(config, directory, backend_name, workers)
    truth = truth_by_customer_key(world, summary.out_dir / "identity" / "mapping", ["archetype"])
    truth["archetype"] = truth["archetype"].astype(str)
    truth.to_parquet(directory / "truth.parquet", index=False)
    return {"features": directory / "features", "truth": directory / "truth.parquet", "seed": config.run.seed}


def prepare_online_retail(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    from engine.config import load_config

    config = load_config(ROOT / "examples" / "online_retail.toml")
    config = dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, output_dir=directory / "run", as_of=ONLINE_RETAIL_AS_OF),
        ingest=dataclasses.replace(config.ingest, pseudonym_key="online-retail-benchmark"),
    )
    summary = _store_and_features(config, directory, backend_name, workers)
    return {"features": directory / "features", "truth": None, "seed": config.run.seed, "store": summary.out_dir / "store"}


def _segments_backtest(workdir, backend_name, workers, clock, data) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.config import SegmentOptions
    from engine.segments import build_segments

    options = SegmentOptions(outcome_days=HOLDOUT_DAYS)
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        with clock:
            summary = build_segments(data["features"], workdir / "segments", options=options, seed=data["seed"],
                                     backend_name=backend_name, client=client)  # fmt: skip
    evaluation = json.loads((workdir / "segments" / "evaluation.json").read_text())
    if "at_equal_groups" not in evaluation:
        raise RuntimeError(f"no comparison was made: {evaluation.get('skipped', 'the features lack RFM scores')}")
    compared = evaluation["at_equal_groups"]
    quality = {"k": summary.k, "k_chosen_by": summary.k_chosen_by, "customers_measured": compared["customers"],
               "resamples": compared["resamples"]}  # fmt: skip
    for measure in compared["measures"]:
        name = measure["measure"]
        for side in ("segments", "rfm_grid", "difference"):
            quality[f"{name}_{side}"] = round(measure[side]["value"], 4)
            quality[f"{name}_{side}_low"] = round(measure[side]["low"], 4)
            quality[f"{name}_{side}_high"] = round(measure[side]["high"], 4)
        quality[f"{name}_rfm_cut"] = measure["cut"]
        quality[f"{name}_segments_win"] = measure["segments_win"]
    quality["named_rfm_grid_log_spend_eta_squared"] = round(evaluation["rfm_grid"]["log_spend_eta_squared"], 4)
    quality["named_rfm_grid_groups"] = len(evaluation["rfm_grid"]["groups"])
    if data["truth"] is not None:
        from sklearn.metrics import adjusted_rand_score

        truth = pd.read_parquet(data["truth"], columns=["customer_key", "archetype"])
        assigned = pd.read_parquet(workdir / "segments" / "assignments", columns=["customer_key", "segment"])
        known = assigned.merge(truth, on="customer_key")
        quality["ari_vs_archetypes"] = round(adjusted_rand_score(known["archetype"], known["segment"]), 4)
        quality["supervised_ari_vs_archetypes"] = round(
            _supervised_ari(workdir / "segments", data["features"], truth), 4
        )
    return {"rows": {"customers": summary.customers}, "data_path": str(workdir), "quality": quality}


def run_segments_backtest(size, workdir, backend_name, workers, clock, data) -> dict:
    return _segments_backtest(workdir, backend_name, workers, clock, data)


def run_segments_online_retail(size, workdir, backend_name, workers, clock, data) -> dict:
    return _segments_backtest(workdir, backend_name, workers, clock, data)
