"""Identity rows in an update: resolution again, and the customers it merges moved (issue 28).

New identity rows are resolved together with the run's own (its ``[inputs.identities]``,
read again, then the new rows: ingest's own screening, guardrails and components), which
gives the merged accounts a full ingest of both would. Every account of the run's identity
map whose customer key that changes has merged into another customer; its stored rows
(every table, the sensitive profile columns, its identity map entries) move to the merged
customer's key and partition (:func:`extract_moved`, then ``_append``'s merge of each
partition). A customer whose accounts would go two ways, or partly stay, was split, which
the store cannot undo (it keeps no account per row): that is refused.

The new identity rows' accounting is the resolution's less the run's: rows read, kept,
quarantined (reason by reason) and duplicates; the quarantine written holds the rejected
rows of both, identifiers hashed as ingest hashes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._tasks import compute_tasks
from ..config import RunConfig
from ..exceptions import UsageError
from ..layout import IngestLayout, RunLayout, part_files, part_name
from ._merged import MergedAccounts
from ._pipeline import _identities
from ._pseudonym import key_numbers, pseudonymise
from ._stored import read_part
from ._read import estimate_rows, read_input

__all__ = ["TARGET", "extract_moved", "resolve_again"]

# The column of a moved row that names the partition it moves to.
TARGET = "_target"


def _combined(first: dict, second: dict, sign: int = 1) -> dict:
    """Two row accountings (read, kept, quarantined by reason, duplicates) added, or with
    ``sign`` -1 the second taken from the first; reasons left with no rows are dropped."""
    quarantined = {reason: first.get("quarantined", {}).get(reason, 0) + sign * second.get("quarantined", {}).get(reason, 0)
                   for reason in sorted(set(first.get("quarantined", {})) | set(second.get("quarantined", {})))}  # fmt: skip
    return {
        **{count: first.get(count, 0) + sign * second.get(count, 0) for count in ("read", "kept", "duplicates")},
        "quarantined": {reason: rows for reason, rows in quarantined.items() if rows},
    }


def resolve_again(config: RunConfig, spec, new_rows, work: IngestLayout, key: bytes, partitions: int, earlier: list, *,
                  client=None, progress=None) -> tuple[MergedAccounts, dict, pd.DataFrame]:  # fmt: skip
    """The merged accounts of the run's identity rows, those of ``earlier`` updates and the
    new ones (written under ``work``), the new rows' accounting, and the moves: each customer
    key that merged into another (``old_key``, ``new_key``). The new rows are kept under
    ``work`` (``identities/``) for the updates after this one.

    ``new_rows`` are ``spec``'s rows as read; ``earlier`` lists (directory of kept rows, their
    accounting) of the updates before.

    Raises
    ------
    UsageError
        The run has no identity input, or the new rows would split a customer.
    """
    layout = RunLayout(config.run.output_dir)
    if "identities" not in config.inputs:
        raise UsageError(f"{spec.path}: the run has no [inputs.identities]; add it and run segscale run --force")
    old = config.inputs["identities"]
    kept = work.root / "identities"
    kept.mkdir(parents=True, exist_ok=True)
    new_rows.compute().to_parquet(kept / part_name(0), index=False)  # an update's rows are few
    frames = [read_input(old), *(dd.read_parquet(directory) for directory, _ in [*earlier, (kept, None)])]
    rows = estimate_rows(old) + estimate_rows(spec) + sum(counts["read"] for _, counts in earlier)
    merged, total, _ = _identities(dd.concat(frames), old, rows, key, config.ingest, work)
    before = json.loads(layout.ingest.summary.read_text())["tables"].get("identities", {})
    for _, counts in earlier:
        before = _combined(before, counts)
    mapping = pd.concat([pq.read_table(path).to_pandas() for path in part_files(layout.ingest.identity_mapping)],
                        ignore_index=True)  # fmt: skip
    mapping["new_key"], _ = pseudonymise(merged.resolve(mapping["customer_id"].astype(str).tolist()), key, partitions)
    pairs = mapping[["customer_key", "new_key"]].drop_duplicates()
    ways = pairs.groupby("customer_key")["new_key"].nunique()
    if (ways > 1).any():
        split = ways[ways > 1].index[0]
        raise UsageError(
            f"{spec.path}: these identity rows split customer {split} (an identifier passed its cap, or a link went): the "
            "store keeps no account per row, so put them in [inputs.identities] and run segscale run --force"
        )
    moves = pairs[pairs["customer_key"] != pairs["new_key"]].rename(columns={"customer_key": "old_key"})
    # The new rows' accounting: the resolution's over all rows less the run's and earlier updates'.
    return merged, _combined(total, before, -1), moves.sort_values("old_key", ignore_index=True)


def _extract_task(name: str, source: str, target: str, old_keys: pa.Array, new_keys: pa.Array,
                  partitions: int) -> list[int]:  # fmt: skip
    """The rows of ``source`` (a part of table ``name``, with its deltas) whose key merged
    away, re-keyed, with the partition each goes to, written to ``target``; returns those
    partitions."""
    table = read_part(source, name)
    rows = table.filter(pc.is_in(table["customer_key"], value_set=old_keys))
    if not rows.num_rows:
        return []
    keys = pc.take(new_keys, pc.index_in(rows["customer_key"], value_set=old_keys))
    goes_to = (key_numbers(keys) % np.uint64(partitions)).astype(np.int32)
    position = rows.schema.get_field_index("customer_key")
    rows = rows.set_column(position, rows.schema.field(position), keys.cast(rows.schema.field(position).type))
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.append_column(TARGET, pa.array(goes_to)), target)
    return sorted(set(goes_to.tolist()))


def extract_moved(parts: dict, moves: pd.DataFrame, partitions: int, moved: Path, *, client=None,
                  progress=None) -> tuple[dict, dict]:  # fmt: skip
    """For every stored table of ``parts`` (name -> (part N's path, ...)), the rows of the
    customers in ``moves``, re-keyed, under ``moved/<name>/``. Returns, per table, the
    partitions rows left and the partitions they go to."""
    if moves.empty:
        return {}, {}
    old_keys = pa.array(moves["old_key"].astype(str), pa.large_string())
    new_keys = pa.array(moves["new_key"].astype(str), pa.large_string())
    tasks, owners = [], []
    for name, (source, _) in parts.items():
        for number in range(partitions):
            if Path(source(number)).exists():
                target = str(moved / name / part_name(number))
                tasks.append(dask.delayed(_extract_task)(name, str(source(number)), target, old_keys, new_keys, partitions))
                owners.append((name, number))
    results = compute_tasks(tasks, client, progress, "update: merged customers")
    sources, targets = {}, {}
    for (name, number), goes_to in zip(owners, results):
        if goes_to:
            sources.setdefault(name, set()).add(number)
            targets.setdefault(name, set()).update(goes_to)
    return sources, targets
