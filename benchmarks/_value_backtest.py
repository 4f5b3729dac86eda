"""Lifetime value on real purchase logs against the naive forecast and the lifetimes package
(issue 31).

Three backtests, each store ingested once, untimed (size ignored: the files are what they are):

- ``value-grocery``: the BTYDplus grocery log (``../shared/datasets/btydplus_grocery_elog.csv``,
  customer and date only: counts-only), calibration through 2006-12-31, holdout 2007 (364 days);
- ``value-online-retail``: UCI Online Retail through ``examples/online_retail.toml``,
  calibration through 2011-09-08, holdout 2011-09-09 .. 2011-12-07 (90 days);
- ``value-cdnow``: the CDNOW 1/10 sample (``tests/data/cdnow_sample.csv``), 39 weeks of
  calibration through 1997-09-30, holdout to 1998-06-30 (273 days).

``estimate_value`` runs with the stage's defaults (the model chosen on evidence), timed.
Quality: the model chosen and the forecast used, per-customer MAE of holdout repeat
purchases beside the naive forecast's (calibration rate x holdout length) and their ratio,
total predicted against actual, the degeneracy reasons, and the inner-window scores of every
candidate. Beside them, ``lifetimes_*``: lifetimes 0.11.3's best model on the same split
(measured with it under pandas 1.5 on the summaries these stores give, which equal its own on
grocery), for the issue's target: segscale's MAE at most lifetimes' best and never above the
naive forecast's.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

__all__ = [
    "prepare_cdnow", "prepare_grocery", "run_value_cdnow", "run_value_grocery", "run_value_online_retail",
]  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
GROCERY = ROOT.parent / "shared" / "datasets" / "btydplus_grocery_elog.csv"
CDNOW = ROOT / "tests" / "data" / "cdnow_sample.csv"
_KEY = "value-backtest-benchmark"

# lifetimes 0.11.3 (BetaGeo, ModifiedBetaGeo, ParetoNBD fitters, no penaliser) on the same
# splits: its best per-customer MAE and that model's total error. Online Retail: every model
# collapses to no dropout; on segscale's summaries they all give 0.92270 (1.0022x naive).
LIFETIMES_BEST = {
    "grocery": {"model": "Pareto/NBD", "mae": 1.507884, "mae_vs_naive": 0.5878, "total_error": 0.1775},
    "online-retail": {"model": "MBG/NBD", "mae": 0.922698, "mae_vs_naive": 1.0022, "total_error": -0.2418},
}
# Two fits of one model to one data set agree only to the optimiser's tolerance: their MAEs
# differ in the 5th digit (grocery: 1.507829 from a cold start, 1.50789 from the window's fit).
_SAME_MAE = 1e-4
BACKTESTS = {
    "grocery": {"as_of": date(2007, 1, 1), "horizon_days": 364},
    "online-retail": {"as_of": date(2011, 9, 9), "horizon_days": 90},
    "cdnow": {"as_of": date(1997, 10, 1), "horizon_days": 273},
}


def _ingested(config, backend_name: str, workers: int) -> Path:
    from engine.backend import dask_client, resolve_backend
    from engine.ingest import ingest

    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        return ingest(config, client=client).out_dir / "store"


def _config(toml: str, directory: Path, name: str):
    from engine.config import load_config

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(f'[run]\noutput_dir = "run"\n\n{toml}\n[ingest]\npseudonym_key = "{_KEY}"\n')
    return load_config(path)


def prepare_grocery(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    config = _config(f'[inputs.transactions]\npath = "{GROCERY}"\n'
                     '[inputs.transactions.columns]\ncustomer_id = "cust"\nts = "date"\n', directory, "grocery")  # fmt: skip
    return {"store": _ingested(config, backend_name, workers), "backtest": "grocery"}


def prepare_cdnow(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    # 21 lines repeat another exactly and are real purchases (no order ids): kept.
    config = _config(f'[inputs.transactions]\npath = "{CDNOW}"\ntimestamp_format = "%Y%m%d"\nduplicates = "none"\n'
                     '[inputs.transactions.columns]\ncustomer_id = "customer_id"\nts = "date"\namount = "dollars"\n'
                     'quantity = "cds"\n', directory, "cdnow")  # fmt: skip
    return {"store": _ingested(config, backend_name, workers), "backtest": "cdnow"}


def _value_backtest(workdir, backend_name, workers, clock, store: Path, backtest: str) -> dict:
    from engine.backend import dask_client, resolve_backend
    from engine.value import estimate_value

    split = BACKTESTS[backtest]
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        with clock:
            summary = estimate_value(store, workdir / "value", **split, backend_name=backend_name, client=client)
    document = summary.document
    holdout, choice = document["holdout"], document["model_choice"] or {}
    purchases = holdout["purchases"]
    quality = {
        "as_of": split["as_of"].isoformat(), "horizon_days": split["horizon_days"],
        "model_chosen": document["purchase_model"]["name"], "forecast": document["forecast"],
        "mae": round(purchases["mae"], 5), "naive_mae": round(holdout["naive"]["mae"], 5),
        "mae_vs_naive": round(holdout["naive"]["model_mae_ratio"], 4),
        "purchases_predicted": round(purchases["predicted"], 1), "purchases_actual": purchases["actual"],
        "total_error": round(purchases["predicted"] / purchases["actual"] - 1, 4),
        "degenerate": "; ".join(document["purchase_model"]["degenerate"]) or "no",
        **{f"param_{name}": round(value, 4) for name, value in document["purchase_model"]["params"].items()},
        "time_unit": document["time_unit"],
        "window_naive_mae": round(choice["naive_mae"], 4) if "naive_mae" in choice else None,
    }  # fmt: skip
    for model, score in choice.get("scores", {}).items():
        quality[f"window_{model}_mae"] = round(score["mae"], 4) if "mae" in score else None
    if document["spend_model"]:
        quality |= {f"spend_param_{name}": round(value, 4) for name, value in document["spend_model"]["params"].items()}
    reference = LIFETIMES_BEST.get(backtest)
    if reference:
        quality |= {f"lifetimes_{key}": value for key, value in reference.items()}
        quality["mae_at_most_lifetimes_best"] = purchases["mae"] <= reference["mae"] * (1 + _SAME_MAE)
    quality["mae_at_most_naive"] = purchases["mae"] <= holdout["naive"]["mae"] + 1e-9
    (workdir / "value.json").write_text(json.dumps(document, indent=2) + "\n")
    return {"rows": {"customers": summary.customers}, "data_path": str(workdir), "quality": quality}


def run_value_grocery(size, workdir, backend_name, workers, clock, data) -> dict:
    return _value_backtest(workdir, backend_name, workers, clock, data["store"], "grocery")


def run_value_cdnow(size, workdir, backend_name, workers, clock, data) -> dict:
    return _value_backtest(workdir, backend_name, workers, clock, data["store"], "cdnow")


def run_value_online_retail(size, workdir, backend_name, workers, clock, data) -> dict:
    return _value_backtest(workdir, backend_name, workers, clock, data["store"], "online-retail")

