"""``segscale update``: a run refreshed with new rows, without a refit (issue 28).

Steps, each recorded in the update's ``progress.json`` as it finishes, so a rerun of the same
update (the same new files and as-of) skips what is done and a crash loses one step at most:

1. **before**: what the outputs say now, kept for the deltas and the drift: each customer's
   segment, propensity band and audience groups, and an even sample of the features and scores.
2. **append**: the new rows validated, keyed and staged, then committed into the store
   (``engine.ingest._append``: only the partitions that received rows are rewritten).
3. **features** at the new as-of, every partition. Trailing windows, trend and active weeks
   move with as-of, and the RFM quintiles and the top categories are over every customer, so
   no customer's features are exact without their rows: recomputing them all is the exact way,
   and the same code as a full run's.
   New identity rows are resolved with the run's own first (``engine.ingest._rekey``): the
   rows of customers they merge move to the merged customer's key and partition.
4. **segments**, **propensity**, **value**: every customer placed and scored with the models
   the run saved (no refit); **activate** when audiences are declared.
5. **deltas**: per customer whose segment, band or audience group changed: old, new and why
   (``merged``, ``new customer``, ``new rows`` or ``as-of moved``), and each merged customer's
   old key beside its new one (change ``customer_key``), as Parquet parts and one CSV.
6. **drift**: PSI of every feature and score against before (days counted back from as-of
   aged by the days it moved); past ``[update] stale_psi`` the models are stale.
7. **realised**: the latest scoring an update kept (step 1) whose outcome window the store now
   holds is judged as ``segscale monitor`` judges one (realised AUC, calibration, top-decile
   lift against the model's test split); past its limits the models are stale too. Stale
   models are said in the summary and the log (exit status 0: the outputs are right for the
   models they used), and ``segscale run`` refits them.

The run's stage records of the refreshed stages are dropped at the end: their outputs are no
longer what ``segscale run`` made, so the next run recomputes (and refits) them, keeping the
store with the new rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .._summary import Summary
from ..backend import resolve_backend
from ..config import RunConfig
from ..exceptions import UsageError
from ..ingest import default_as_of, read_store_meta
from ..ingest._append import append_rows, check_new_inputs, commit
from ..layout import ModelLayout, RunLayout, ScoresLayout, UpdateLayout, part_name
from ..measure import population_stability
from ..outcomes import outcome_window
from ..pipeline import STAGE_NAMES, RunLock, digest, forget_stage, input_fingerprint, write_json

__all__ = ["UpdateSummary", "update_run"]

logger = logging.getLogger(__name__)

# Customers per sample the drift compares (evenly through the parts).
DRIFT_SAMPLE = 100_000
_STEPS = ("before", "append", "features", "segments", "propensity", "value", "activate", "deltas", "drift", "realised")


@dataclass
class UpdateSummary(Summary):
    """What ``update_run`` did: the rows it appended, the changes and whether the models are stale."""

    update_dir: Path
    as_of: str
    previous_as_of: str
    tables: dict
    partitions_rewritten: int
    new_accounts: int
    new_customers: int
    merged_customers: int
    customers: int
    customers_with_rows: int
    changes: dict
    change_reasons: dict
    stale: bool
    shifted: list = field(default_factory=list)
    realised: dict | None = None
    seconds: dict = field(default_factory=dict)
    resumed: list = field(default_factory=list)


def _new_specs(config: RunConfig, new: dict) -> dict:
    """Each new file's input settings: the run's for that table (mapping, format, time zone),
    with the new path; the format follows the file's suffix where it says one."""
    specs = {}
    for table, path in new.items():
        if table not in config.inputs:
            raise UsageError(f"{path}: the config has no [inputs.{table}] to read {table} rows with")
        spec = config.inputs[table]
        name = str(path).lower()
        form = "parquet" if name.endswith((".parquet", ".pq")) else "csv" if name.endswith((".csv", ".csv.gz", ".tsv")) else spec.format
        where = str(path) if "://" in str(path) else str(Path(path).absolute())  # URLs stay as they are
        specs[table] = dataclasses.replace(spec, path=where, format=form)
    return specs


def _check_run(layout: RunLayout) -> None:
    """The run's outputs an update refreshes must be there."""
    needed = {
        "ingest": layout.store.meta, "features": layout.features.meta, "segments": layout.segments.model,
        "propensity": layout.propensity_model.model, "value": layout.value.summary,
    }  # fmt: skip
    missing = [stage for stage, path in needed.items() if not path.exists()]
    if missing:
        raise UsageError(f"{layout.root}: no {', '.join(missing)} output to update; run segscale run CONFIG first")


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


def _drift_sources(layout: RunLayout) -> dict[str, tuple[Path, list | None]]:
    return {"features": (layout.features.root, None), "propensity": (layout.propensity_scores.root, ["score"]),
            "value": (layout.value.customers, ["p_alive", "clv"])}  # fmt: skip


def _sample(directory: Path, columns: list | None, partitions: int) -> pd.DataFrame:
    """An even sample of at most ``DRIFT_SAMPLE`` rows of the numeric ``columns`` (all when None)."""
    per_part = max(1, DRIFT_SAMPLE // max(partitions, 1))
    pieces = []
    for number in range(partitions):
        path = directory / part_name(number)
        if not path.exists():
            continue
        table = pq.read_table(path, columns=columns)
        numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
        frame = table.select(numeric).to_pandas()
        pieces.append(frame.iloc[:: max(1, len(frame) // per_part)])
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()


def _before(layout: RunLayout, update: UpdateLayout, partitions: int) -> dict:
    """Step 1: the labels per customer and the drift samples, as the outputs stand."""
    for name, (directory, column) in _labels(layout).items():
        target = update.before / name.replace(":", "-")
        target.mkdir(parents=True, exist_ok=True)
        for number in range(partitions):
            part = _read_part(directory, number, ["customer_key", column])
            if part is not None:
                part.rename(columns={column: "label"}).to_parquet(target / part_name(number), index=False)
    for source, (directory, columns) in _drift_sources(layout).items():
        _sample(directory, columns, partitions).to_parquet(update.before / f"sample-{source}.parquet", index=False)
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


def _deltas(layout: RunLayout, update: UpdateLayout, partitions: int, before_labels: list[str]) -> dict:
    """Step 5: per partition, each customer whose label changed, with old, new and why."""
    labels = _labels(layout)
    names = sorted(set(labels) | set(before_labels))
    with_rows = set()
    if update.customers_with_rows.is_dir():
        for path in update.customers_with_rows.glob("*.parquet"):
            with_rows.update(pq.read_table(path).column("customer_key").to_pylist())
    moves = pd.read_parquet(update.moves) if update.moves.exists() else pd.DataFrame({"old_key": [], "new_key": []})
    merged_keys = set(moves["old_key"]) | set(moves["new_key"])
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
            # A merged customer's old key, once, in the partition it was in: what a downstream system re-keys.
            gone = moves[[int(k[1:], 16) % partitions == number for k in moves["old_key"]]]
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


def _drift(layout: RunLayout, update: UpdateLayout, partitions: int, limit: float, days_moved: int) -> dict:
    """Step 6: PSI of each sampled column, before against now; the shifted ones, largest first.
    Days counted back from as-of are compared with before's aged by the days as-of moved: a
    week later every "days since" is 7 more, which is no shift in who the customers are."""
    rows = []
    for source, (directory, columns) in _drift_sources(layout).items():
        before = pd.read_parquet(update.before / f"sample-{source}.parquet")
        after = _sample(directory, columns, partitions)
        for column in sorted(set(before.columns) & set(after.columns)):
            expected = before[column].to_numpy(dtype="float64", na_value=np.nan) + (days_moved if _aged(column) else 0)
            psi = population_stability(expected, after[column].to_numpy(dtype="float64", na_value=np.nan))
            if np.isfinite(psi):
                rows.append({"source": source, "column": column, "psi": round(psi, 4)})
    shifted = sorted((row for row in rows if row["psi"] > limit), key=lambda row: -row["psi"])
    return {"columns": len(rows), "shifted": shifted, "stale": bool(shifted)}


def _realised(layout: RunLayout) -> dict | None:
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


def _note_in_manifest(layout: RunLayout, update: UpdateLayout, summary: UpdateSummary) -> None:
    """The run's manifest lists its updates: a scheduler reading it sees the outputs' as-of
    moved, and whether the models went stale."""
    if not layout.manifest.exists():
        return
    manifest = json.loads(layout.manifest.read_text())
    entries = [entry for entry in manifest.get("updates", []) if entry["id"] != update.root.name]
    entries.append({"id": update.root.name, "as_of": summary.as_of, "stale": summary.stale,
                    "summary": str(update.summary), "finished_at": datetime.now(timezone.utc).isoformat()})  # fmt: skip
    write_json(layout.manifest, {**manifest, "updates": entries})


def _earlier_identities(layout: RunLayout, update: UpdateLayout) -> list:
    """The identity rows earlier updates of the run committed, and their accounting: resolved
    again with the run's and the new ones, or their merges would come apart."""
    earlier = []
    for directory in sorted(layout.root.glob("updates/*/identities")):
        done = _Progress(directory.parent / "progress.json").done.get("append")
        if directory.parent != update.root and done and "identities" in done["tables"]:
            earlier.append((directory, done["tables"]["identities"]))
    return earlier


def _update_id(specs: dict, as_of: date | None) -> str:
    """The same new files and as-of make the same update, which a rerun resumes."""
    return digest({"new": {table: input_fingerprint(spec) for table, spec in sorted(specs.items())},
                   "as_of": None if as_of is None else as_of.isoformat()})[:16]  # fmt: skip


class _Progress:
    """``progress.json``: the result of every finished step."""

    def __init__(self, path: Path):
        self.path = path
        self.done = json.loads(path.read_text()) if path.exists() else {}

    def record(self, step: str, result) -> None:
        self.done[step] = result
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.done, indent=2, default=str) + "\n")
        temporary.replace(self.path)


def update_run(config: RunConfig, new: dict, *, as_of: date | None = None, backend_name: str = "auto",
               client=None, progress=None) -> UpdateSummary:  # fmt: skip
    """Refresh the run of ``config`` with the rows of ``new`` (table -> a file, a directory or
    a URL); see the module docstring.

    Raises
    ------
    UsageError
        The run has not finished its stages, a table an update cannot append, or an as-of
        before the run's.
    InputDataError
        New files that cannot be read, or whose every row is rejected.
    RunLockedError
        Another command uses the run directory.
    """
    from ..activate import activate
    from ..features import build_features, read_features_meta
    from ..propensity import score_propensity
    from ..segments import assign_segments
    from ..value import rescore_value

    layout = RunLayout(config.run.output_dir)
    specs = _new_specs(config, new)
    with RunLock(layout.root, "update"):
        _check_run(layout)
        check_new_inputs(specs, read_store_meta(layout.store.root))
        run_as_of = read_features_meta(layout.features.root)["as_of"]
        if as_of is not None and as_of.isoformat() < run_as_of:
            raise UsageError(f"--as-of {as_of} is before the run's as-of {run_as_of}: an update moves as-of forward")
        for pending in sorted(layout.root.glob("updates/*/commit.json")):
            if not _Progress(pending.parent / "progress.json").done.get("append"):
                logger.info("update: finishing the commit of an update that stopped during it (%s)", pending.parent.name)
                commit(pending.parent)
        update = layout.update(_update_id(specs, as_of))
        update.root.mkdir(parents=True, exist_ok=True)
        steps = _Progress(update.progress)
        resumed = [step for step in _STEPS if step in steps.done]
        if resumed:
            logger.info("update: resuming %s; done before: %s", update.root.name, ", ".join(resumed))
        seconds: dict[str, float] = {}
        partitions = int(read_store_meta(layout.store.root)["partitions"])
        previous_as_of = steps.done.get("before", {}).get("previous_as_of") or run_as_of

        def step(name, work):
            if name in steps.done:
                return steps.done[name]
            started = time.perf_counter()
            result = work()
            seconds[name] = round(time.perf_counter() - started, 3)
            steps.record(name, result)
            logger.info("update: %s done in %.1f s", name, seconds[name])
            return result

        before = step("before", lambda: {**_before(layout, update, partitions), "previous_as_of": previous_as_of})

        def append():
            if (update.root / "commit.json").exists():  # staged and journalled before a crash: finish it
                commit(update.root)
                return json.loads((update.root / "appended.json").read_text())
            # The new rows are read into the backend's frames, as ingest reads its inputs.
            with dask.config.set({"dataframe.backend": resolve_backend(backend_name).dataframe_backend}):
                appended = append_rows(config, specs, update.root, earlier_identities=_earlier_identities(layout, update),
                                       client=client, progress=progress)  # fmt: skip
            (update.root / "appended.json").write_text(json.dumps(appended, indent=2) + "\n")
            commit(update.root, appended["replace"])
            return appended

        appended = step("append", append)
        as_of = as_of or default_as_of(layout.store.root)
        common = {"backend_name": backend_name, "client": client, "progress": progress}
        features = step("features", lambda: build_features(layout.store.root, layout.features.root, as_of=as_of,
                                                           options=config.features, **common).customers)  # fmt: skip
        step("segments", lambda: assign_segments(layout.features.root, layout.segments.root, layout.segments.root,
                                                 **common).customers)  # fmt: skip
        step("propensity", lambda: score_propensity(layout.propensity_model.root, layout.features.root,
                                                    layout.propensity_scores.root, client=client,
                                                    progress=progress).customers)  # fmt: skip
        step("value", lambda: rescore_value(layout.store.root, layout.value.root, layout.value.root, as_of=as_of,
                                            **common).customers)  # fmt: skip
        if config.activate.audiences:
            step("activate", lambda: activate(layout.root, config.activate, as_of=as_of, source=str(config.source),
                                              client=client, progress=progress).customers)  # fmt: skip
        deltas = step("deltas", lambda: _deltas(layout, update, partitions, before["labels"]))
        days_moved = (as_of - date.fromisoformat(previous_as_of)).days
        drift = step("drift", lambda: _drift(layout, update, partitions, config.update.stale_psi, days_moved))
        realised = step("realised", lambda: _realised(layout))
        for name in STAGE_NAMES:
            if name != "ingest":
                forget_stage(layout.root, name)
        summary = UpdateSummary(
            update_dir=update.root, as_of=as_of.isoformat(), previous_as_of=previous_as_of, tables=appended["tables"],
            partitions_rewritten=len({n for parts in appended["touched"].values() for n in parts}),
            new_accounts=appended["accounts"], new_customers=appended["customers"], merged_customers=appended["merged"],
            customers=features,
            customers_with_rows=deltas["customers_with_rows"], changes=deltas["changes"], change_reasons=deltas["reasons"],
            stale=drift["stale"] or bool(realised and realised["retrain"]), shifted=drift["shifted"], realised=realised,
            seconds=seconds, resumed=resumed,
        )  # fmt: skip
        document = {**summary.to_dict(), "finished_at": datetime.now(timezone.utc).isoformat()}
        update.summary.write_text(json.dumps(document, indent=2, default=str) + "\n")
        _note_in_manifest(layout, update, summary)
    if summary.shifted:
        logger.warning("update: the saved models are stale: %s shifted past PSI %.2f since %s; segscale run refits them",
                       ", ".join(f"{row['column']} ({row['psi']:.2f})" for row in summary.shifted[:5]),
                       config.update.stale_psi, previous_as_of)  # fmt: skip
    if realised and realised["retrain"]:
        logger.warning("update: the scoring as of %s did worse than the model's test split once its outcomes came: %s; "
                       "segscale run refits the models", realised["scoring_as_of"], "; ".join(realised["reasons"]))  # fmt: skip
    logger.info("update: %s as of %s: %s", update.root.name, summary.as_of,
                ", ".join(f"{name} {count:,} changed" for name, count in summary.changes.items()))  # fmt: skip
    return summary
