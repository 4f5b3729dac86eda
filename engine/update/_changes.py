"""What an update changed: the outputs before it, the deltas per customer, the drift of
features and scores, and how a replaced scoring did once its outcomes came (steps 1, 5, 6 and 7
of ``_pipeline``). Per partition, one part of each output at a time: nothing here holds every
customer but the drift's even samples.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..ingest._pseudonym import key_order
from ..layout import ModelLayout, RunLayout, ScoresLayout, UpdateLayout, part_name
from ..measure import drift_sample, drift_sources, population_stability
from ..outcomes import outcome_window

__all__ = ["before", "deltas", "drift", "realised"]

# Customers per sample the drift compares (evenly through the parts).
DRIFT_SAMPLE = 100_000


def _read_part(directory: Path, number: int, columns: list[str]) -> pd.DataFrame | None:
    path = directory / part_name(number)
    if not path.exists():
        return None
    schema = pq.read_schema(path)
    return pq.read_table(path, columns=[c for c in columns if c in schema.names]).to_pandas()


def _labels(layout: RunLayout) -> dict[str, tuple[Path, str]]:
    """What the deltas follow: name -> (parts directory, column)."""
    labels = {"segment": (layout.segments.assignments, "segment_name"), "band": (layout.propensity_scores.root, "band")}
    if layout.activate.audiences.is_dir():
        for directory in sorted(p for p in layout.activate.audiences.iterdir() if p.is_dir()):
            labels[f"audience:{directory.name}"] = (directory, "group")
    return labels


def before(layout: RunLayout, update: UpdateLayout, partitions: int) -> dict:
    """Step 1: the labels per customer and the drift samples, as the outputs stand."""
    for name, (directory, column) in _labels(layout).items():
        target = update.before / name.replace(":", "-")
        target.mkdir(parents=True, exist_ok=True)
        for number in range(partitions):
            part = _read_part(directory, number, ["customer_key", column])
            if part is not None:
                part.rename(columns={column: "label"}).to_parquet(target / part_name(number), index=False)
    for source, (directory, columns) in drift_sources(layout).items():
        drift_sample(directory, columns, DRIFT_SAMPLE).to_parquet(update.before / f"sample-{source}.parquet", index=False)
    _keep_scoring(layout, update, partitions)
    return {"labels": sorted(_labels(layout))}


def _keep_scoring(layout: RunLayout, update: UpdateLayout, partitions: int) -> None:
    """The propensity scoring as it stands, as a scoring directory ``segscale monitor`` reads:
    keys and scores, and the recency it judges churn by (the features are about to change)."""
    scores, recency = ScoresLayout(update.before / "scores"), update.before / "recency"
    for directory, source, column in ((scores.root, layout.propensity_scores.root, "score"),
                                      (recency, layout.features.root, "recency_days")):  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        for number in range(partitions):
            part = _read_part(source, number, ["customer_key", column])
            if part is not None:
                part.to_parquet(directory / part_name(number), index=False)
    meta = json.loads(layout.propensity_scores.meta.read_text())
    scores.meta.write_text(json.dumps({**meta, "features": str(recency)}, indent=2) + "\n")


def deltas(layout: RunLayout, update: UpdateLayout, partitions: int, before_labels: list[str]) -> dict:
    """Step 5: per partition, each customer whose label changed, with old, new and why."""
    labels = _labels(layout)
    names = sorted(set(labels) | set(before_labels))
    with_rows = set()
    if update.customers_with_rows.is_dir():
        for path in update.customers_with_rows.glob("*.parquet"):
            with_rows.update(pq.read_table(path).column("customer_key").to_pylist())
    moves = pd.read_parquet(update.moves) if update.moves.exists() else pd.DataFrame({"old_key": [], "new_key": []})
    merged_keys = set(moves["old_key"]) | set(moves["new_key"])
    # Each old key once, in the partition it was in.
    old_partition = key_order(moves["old_key"].tolist()) % np.uint64(partitions)
    update.deltas.mkdir(parents=True, exist_ok=True)
    changes = {name: 0 for name in names}
    reasons: dict[str, dict[str, int]] = {}
    with open(update.deltas_csv, "wb") as csv:
        for number in range(partitions):
            rows = []
            for name in names:
                old = _read_part(update.before / name.replace(":", "-"), number, ["customer_key", "label"])
                new = _read_part(labels[name][0], number, ["customer_key", labels[name][1]]) if name in labels else None
                old = old if old is not None else pd.DataFrame({"customer_key": [], "label": []})
                new = (new.rename(columns={labels[name][1]: "label"}) if new is not None
                       else pd.DataFrame({"customer_key": [], "label": []}))  # fmt: skip
                both = old.merge(new, on="customer_key", how="outer", suffixes=("_old", "_new"))
                before, after = both["label_old"].astype(object), both["label_new"].astype(object)
                changed = ~((before == after) | (before.isna() & after.isna()))
                moved = both[changed.to_numpy()]
                changes[name] += len(moved)
                if len(moved):
                    reason = np.select(
                        [moved["customer_key"].isin(merged_keys), moved["label_old"].isna(),
                         moved["customer_key"].isin(with_rows)],
                        ["merged", "new customer", "new rows"], "as-of moved",
                    )  # fmt: skip
                    rows.append(pd.DataFrame({
                        "customer_key": moved["customer_key"].astype(str), "change": name,
                        "old": moved["label_old"].astype(object).where(moved["label_old"].notna(), None).map(
                            lambda v: None if v is None else str(v)),
                        "new": moved["label_new"].astype(object).where(moved["label_new"].notna(), None).map(
                            lambda v: None if v is None else str(v)),
                        "reason": reason,
                    }))  # fmt: skip
            # A merged customer's old key beside its new one: what a downstream system re-keys.
            gone = moves[old_partition == number]
            if len(gone):
                changes["customer_key"] = changes.get("customer_key", 0) + len(gone)
                rows.append(pd.DataFrame({"customer_key": gone["old_key"], "change": "customer_key",
                                          "old": gone["old_key"], "new": gone["new_key"], "reason": "merged"}))  # fmt: skip
            for row in rows:
                for (change, reason), count in row.groupby(["change", "reason"]).size().items():
                    reasons.setdefault(change, {})[reason] = reasons.get(change, {}).get(reason, 0) + int(count)
            part = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
                {"customer_key": [], "change": [], "old": [], "new": [], "reason": []}, dtype=object)  # fmt: skip
            table = pa.Table.from_pandas(part.astype(object), preserve_index=False,
                                         schema=pa.schema([(c, pa.string()) for c in part.columns]))  # fmt: skip
            pq.write_table(table, update.deltas / part_name(number))
            buffer = pa.BufferOutputStream()
            pcsv.write_csv(table, buffer, pcsv.WriteOptions(include_header=number == 0))
            csv.write(buffer.getvalue().to_pybytes())
    return {"changes": changes, "reasons": reasons, "customers_with_rows": len(with_rows)}


def _aged(column: str) -> bool:
    """Whether a feature counts days back from as-of: everyone's grows by the days as-of moved."""
    return column in ("recency_days", "tenure_days") or column.startswith("days_since_")


def drift(layout: RunLayout, update: UpdateLayout, limit: float, days_moved: int) -> dict:
    """Step 6: PSI of each sampled column, before against now; the shifted ones, largest first.
    Days counted back from as-of are compared with before's aged by the days as-of moved: a
    week later every "days since" is 7 more, which is no shift in who the customers are."""
    rows = []
    for source, (directory, columns) in drift_sources(layout).items():
        before = pd.read_parquet(update.before / f"sample-{source}.parquet")
        after = drift_sample(directory, columns, DRIFT_SAMPLE)
        for column in sorted(set(before.columns) & set(after.columns)):
            expected = before[column].to_numpy(dtype="float64", na_value=np.nan) + (days_moved if _aged(column) else 0)
            psi = population_stability(expected, after[column].to_numpy(dtype="float64", na_value=np.nan))
            if np.isfinite(psi):
                rows.append({"source": source, "column": column, "psi": round(psi, 4)})
    shifted = sorted((row for row in rows if row["psi"] > limit), key=lambda row: -row["psi"])
    return {"columns": len(rows), "shifted": shifted, "stale": bool(shifted)}


def realised(layout: RunLayout) -> dict | None:
    """How the latest scoring kept by an update did, once the store holds its outcome window
    (``engine.propensity.monitor_scores``: realised AUC, calibration and top-decile lift against
    the model's test split); None while no kept scoring's window has passed."""
    from ..propensity import monitor_scores

    covered = []
    for directory in layout.root.glob("updates/*/before/scores"):
        meta = json.loads(ScoresLayout(directory).meta.read_text())
        horizon = json.loads(ModelLayout(meta["model"]).model.read_text())["options"]["horizon_days"]
        if outcome_window(layout.store.root, date.fromisoformat(meta["as_of"]), horizon).covered:
            covered.append((meta["as_of"], directory))
    if not covered:
        return None
    as_of, directory = max(covered)
    return {"scoring_as_of": as_of, **monitor_scores(directory, layout.store.root)}
