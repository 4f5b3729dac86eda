"""What an update changed: the outputs before it, the deltas per customer, the drift of
features and scores, and how a replaced scoring did once its outcomes came (steps 1, 5, 6 and 7
of ``_pipeline``). Per partition, one part of each output at a time, a few side by side on
threads: nothing here holds every customer but the drift's even samples.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..backend import usable_cores
from ..ingest._pseudonym import key_numbers, key_text
from ..layout import ModelLayout, RunLayout, ScoresLayout, UpdateLayout, part_name
from .._samples import KEPT_SAMPLE, kept_sample
from ..measure import drift_sample, drift_sources, population_stability
from ..outcomes import outcome_window

__all__ = ["before", "deltas", "drift", "forget_labels", "realised"]

# Customers per sample the drift compares (evenly through the parts): the size the feature
# table keeps a sample of, which is then read instead of its parts.
DRIFT_SAMPLE = KEPT_SAMPLE
# A row of the deltas: the customer, the label that changed (or customer_key), its old and new value, and why.
DELTA_SCHEMA = pa.schema([(column, pa.string()) for column in ("customer_key", "change", "old", "new", "reason")])
# A label's part where there is none: no customer has the label.
_NO_LABELS = pa.table({"customer_key": pa.array([], pa.string()), "label": pa.array([], pa.string())})


def _read_part(directory: Path, number: int, columns: list[str]) -> pa.Table | None:
    """Those of ``columns`` part ``number`` of ``directory`` has; None without the part."""
    path = directory / part_name(number)
    if not path.exists():
        return None
    with pq.ParquetFile(path) as part:
        present = [c for c in columns if c in part.schema_arrow.names]
        return part.read(columns=present).select(present)


def _labels(layout: RunLayout) -> dict[str, tuple[Path, str]]:
    """What the deltas follow: name -> (parts directory, column)."""
    labels = {"segment": (layout.segments.assignments, "segment_name"), "band": (layout.propensity_scores.root, "band")}
    if layout.activate.audiences.is_dir():
        for directory in sorted(p for p in layout.activate.audiences.iterdir() if p.is_dir()):
            labels[f"audience:{directory.name}"] = (directory, "group")
    return labels


def before(layout: RunLayout, update: UpdateLayout, partitions: int) -> dict:
    """Step 1: the labels per customer, the propensity scoring and the drift samples, as the
    outputs stand. The labels' parts are kept as they are (`_keep_part`); the scoring's keys
    and scores, and the features' recency, are copied, and the samples taken, on a thread per
    core: the time goes to Parquet's reads and writes, which leave Python's lock."""
    labels = _labels(layout)
    kept = [(directory, update.before / _label_directory(name)) for name, (directory, _) in labels.items()]
    scores, recency = ScoresLayout(update.before / "scores"), update.before / "recency"
    copies = [(layout.propensity_scores.root, "score", scores.root, "score"),
              (layout.features.root, "recency_days", recency, "recency_days")]  # fmt: skip
    for target in [target for _, target in kept] + [target for _, _, target, _ in copies]:
        target.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(usable_cores()) as pool:
        # The samples first: the features' is the longest task (where they keep none).
        samples = {}
        for source, (directory, columns) in drift_sources(layout).items():
            kept_one = kept_sample(directory, columns, DRIFT_SAMPLE)
            if kept_one is not None:
                shutil.copyfile(kept_one, update.before / f"sample-{source}.parquet")
            else:
                samples[source] = pool.submit(drift_sample, directory, columns, DRIFT_SAMPLE)
        work = [pool.submit(_keep_part, *keep, number) for keep in kept for number in range(partitions)]
        work += [pool.submit(_copy_part, *copy, number) for copy in copies for number in range(partitions)]
        for done in work:
            done.result()
        for source, sample in samples.items():
            sample.result().to_parquet(update.before / f"sample-{source}.parquet", index=False)
    # The scoring as a scoring directory ``segscale monitor`` reads: keys and scores, and the
    # recency it judges churn by (the features are about to change).
    meta = json.loads(layout.propensity_scores.meta.read_text())
    scores.meta.write_text(json.dumps({**meta, "features": str(recency)}, indent=2) + "\n")
    return {"labels": {name: column for name, (_, column) in labels.items()}}


def _label_directory(name: str) -> str:
    """Where ``before`` keeps label ``name``'s parts, under the update's ``before/``."""
    return name.replace(":", "-")


def _keep_part(source: Path, target: Path, number: int) -> None:
    """Part ``number`` of ``source`` kept in ``target`` as it is: a hard link where the file
    system has them, else a copy. A stage never writes into a published part (it writes its
    output beside and swaps the directories), so the link keeps the old part's contents; it
    took 0.05 ms where reading the keys and the label and writing them took 7."""
    path, kept = source / part_name(number), target / part_name(number)
    if not path.exists():
        return
    kept.unlink(missing_ok=True)  # a rerun of the step
    try:
        os.link(path, kept)
    except OSError:
        shutil.copyfile(path, kept)


def forget_labels(update: UpdateLayout, before_labels: dict[str, str]) -> None:
    """Remove the labels' parts ``before`` kept, once the deltas are written: nothing else
    reads them, and they hold the old outputs' other columns too."""
    for name in before_labels:
        shutil.rmtree(update.before / _label_directory(name), ignore_errors=True)


def _copy_part(source: Path, column: str, target: Path, name: str, number: int) -> None:
    """The keys and ``column`` of part ``number`` of ``source``, the column named ``name``. No
    dictionary of the keys: each is there once, so it would be every key again and an index a row."""
    part = _read_part(source, number, ["customer_key", column])
    if part is not None:
        renamed = part.rename_columns([name if c == column else c for c in part.column_names])
        pq.write_table(renamed, target / part_name(number), use_dictionary=[name])


def deltas(layout: RunLayout, update: UpdateLayout, partitions: int, before_labels: dict[str, str]) -> dict:
    """Step 5: per partition, each customer whose label changed, with old, new and why. The
    partitions are compared on a thread per core (Parquet's reads and the comparisons leave
    Python's lock) and written in their order."""
    labels = _labels(layout)
    names = sorted(set(labels) | set(before_labels))
    with_rows = _customers_with_rows(update)
    moves = pq.read_table(update.moves) if update.moves.exists() else pa.table({"old_key": [], "new_key": []})
    moves = moves.select(["old_key", "new_key"]).cast(pa.schema([("old_key", pa.string()), ("new_key", pa.string())]))
    old_keys = key_numbers(moves["old_key"])
    merged = np.unique(np.concatenate([old_keys, key_numbers(moves["new_key"])]))
    # Each old key once, in the partition it was in.
    moved_from = old_keys % np.uint64(partitions)
    compare = partial(_partition_changes, update=update, labels=labels, names=names, before_labels=before_labels,
                      moves=moves, moved_from=moved_from, merged=merged, with_rows=with_rows)  # fmt: skip
    update.deltas.mkdir(parents=True, exist_ok=True)
    changes = {name: 0 for name in names}
    reasons: dict[str, dict[str, int]] = {}
    with ThreadPoolExecutor(usable_cores()) as pool, pcsv.CSVWriter(update.deltas_csv, DELTA_SCHEMA) as csv:
        for number, pieces in enumerate(pool.map(compare, range(partitions))):
            for piece in pieces:
                _tally(piece, changes, reasons)
            part = pa.concat_tables(pieces)
            pq.write_table(part, update.deltas / part_name(number))
            csv.write_table(part)
    return {"changes": changes, "reasons": reasons, "customers_with_rows": len(with_rows)}


def _partition_changes(number: int, update: UpdateLayout, labels: dict[str, tuple[Path, str]], names: list[str],
                       before_labels: dict[str, str], moves: pa.Table, moved_from: np.ndarray, merged: np.ndarray,
                       with_rows: np.ndarray) -> list[pa.Table]:  # fmt: skip
    """The deltas of partition ``number``, a piece per change: each label's, then the old keys
    of the customers merged out of it."""
    pieces = []
    for name in names:
        old = (_label_part(update.before / _label_directory(name), before_labels[name], number)
               if name in before_labels else _NO_LABELS)  # fmt: skip
        new = _label_part(*labels[name], number) if name in labels else _NO_LABELS
        pieces.append(_label_changes(name, old, new, merged, with_rows))
    return [*pieces, _rekeyed(moves.filter(moved_from == number))]


def _label_part(directory: Path, column: str, number: int) -> pa.Table:
    """Part ``number`` of a label's parts: customer_key and label (none without the part)."""
    part = _read_part(directory, number, ["customer_key", column])
    return _NO_LABELS if part is None else part.rename_columns({column: "label"})


def _customers_with_rows(update: UpdateLayout) -> np.ndarray:
    """The keys of the customers the new rows belong to, once each, as :func:`key_numbers`."""
    files = sorted(update.customers_with_rows.glob("*.parquet")) if update.customers_with_rows.is_dir() else []
    keys = [key_numbers(pq.read_table(path, columns=["customer_key"])["customer_key"]) for path in files]
    return np.unique(np.concatenate(keys)) if keys else np.empty(0, np.uint64)


def _label_changes(name: str, old: pa.Table, new: pa.Table, merged: np.ndarray, with_rows: np.ndarray) -> pa.Table:
    """The customers of a partition whose label ``name`` differs from ``old`` to ``new`` (each a
    part of customer_key and label; a customer only one has lacks the label in the other), in
    the order of their keys, and why: merged, a new customer, new rows, or as-of moved."""
    keys, labels = _outer_join(old, new)
    changed = pc.coalesce(pc.not_equal(*labels), pc.not_equal(*(label.is_null() for label in labels)))
    keys = keys[changed.to_numpy(zero_copy_only=False)]
    old_label, new_label = (label.filter(changed) for label in labels)
    reason = np.select(
        [np.isin(keys, merged, assume_unique=True), old_label.is_null().to_numpy(zero_copy_only=False),
         np.isin(keys, with_rows, assume_unique=True)],
        ["merged", "new customer", "new rows"], "as-of moved",
    )  # fmt: skip
    columns = {"customer_key": key_text(keys), "change": pa.repeat(pa.scalar(name), len(keys)), "old": old_label,
               "new": new_label, "reason": pa.array(reason)}  # fmt: skip
    return pa.table(columns).cast(DELTA_SCHEMA)


def _outer_join(old: pa.Table, new: pa.Table) -> tuple[np.ndarray, list[pa.ChunkedArray]]:
    """Every key either side has, sorted (as pandas' outer merge sorts them), as
    :func:`key_numbers`, and each side's label for each (null where the side lacks the key)."""
    sides = [key_numbers(side["customer_key"]) for side in (old, new)]
    # Each side's keys are sorted already: a stable sort merges the two runs in linear time.
    keys = np.sort(np.concatenate(sides), kind="stable")
    keys = np.delete(keys, np.flatnonzero(keys[1:] == keys[:-1]))  # a key both sides have, once
    labels = []
    for side, side_keys in zip((old, new), sides):
        row = np.full(len(keys), -1)
        row[np.searchsorted(keys, side_keys)] = np.arange(len(side_keys))
        labels.append(side["label"].cast(pa.string()).take(pa.array(row, mask=row < 0)))
    return keys, labels


def _rekeyed(gone: pa.Table) -> pa.Table:
    """A merged customer's old key beside its new one: what a downstream system re-keys."""
    return pa.table({"customer_key": gone["old_key"], "change": pa.repeat(pa.scalar("customer_key"), len(gone)),
                     "old": gone["old_key"], "new": gone["new_key"],
                     "reason": pa.repeat(pa.scalar("merged"), len(gone))}, schema=DELTA_SCHEMA)  # fmt: skip


def _tally(piece: pa.Table, changes: dict[str, int], reasons: dict[str, dict[str, int]]) -> None:
    """Add a partition's rows of one change to the counts of changes and of reasons (reasons
    in their sorted order, the first partition's first: the JSON lists them so)."""
    if not len(piece):
        return
    change = piece["change"][0].as_py()
    changes[change] = changes.get(change, 0) + len(piece)
    counts = reasons.setdefault(change, {})
    for reason, count in zip(*np.unique(piece["reason"].to_numpy(zero_copy_only=False), return_counts=True)):
        counts[reason] = counts.get(reason, 0) + int(count)


def _aged(column: str) -> bool:
    """Whether a feature counts days back from as-of: everyone's grows by the days as-of moved."""
    return column in ("recency_days", "tenure_days") or column.startswith("days_since_")


def drift(layout: RunLayout, update: UpdateLayout, limit: float, days_moved: int) -> dict:
    """Step 6: PSI of each sampled column, before against now; the shifted ones, largest first.
    Days counted back from as-of are compared with before's aged by the days as-of moved: a
    week later every "days since" is 7 more, which is no shift in who the customers are. The
    samples are read, and the columns compared, on a thread per core (Parquet's reads, NumPy's
    quantiles and searches leave Python's lock)."""

    def samples(source: str, directory: Path, columns) -> tuple[pd.DataFrame, pd.DataFrame]:
        before = pd.read_parquet(update.before / f"sample-{source}.parquet")
        return before, drift_sample(directory, columns, DRIFT_SAMPLE)

    def compared(source: str, column: str, before: pd.DataFrame, after: pd.DataFrame) -> dict:
        expected = before[column].to_numpy(dtype="float64", na_value=np.nan) + (days_moved if _aged(column) else 0)
        psi = population_stability(expected, after[column].to_numpy(dtype="float64", na_value=np.nan))
        return {"source": source, "column": column, "psi": round(psi, 4)}

    with ThreadPoolExecutor(usable_cores()) as pool:
        read = {source: pool.submit(samples, source, *where) for source, where in drift_sources(layout).items()}
        comparisons = []
        for source, pending in read.items():
            before, after = pending.result()
            for column in sorted(set(before.columns) & set(after.columns)):
                comparisons.append(pool.submit(compared, source, column, before, after))
        rows = [row for row in (comparison.result() for comparison in comparisons) if np.isfinite(row["psi"])]
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
