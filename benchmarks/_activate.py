"""The activation benchmark (issue 27): 10 audiences over N customers with a contact history of
20 rows a customer (20M at 1M), consent and suppressions.

The run directory is built untimed and directly, not through the pipeline (whose stages have
benchmarks of their own): a store of ``_PARTS`` parts with customers (consent flags for email
and SMS), contacts (20 a customer over the 60 days before as-of, on three channels) and
suppressions (2% of customers), and per part the columns the stage reads from features,
segments, propensity and value, drawn at random with the shapes the stages write. The store
has as many parts as ingest would give its rows (``ROWS_PER_PARTITION``: 11 at 1M customers),
sorted by key like ingest's, and every output's part N holds the customers of store part N.

- ``activate``: ``engine.activate.activate`` with 10 audiences over segments, bands, scores,
  CLV percentiles, P(alive) and recency, three channels, caps on email and SMS, a 10% control
  group, and a three-action playbook; timed whole (the CSVs included). Reported: customers in
  audiences, treated, control, removals by reason, actions chosen.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.ingest._pipeline import ROWS_PER_PARTITION

__all__ = ["ACTIVATE_OPTIONS", "prepare_activation_run", "run_activate"]

AS_OF = date(2025, 10, 3)
_CONTACTS_PER_CUSTOMER = 20
_CHANNELS = ("email", "sms", "push")
_MICROS_PER_DAY = 86_400 * 1_000_000


def _options():
    from engine.config import Action, ActivateOptions, Audience, Cap, Condition

    def where(**conditions):
        return {column: Condition(**condition) for column, condition in conditions.items()}

    audiences = (
        Audience("vip-email", "email", where(clv_percentile={"min": 90}, band={"values": ("high",)})),
        Audience("vip-sms", "sms", where(clv_percentile={"min": 90})),
        Audience("likely-email", "email", where(band={"values": ("high", "medium")})),
        Audience("likely-push", "push", where(score={"min": 0.4})),
        Audience("lapsing", "email", where(p_alive={"max": 0.3}, recency_days={"min": 120})),
        Audience("lapsing-sms", "sms", where(p_alive={"max": 0.5})),
        Audience("segment-0", "email", where(segment={"values": ("0",)})),
        Audience("segment-1-2", "push", where(segment={"values": ("1", "2")})),
        Audience("new", "email", where(recency_days={"max": 30})),
        Audience("rest", "push", {}),
    )
    actions = (
        Action("vip-offer", "vip-email", offer="20% off", cost=4.0),
        Action("reminder", "likely-email", value=15.0, cost=0.2),
        Action("push-nudge", "likely-push", cost=0.05),
    )
    return ActivateOptions(
        campaign="bench", holdout_share=0.1, recent_purchase_days=2, allow_overlap=False,
        caps={"email": Cap(contacts=3, days=7), "sms": Cap(contacts=1, days=14)},
        audiences=audiences, actions=actions,
    )  # fmt: skip


ACTIVATE_OPTIONS = _options()


def _write(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)


def prepare_activation_run(size: int, directory: Path, backend_name: str, workers: int) -> dict:
    from engine.layout import RunLayout, part_name

    rng = np.random.default_rng(0)
    layout = RunLayout(directory / "run")
    store = layout.store
    as_of_us = (AS_OF - date(1970, 1, 1)).days * _MICROS_PER_DAY
    parts = max(1, math.ceil(size * (2 + _CONTACTS_PER_CUSTOMER) / ROWS_PER_PARTITION))
    keys = np.sort(np.array([f"k{value:016x}" for value in rng.integers(0, 2**63, size)], dtype=object))
    columns = {"customers": [], "contacts": [], "suppressions": []}
    for number, part in enumerate(np.array_split(keys, parts)):
        n = len(part)
        name = part_name(number)
        customers = pd.DataFrame({"customer_key": part, "consent_email": rng.uniform(size=n) < 0.85,
                                  "consent_sms": rng.uniform(size=n) < 0.5, "consent_push": rng.uniform(size=n) < 0.6})  # fmt: skip
        owners = np.repeat(part, _CONTACTS_PER_CUSTOMER)
        when = as_of_us - rng.integers(1, 60 * _MICROS_PER_DAY, len(owners))
        contacts = pd.DataFrame({
            "customer_key": owners, "ts": pd.to_datetime(when, unit="us", utc=True).astype("datetime64[us, UTC]"),
            "channel": pd.Categorical(rng.choice(_CHANNELS, len(owners), p=[0.7, 0.1, 0.2])),
        }).sort_values(["customer_key", "ts"], ignore_index=True)  # fmt: skip
        barred = np.sort(rng.choice(part, max(1, n // 50), replace=False))
        suppressions = pd.DataFrame({
            "customer_key": barred, "reason": rng.choice(["unsubscribed", "complaint", "legal_hold"], len(barred)),
            "channel": rng.choice(np.array(["email", "sms", None], dtype=object), len(barred)),
        })  # fmt: skip
        for table, frame in (("customers", customers), ("contacts", contacts), ("suppressions", suppressions)):
            _write(frame, store.table_part(table, number))
            columns[table] = [c for c in frame.columns if c != "customer_key"]
        _write(pd.DataFrame({"customer_key": part, "recency_days": rng.exponential(90, n).round(),
                             "frequency": rng.poisson(4, n), "monetary_total": rng.gamma(2, 150, n)}),
               layout.features.root / name)  # fmt: skip
        _write(pd.DataFrame({"customer_key": part, "segment": rng.integers(0, 6, n),
                             "segment_name": pd.Categorical(rng.choice(list("ABCDEF"), n))}),
               layout.segments.assignments / name)  # fmt: skip
        score = rng.beta(2, 5, n)
        _write(pd.DataFrame({"customer_key": part, "score": score, "percentile": score * 100,
                             "band": np.where(score > 0.5, "high", np.where(score > 0.25, "medium", "low"))}),
               layout.propensity_scores.root / name)  # fmt: skip
        _write(pd.DataFrame({"customer_key": part, "p_alive": rng.uniform(size=n), "expected_spend": rng.gamma(3, 20, n),
                             "clv": rng.gamma(1.5, 80, n)}), layout.value.customers / name)  # fmt: skip
    tables = {name: {"columns": names, "rows": None} for name, names in columns.items()}
    # Activation reads no transactions (features carry recency), but a store always has them.
    tables["transactions"] = {"columns": ["ts", "amount"], "rows": 0}
    store.meta.write_text(json.dumps({"partitions": parts, "tables": tables}) + "\n")
    return {"run": layout.root, "contacts": size * _CONTACTS_PER_CUSTOMER}


def run_activate(size, workdir, backend_name, workers, clock, data) -> dict:
    import shutil

    from engine.activate import activate
    from engine.backend import dask_client, resolve_backend
    from engine.layout import RunLayout

    shutil.rmtree(RunLayout(data["run"]).activate.root, ignore_errors=True)
    with dask_client(resolve_backend(backend_name), workers=workers) as client:
        with clock:
            summary = activate(data["run"], ACTIVATE_OPTIONS, as_of=AS_OF, source="benchmark", client=client)
    audiences = summary.audiences
    removed: dict[str, int] = {}
    for audience in audiences:
        for reason, count in audience["removed"].items():
            key = reason.split(":")[0]
            removed[key] = removed.get(key, 0) + count
    quality = {
        "audiences": len(audiences), "contacts": data["contacts"],
        "in_audiences": sum(a["treated"] + a["control"] for a in audiences),
        "treated": sum(a["treated"] for a in audiences), "control": sum(a["control"] for a in audiences),
        **{f"removed_{reason}": count for reason, count in sorted(removed.items())},
        "actions_chosen": sum(summary.next_best_action["per_action"].values()),
        "imbalanced_audiences": sum(bool(a["imbalanced"]) for a in audiences),
    }  # fmt: skip
    return {"rows": {"customers": summary.customers}, "quality": quality}
