"""The phase-1 helpers of the store: row fingerprints, customer keys, bucket files."""

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet
import pytest

from engine.backend import frame_to_arrow, resolve_backend
from engine.ingest import _store
from engine.ingest._merged import MergedAccounts, write_merged_part
from engine.ingest._pseudonym import key_text, pseudonymise

KEY = b"a-test-key-of-some-length"


def _events(backend, rows=50, accounts=7, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"c{i}" for i in rng.integers(0, accounts, rows)],
        "event_type": rng.choice(["view", "click", "cart"], rows),
        "amount": rng.random(rows),
    })  # fmt: skip
    # Valid rows keep the input's index, with gaps where rows were quarantined.
    frame.index = np.arange(0, 3 * rows, 3)
    return frame if backend.name == "cpu" else backend.df.from_pandas(frame)


def _host(frame):
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


def test_a_rows_fingerprint_depends_on_its_values_alone():
    frame = _events(resolve_backend("cpu"), rows=23)
    whole = _store.row_fingerprints(frame)
    assert whole.dtype == "uint64" and whole.index.equals(frame.index)
    # The same row in another partition (another slice, another index) hashes alike.
    pd.testing.assert_series_equal(_store.row_fingerprints(frame.iloc[7:12].reset_index(drop=True)),
                                   whole.iloc[7:12].reset_index(drop=True))  # fmt: skip
    twice = pd.concat([frame.iloc[:1], frame.iloc[:1]])
    assert _store.row_fingerprints(twice).nunique() == 1
    changed = frame.iloc[:1].assign(amount=frame["amount"].iloc[0] + 1e-9)
    assert _store.row_fingerprints(changed).iloc[0] != whole.iloc[0]
    # Categorical codes differ between partitions; their values are what is hashed.
    coded = frame.assign(event_type=pd.Categorical(frame["event_type"], categories=["view", "click", "cart", "x"]))
    pd.testing.assert_series_equal(_store.row_fingerprints(coded), whole)
    assert _store.row_fingerprints(frame.iloc[:0]).empty


def test_attach_keys_gives_merged_accounts_their_customers_key(backend, tmp_path):
    frame = _events(backend)
    write_merged_part(backend.df.DataFrame({"customer_id": ["c1", "c2"], "resolved_id": ["c5", "c5"]}), tmp_path, 0)
    keyed, accounts = _store.attach_keys(frame, MergedAccounts(tmp_path), KEY, partitions=4)
    keyed, accounts = _host(keyed), _host(accounts)

    source = _host(frame)
    resolved = source["customer_id"].replace({"c1": "c5", "c2": "c5"})
    expected_keys, expected_partitions = pseudonymise(resolved.tolist(), KEY, 4)
    assert keyed.index.tolist() == source.index.tolist()
    # Rows carry the key as its number, which is the key's text read as hex.
    assert key_text(keyed[_store.KEY_ORDER].to_numpy()).to_pylist() == expected_keys
    assert keyed["partition"].tolist() == expected_partitions.tolist()
    pd.testing.assert_frame_equal(keyed[source.columns], source, check_dtype=False)
    # Accounts: each distinct id once, with the key its rows got.
    assert sorted(accounts["customer_id"]) == sorted(source["customer_id"].unique())
    by_row = keyed.drop_duplicates("customer_id").set_index("customer_id")
    by_row = by_row.assign(customer_key=key_text(by_row[_store.KEY_ORDER].to_numpy()).to_pylist())[["customer_key", "partition"]]
    pd.testing.assert_frame_equal(
        accounts.set_index("customer_id").loc[by_row.index], by_row, check_dtype=False
    )
    assert keyed.loc[keyed["customer_id"].isin(["c1", "c2", "c5"]), _store.KEY_ORDER].nunique() == 1


def test_attach_keys_refuses_rows_without_an_id():
    frame = pd.DataFrame({"customer_id": pd.Series(["c1", None], dtype="str")})
    with pytest.raises(ValueError, match="quarantined first"):
        _store.attach_keys(frame, MergedAccounts(), KEY, partitions=2)


def test_attach_keys_on_no_rows_keeps_the_id_dtype():
    frame = pd.DataFrame({"customer_id": pd.Series([], dtype="str")})
    keyed, accounts = _store.attach_keys(frame, MergedAccounts(), KEY, 3)
    assert keyed.empty and accounts.empty
    assert accounts["customer_key"].dtype == frame["customer_id"].dtype


def test_bucket_file_holds_each_partitions_rows_in_input_order(backend, tmp_path):
    frame = _events(backend, rows=200)
    keyed, _ = _store.attach_keys(frame, MergedAccounts(), KEY, 5)
    path = tmp_path / "bucket.shards"
    # Partitions 4 (rows removed) and 5 (keys are taken modulo 5) get no rows: their shards
    # are empty, and shard N is still partition N.
    keyed = keyed[keyed["partition"] != 4]
    _store._write_by_partition(frame_to_arrow(keyed), path, partitions=6)

    expected = frame_to_arrow(keyed).to_pandas()
    for number in range(6):
        shard = _store._read_shard(path, number)
        rows = expected[expected["partition"] == number].drop(columns=["partition"]).reset_index(drop=True)
        if number in (4, 5):
            assert shard is None and rows.empty
        else:
            pd.testing.assert_frame_equal(shard.to_pandas(), rows)


def test_bucket_file_is_compressed(tmp_path):
    """At 10M customers uncompressed buckets took 7x the inputs and filled the disk."""
    backend = resolve_backend("cpu")
    keyed, _ = _store.attach_keys(_events(backend, rows=20_000, accounts=500), MergedAccounts(), KEY, 3)
    path = tmp_path / "bucket.shards"
    _store._write_by_partition(frame_to_arrow(keyed), path, partitions=3)
    shards = [_store._read_shard(path, number) for number in range(3)]
    assert path.stat().st_size < 0.5 * sum(shard.nbytes for shard in shards)
    assert sum(shard.num_rows for shard in shards) == len(keyed)


def _write_event_buckets(staging, parts, partitions):
    for index, frame in enumerate(parts):
        frame = frame.assign(ts=pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]"))
        keyed, _ = _store.attach_keys(frame, MergedAccounts(), KEY, partitions)
        keyed[_store.FINGERPRINT] = _store.row_fingerprints(frame).values
        rows = _store.bucket_table(keyed.drop(columns=["customer_id"]), "events")
        _store._write_by_partition(rows, staging / "buckets" / "events" / f"part-{index:05d}.shards", partitions)
        # Text that is not a sort key travels as dictionary codes.
        assert pyarrow.types.is_dictionary(rows.schema.field("event_type").type)


def test_phase_2_drops_duplicates_across_buckets_and_keeps_input_order_on_ties(tmp_path):
    columns = ["customer_id", "ts", "event_type"]
    first = pd.DataFrame([("c1", "2024-01-02", "view"), ("c1", "2024-01-02", "click"), ("c2", "2024-01-01", "view"),
                          ("c1", "2024-01-02", "view")], columns=columns)  # fmt: skip
    second = pd.DataFrame([("c1", "2024-01-02", "view"), ("c1", "2024-01-01", "cart"), ("c1", "2024-01-02", "cart")],
                          columns=columns)  # fmt: skip
    _write_event_buckets(tmp_path, [first, second], partitions=1)
    empty = _store._read_shard(tmp_path / "buckets" / "events" / "part-00000.shards", 0).schema
    result = _store.reduce_bucket("events", 0, staging=tmp_path, out=tmp_path, empty=empty)

    stored = pyarrow.parquet.read_table(tmp_path / "store" / "events" / "part-00000.parquet")
    assert stored.column_names == ["ts", "event_type", "customer_key"]
    assert pyarrow.types.is_string(stored.schema.field("event_type").type)
    keys = dict(zip(["c1", "c2"], pseudonymise(["c1", "c2"], KEY, 1)[0]))
    expected = sorted([
        (keys["c1"], "2024-01-02", ["view", "click", "cart"]),  # input order among equal times
        (keys["c1"], "2024-01-01", ["cart"]),
        (keys["c2"], "2024-01-01", ["view"]),
    ])  # fmt: skip
    rows = stored.to_pandas()
    assert rows["customer_key"].tolist() == [key for key, _, events in expected for _ in events]
    assert rows["event_type"].tolist() == [event for _, _, events in expected for event in events]
    assert result["rows"] == 5 and result["duplicates"] == 2
    assert result["min_ts"] == "2024-01-01 00:00:00+00:00" and result["max_ts"] == "2024-01-02 00:00:00+00:00"


def test_phase_2_writes_a_part_with_the_buckets_columns_when_it_got_no_rows(tmp_path):
    empty = pyarrow.schema([("ts", pyarrow.timestamp("us", tz="UTC")), ("event_type", pyarrow.dictionary(pyarrow.int32(), pyarrow.string())),
                            (_store.FINGERPRINT, pyarrow.uint64()), (_store.KEY_ORDER, pyarrow.uint64())])  # fmt: skip
    result = _store.reduce_bucket("events", 3, staging=tmp_path, out=tmp_path, empty=empty)
    stored = pyarrow.parquet.read_table(tmp_path / "store" / "events" / "part-00003.parquet")
    assert stored.num_rows == 0 and stored.column_names == ["ts", "event_type", "customer_key"]
    assert result == {"rows": 0, "duplicates": 0, "min_ts": None, "max_ts": None}


def test_rows_not_kept_are_keyed_to_no_partition_and_left_out_of_the_bucket(backend, tmp_path):
    source = pd.DataFrame({"customer_id": pd.Series(["c1", None, "c2", "c3", "c1"], dtype="str"),
                           "amount": [1.0, 2.0, 3.0, 4.0, 5.0]})  # fmt: skip
    kept = pd.Series([True, False, True, False, True])
    frame = source if backend.name == "cpu" else backend.df.from_pandas(source)
    keyed, accounts = _store.attach_keys(frame, MergedAccounts(), KEY, 2, kept=kept if backend.name == "cpu" else backend.df.from_pandas(kept))
    keyed, accounts = _host(keyed), _host(accounts)
    # c3 has quarantined rows only: it is no account of this partition.
    assert sorted(accounts["customer_id"]) == ["c1", "c2"]
    assert keyed["partition"].tolist()[1] == 2 and keyed["partition"].tolist()[3] == 2
    assert set(keyed["partition"].iloc[[0, 2, 4]]) <= {0, 1}
    path = tmp_path / "bucket.shards"
    _store._write_by_partition(frame_to_arrow(keyed), path, partitions=2)
    shards = [_store._read_shard(path, number) for number in range(2)]
    amounts = sorted(a for shard in shards if shard is not None for a in shard.column("amount").to_pylist())
    assert amounts == [1.0, 3.0, 5.0]
    with pytest.raises(ValueError, match="quarantined first"):
        _store.attach_keys(source, MergedAccounts(), KEY, 2, kept=pd.Series([True, True, True, False, True]))
