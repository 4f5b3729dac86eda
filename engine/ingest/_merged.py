"""The accounts identity resolution merged, kept on disk and looked up without being loaded.

Phase 1 asks, for the few thousand accounts of each input partition, which customer each
belongs to. Handing every task the whole map (``customer_id`` -> ``resolved_id``) cost every
worker a copy, the client another, and each task a join over all of it: memory and time per
task grew with the number of customers. Here the map is a few Arrow IPC files, one per
partition of it (the ingest stage bounds their rows, so their number stays small), each
sorted by a 64-bit hash of ``customer_id``. A lookup memory-maps each file, binary-searches
the hashes and compares the ids of the candidates, so it costs (ids looked up) x log(map
rows), and the pages it touches are the operating system's file cache, shared by the
workers, not their heaps.
"""

from __future__ import annotations

from pathlib import Path

import numpy
import pandas
import pyarrow
import pyarrow.ipc

from ..backend import to_host

__all__ = ["MergedAccounts", "write_merged_part"]

_HASH = "id_hash"


def _hash_ids(ids: numpy.ndarray) -> numpy.ndarray:
    """uint64 hashes of an object array of str; the same in every process (fixed hash key)."""
    return pandas.util.hash_array(ids, categorize=False)


def write_merged_part(part, directory: str, number: int) -> int:
    """Write one partition of the merged accounts (``customer_id``, ``resolved_id``, pandas
    or cuDF) as lookup file ``number`` under ``directory``; returns its rows.

    A partition without rows writes no file.
    """
    part = to_host(part)
    if not len(part):
        return 0
    ids = part["customer_id"].to_numpy(dtype=object)
    hashes = _hash_ids(ids)
    order = numpy.argsort(hashes, kind="stable")
    table = pyarrow.table({
        _HASH: hashes[order],
        "customer_id": pyarrow.array(ids[order], pyarrow.string()),
        "resolved_id": pyarrow.array(part["resolved_id"].to_numpy(dtype=object)[order], pyarrow.string()),
    })  # fmt: skip
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    with pyarrow.ipc.new_file(str(target / f"merged-{number:05d}.arrow"), table.schema) as writer:
        writer.write_table(table, max_chunksize=len(table))
    return len(part)


class MergedAccounts:
    """Lookups into the merged accounts written by :func:`write_merged_part`.

    Only the directory travels with a task. ``directory=None`` (or one without files) means
    that no account merged: every account is its own customer.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = None if directory is None else str(directory)

    def __repr__(self) -> str:
        return f"MergedAccounts({self.directory!r})"

    def _files(self) -> list[Path]:
        if self.directory is None:
            return []
        return sorted(Path(self.directory).glob("merged-*.arrow"))

    def resolve(self, customer_ids) -> list[str]:
        """The resolved id of each of ``customer_ids`` (str): its own where it did not merge."""
        ids = numpy.asarray(customer_ids, dtype=object)
        resolved = ids.copy()
        if not len(ids):
            return resolved.tolist()
        hashes = _hash_ids(ids)
        for path in self._files():
            with pyarrow.memory_map(str(path)) as source:
                batch = pyarrow.ipc.open_file(source).get_batch(0)
                known = batch.column(_HASH).to_numpy()
                at = numpy.minimum(numpy.searchsorted(known, hashes), len(known) - 1)
                candidates = numpy.flatnonzero(known[at] == hashes)
                if not len(candidates):
                    continue
                stored_ids = batch.column("customer_id")
                stored_resolved = batch.column("resolved_id")
                same = stored_ids.take(at[candidates]).to_numpy(zero_copy_only=False) == ids[candidates]
                resolved[candidates[same]] = stored_resolved.take(at[candidates[same]]).to_numpy(zero_copy_only=False)
                # Two ids with one hash sit side by side: look past the first for the rest.
                for position in candidates[~same]:
                    row = at[position] + 1
                    while row < len(known) and known[row] == hashes[position]:
                        if stored_ids[row].as_py() == ids[position]:
                            resolved[position] = stored_resolved[row].as_py()
                            break
                        row += 1
        return resolved.tolist()
