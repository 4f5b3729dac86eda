"""``segscale update``: a run refreshed with new rows, without a refit (issue 28).

Steps, each recorded in the update's ``progress.json`` as it finishes, so a rerun of the same
update (the same new files and as-of) skips what is done and a crash loses one step at most:

1. **before**: what the outputs say now, kept for the deltas and the drift: each customer's
   segment, propensity band and audience groups (the parts as they are, hard-linked, removed
   once the deltas are written), and an even sample of the features and scores.
2. **append**: the new rows validated, keyed and staged, then committed into the store
   (``engine.ingest._append``: each partition that receives rows gains a small delta file,
   none is rewritten unless merged customers leave or enter it). New
   identity rows are resolved with the run's own first (``engine.ingest._rekey``): the rows of
   customers they merge move to the merged customer's key and partition.
3. **features** at the new as-of, every partition. Trailing windows, trend and active weeks
   move with as-of, and the RFM quintiles and the top categories are over every customer, so
   no customer's features are exact without their rows: recomputing them all is the exact way,
   and the same code as a full run's. The events are the exception: the feature table keeps
   each part's event summary, which is moved to the new as-of and given the new rows, exactly
   (``features._events``), so only the transactions are read whole; that read also makes
   each partition's value summaries at the new as-of (``value.summaries_writer``).
4. **segments**, **propensity**, **value**: every customer placed and scored with the models
   the run saved (no refit), value from the summaries step 3 made; **activate** when
   audiences are declared.
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
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import dask

from .._summary import Summary
from ..backend import resolve_backend
from ..config import RunConfig, suffix_format
from ..exceptions import UsageError
from ..ingest import default_as_of, read_store_meta
from ..ingest._append import append_rows, check_new_inputs, commit
from ..layout import RunLayout, UpdateLayout
from ..pipeline import STAGE_NAMES, RunLock, digest, forget_stage, input_fingerprint, write_json
from . import _changes as changes

__all__ = ["UpdateSummary", "update_run"]

logger = logging.getLogger(__name__)

_STEPS = ("before", "append", "features", "segments", "propensity", "value", "activate", "deltas", "drift", "realised")


@dataclass
class UpdateSummary(Summary):
    """What ``update_run`` did: the rows it appended, the changes and whether the models are stale."""

    update_dir: Path
    as_of: str
    previous_as_of: str
    tables: dict
    partitions_appended: int
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
        form = suffix_format(path) or spec.format
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
        write_json(self.path, self.done)


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
    from ..value import rescore_value, summaries_writer

    layout = RunLayout(config.run.output_dir)
    specs = _new_specs(config, new)
    with RunLock(layout.root, "update"):
        _check_run(layout)
        # The new rows are read (lazily) into the backend's frames, as ingest reads its inputs,
        # and refused now if they cannot be.
        frames_of_backend = {"dataframe.backend": resolve_backend(backend_name).dataframe_backend}
        with dask.config.set(frames_of_backend):
            frames = check_new_inputs(specs, read_store_meta(layout.store.root))
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

        before = step("before", lambda: {**changes.before(layout, update, partitions), "previous_as_of": previous_as_of})

        def append():
            if (update.root / "commit.json").exists():  # staged and journalled before a crash: finish it
                commit(update.root)
                return json.loads((update.root / "appended.json").read_text())
            with dask.config.set(frames_of_backend):  # identity resolution reads the run's identity rows again
                appended = append_rows(config, specs, frames, update.root,
                                       earlier_identities=_earlier_identities(layout, update), client=client,
                                       progress=progress)  # fmt: skip
            (update.root / "appended.json").write_text(json.dumps(appended, indent=2) + "\n")
            commit(update.root, appended["replace"], appended["remove"])
            return appended

        appended = step("append", append)
        as_of = as_of or default_as_of(layout.store.root)
        common = {"backend_name": backend_name, "client": client, "progress": progress}
        # The features' read of each partition's transactions makes the value step's summaries too.
        summaries_to = summaries_writer(layout.value.root, update.value_summaries, as_of)
        features = step("features", lambda: build_features(layout.store.root, layout.features.root, as_of=as_of,
                                                           options=config.features, transactions_to=summaries_to,
                                                           **common).customers)  # fmt: skip
        step("segments", lambda: assign_segments(layout.features.root, layout.segments.root, layout.segments.root,
                                                 **common).customers)  # fmt: skip
        step("propensity", lambda: score_propensity(layout.propensity_model.root, layout.features.root,
                                                    layout.propensity_scores.root, client=client,
                                                    progress=progress).customers)  # fmt: skip
        step("value", lambda: rescore_value(layout.store.root, layout.value.root, layout.value.root, as_of=as_of,
                                            summaries=update.value_summaries, **common).customers)  # fmt: skip
        shutil.rmtree(update.value_summaries, ignore_errors=True)
        if config.activate.audiences:
            step("activate", lambda: activate(layout.root, config.activate, as_of=as_of, source=str(config.source),
                                              client=client, progress=progress).customers)  # fmt: skip
        deltas = step("deltas", lambda: changes.deltas(layout, update, partitions, before["labels"]))
        changes.forget_labels(update, before["labels"])
        days_moved = (as_of - date.fromisoformat(previous_as_of)).days
        drift = step("drift", lambda: changes.drift(layout, update, config.update.stale_psi, days_moved))
        realised = step("realised", lambda: changes.realised(layout))
        for name in STAGE_NAMES:
            if name != "ingest":
                forget_stage(layout.root, name)
        summary = UpdateSummary(
            update_dir=update.root, as_of=as_of.isoformat(), previous_as_of=previous_as_of, tables=appended["tables"],
            partitions_appended=len({n for parts in appended["touched"].values() for n in parts}),
            partitions_rewritten=len({n for parts in appended["rewritten"].values() for n in parts}),
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
