"""Lookups into the merged accounts on disk."""

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.ipc

from engine.ingest import _merged
from engine.ingest._merged import MergedAccounts, write_merged_part


def _pairs(accounts, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"acct-{i}" for i in rng.permutation(accounts)]
    return pd.DataFrame({"customer_id": ids, "resolved_id": [f"root-{i % 17}" for i in range(accounts)]})


def test_lookups_across_files_find_every_merged_account_and_leave_the_rest(tmp_path):
    pairs = _pairs(3000)
    for number, start in enumerate(range(0, len(pairs), 800)):
        write_merged_part(pairs.iloc[start : start + 800], tmp_path, number)
    assert len(list(tmp_path.iterdir())) == 4
    queries = [*pairs["customer_id"].sample(500, random_state=1), "acct-unknown", "", "root-3"]
    expected = dict(zip(pairs["customer_id"], pairs["resolved_id"]))
    assert MergedAccounts(tmp_path).resolve(queries) == [expected.get(q, q) for q in queries]


def test_files_are_sorted_by_hash_and_empty_parts_write_none(tmp_path):
    assert write_merged_part(_pairs(0), tmp_path, 0) == 0
    assert write_merged_part(_pairs(50), tmp_path, 1) == 50
    [path] = tmp_path.iterdir()
    with pyarrow.memory_map(str(path)) as source:
        table = pyarrow.ipc.open_file(source).read_all()
    hashes = table["id_hash"].to_numpy()
    assert (hashes[1:] >= hashes[:-1]).all()
    assert sorted(table["customer_id"].to_pylist()) == sorted(_pairs(50)["customer_id"])


def test_ids_that_share_a_hash_still_resolve_to_their_own_customer(tmp_path, monkeypatch):
    # A hash of the length alone: every id of one length collides with the others.
    monkeypatch.setattr(_merged, "_hash_ids", lambda ids: np.array([len(i) for i in ids], dtype=np.uint64))
    pairs = pd.DataFrame({"customer_id": ["aa", "bb", "cc", "ddd"], "resolved_id": ["r1", "r2", "r3", "r4"]})
    write_merged_part(pairs, tmp_path, 0)
    assert MergedAccounts(tmp_path).resolve(["cc", "bb", "aa", "zz", "ddd", "eee"]) == ["r3", "r2", "r1", "zz", "r4", "eee"]


def test_without_merged_accounts_every_id_is_its_own(tmp_path):
    assert MergedAccounts().resolve(["a", "b"]) == ["a", "b"]
    assert MergedAccounts(tmp_path / "absent").resolve(["a"]) == ["a"]
    assert MergedAccounts(tmp_path).resolve([]) == []
