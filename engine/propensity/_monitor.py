"""Monitoring: how an earlier scoring did once its outcomes are in the store.

A scoring as of A (``segscale score``) predicted the model's target over [A, A + horizon).
When the store holds that window, the same labels the model trained on are computed for the
scored customers, and the realised ROC-AUC, calibration (ECE) and top-decile lift are set
beside the model's own test-split figures. The model is flagged for retraining when the AUC
fell by more than ``max_auc_drop``, the ECE rose past ``max_ece``, or the top-decile lift fell
below ``min_lift_share`` of what the test split showed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from ..exceptions import InputDataError
from ..layout import ModelLayout, ScoresLayout
from ._labels import LABEL, label_customers
from ._metrics import classification_metrics

__all__ = ["MonitorLimits", "monitor_scores"]



@dataclass(frozen=True)
class MonitorLimits:
    """When a realised scoring calls for retraining (see the module docstring)."""

    max_auc_drop: float = 0.05
    max_ece: float = 0.05
    min_lift_share: float = 0.8


def monitor_scores(scores: str | os.PathLike, store: str | os.PathLike, *, limits: MonitorLimits | None = None,
                   client=None, progress=None) -> dict:  # fmt: skip
    """Realised metrics of a scoring and whether its model needs retraining.

    Parameters
    ----------
    scores : path
        A scoring's output (``_scores.json`` names its model, features and as-of).
    store : path
        A customer-clustered store holding [as_of, as_of + horizon).

    Returns
    -------
    dict
        ``window``, ``realised`` (customers, positives, roc_auc, pr_auc, brier, ece, top-decile
        lift), ``expected`` (the same from the model's test split), ``reasons`` (why it should be
        retrained, empty when it need not) and ``retrain`` (bool).

    Raises
    ------
    InputDataError
        Not a scoring, its model is gone, or the store does not hold the outcome window yet.
    """
    limits = limits or MonitorLimits()
    scores = Path(scores)
    meta_path = ScoresLayout(scores).meta
    if not meta_path.exists():
        raise InputDataError(f"{scores}: not a segscale scoring (no {meta_path.name}); run segscale score first")
    meta = json.loads(meta_path.read_text())
    saved = ModelLayout(meta["model"])
    model_json = saved.model
    if not model_json.exists():
        raise InputDataError(f"{scores}: its model {meta['model']} is gone; monitoring compares against it")
    model = json.loads(model_json.read_text())
    options = model["options"]
    as_of = date.fromisoformat(meta["as_of"])
    scored = pq.read_table(scores, columns=["customer_key", "score"]).to_pandas()
    frame = scored[["customer_key"]]
    if options["target"] == "churn":
        recency = pq.read_table(meta["features"], columns=["customer_key", "recency_days"]).to_pandas()
        frame = frame.merge(recency, on="customer_key", how="left")
    labels = label_customers(
        store, frame, as_of, target=options["target"], horizon_days=options["horizon_days"],
        churn_lookback_days=options["churn_lookback_days"], event_type=options["event_type"], client=client,
        progress=progress,
    )  # fmt: skip
    realised = scored.merge(labels, on="customer_key", how="inner")
    measured = classification_metrics(realised[LABEL].to_numpy(), realised["score"].to_numpy())
    expected = json.loads(saved.metrics.read_text())["test"]
    keys = ("customers", "positives", "base_rate", "roc_auc", "pr_auc", "brier", "ece")
    summary = {
        "window": {"from": as_of.isoformat(), "days": options["horizon_days"], "target": options["target"]},
        "realised": {**{k: measured[k] for k in keys}, "top_decile_lift": measured["lift"][0]["lift"]},
        "expected": {**{k: expected[k] for k in keys}, "top_decile_lift": expected["lift"][0]["lift"]},
    }
    reasons = []
    now, then = summary["realised"], summary["expected"]
    if now["roc_auc"] is None or then["roc_auc"] - now["roc_auc"] > limits.max_auc_drop:
        reasons.append(f"AUC {_fmt(now['roc_auc'])} against {_fmt(then['roc_auc'])} at training")
    if now["ece"] > limits.max_ece:
        reasons.append(f"ECE {now['ece']:.3f} above {limits.max_ece}")
    if now["top_decile_lift"] is None or now["top_decile_lift"] < limits.min_lift_share * then["top_decile_lift"]:
        reasons.append(f"top-decile lift {_fmt(now['top_decile_lift'])} against {_fmt(then['top_decile_lift'])}")
    summary["reasons"], summary["retrain"] = reasons, bool(reasons)
    return summary


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
