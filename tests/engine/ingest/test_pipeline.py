import dataclasses
import errno
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config import load_config
from engine.exceptions import InputDataError, SegscaleError, UsageError
from engine.ingest import KEY_ENV_VAR, _merged, _pipeline, _store, ingest
from engine.synth import WorldSpec, generate_world

SPEC = dict(customers=3_000, seed=21, chunk_size=1_000)


def _config(world: Path, out: Path, **ingest_options):
    config = load_config(world / "segscale.toml")
    return dataclasses.replace(
        config,
        run=dataclasses.replace(config.run, output_dir=out),
        ingest=dataclasses.replace(config.ingest, **ingest_options),
    )


def _read(path):
    return pq.read_table(path).to_pandas()


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    generate_world(out, WorldSpec(**SPEC))
    return out


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    generate_world(out, WorldSpec(**SPEC, dirt=0.02))
    return out


@pytest.fixture(scope="module")
def ingested(dirty_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = ingest(_config(dirty_world, out, partitions=4))
    return summary, out / "ingest"


def _faulty_rows(world, table):
    """Per fault, the distinct faulty rows truth names (duplicate copies aside), per part file.

    Two faulty rows can become the same text (two views of one product given the same
    malformed timestamp): the data then holds an exact duplicate, and ingest counts it so.
    """
    truth = _read(world / "truth" / "dirty_rows")
    truth = truth[(truth["table"] == table) & (truth["fault"] != "duplicate")]
    distinct, collapsed = {}, 0
    for name, rows in truth.groupby("file"):
        part = _read(world / table / name)
        faulty = part.iloc[rows["row"].to_numpy()].assign(fault=rows["fault"].to_numpy())
        unique = faulty.drop_duplicates()
        collapsed += len(faulty) - len(unique)
        for fault, count in unique["fault"].value_counts().items():
            distinct[fault] = distinct.get(fault, 0) + int(count)
    planted_duplicates = int(((_read(world / "truth" / "dirty_rows")["table"] == table)
                              & (_read(world / "truth" / "dirty_rows")["fault"] == "duplicate")).sum())
    return distinct, collapsed, planted_duplicates, len(truth)


def test_every_row_is_kept_quarantined_or_a_counted_duplicate(ingested, dirty_world, clean_world):
    summary, out = ingested
    recorded = json.loads((out / "ingest.json").read_text())["tables"]
    assert recorded == summary.tables
    for table in ("transactions", "events", "customers"):
        counts = summary.tables[table]
        assert counts["read"] == counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]
        faults, collapsed, planted_duplicates, faulty = _faulty_rows(dirty_world, table)
        # Each fault lands in quarantine under its own name, no more and no fewer.
        assert counts["quarantined"] == faults, table
        # Clean rows that happen to repeat exactly (two views in the same second) are
        # duplicates too. Apart from those and the rows a fault replaced, every clean row is kept.
        clean = _read(clean_world / table)
        natural_duplicates = int(clean.duplicated().sum())
        assert counts["duplicates"] == planted_duplicates + natural_duplicates + collapsed, table
        assert counts["kept"] == len(clean) - natural_duplicates - faulty, table
        stored = sum(pq.read_metadata(p).num_rows for p in (out / "store" / table).glob("*.parquet"))
        assert stored == counts["kept"]
        quarantined = sum(pq.read_metadata(p).num_rows for p in (out / "quarantine" / table).glob("*.parquet"))
        assert quarantined == sum(counts["quarantined"].values())


def test_each_phase_reports_its_time_and_peak_memory(ingested):
    summary, out = ingested
    assert list(summary.phases) == ["identities", "phase 1", "phase 2"]
    assert json.loads((out / "ingest.json").read_text())["phases"] == summary.phases
    for phase in summary.phases.values():
        # This process alone holds more than 50 MB; the whole run takes longer than any phase.
        assert 0.05 < phase["peak_rss_gib"] < 8 and 0 < phase["seconds"] < summary.seconds
        # Each part's peak may come at another moment than the tree's, but never exceeds it.
        assert 0 < phase["client_peak_rss_gib"] <= phase["peak_rss_gib"]
        assert 0 <= phase["worker_peak_rss_gib"] <= phase["peak_rss_gib"]
    assert sum(p["seconds"] for p in summary.phases.values()) <= summary.seconds


def test_quarantine_keeps_original_text_and_a_reason(ingested):
    _, out = ingested
    rows = _read(out / "quarantine" / "transactions")
    assert set(rows["reason"]) == {
        "bad_timestamp", "future_timestamp", "negative_amount", "non_numeric_amount", "blank_customer_id",
    }  # fmt: skip
    bad_amounts = rows[rows["reason"] == "non_numeric_amount"]["amount"]
    assert bad_amounts.isin(["N/A", "12,50", "$19.99", "#VALUE!"]).sum() > 0  # as written, not parsed
    assert set(rows.columns) >= {"customer_id", "ts", "amount", "order_id", "reason"}


def _surviving_links(world):
    """Groups of accounts still linked by an identifier once dirt has junked some of them."""
    identities = _read(world / "identities")
    truth = _read(world / "truth" / "dirty_rows")
    junk = truth[(truth["table"] == "identities") & (truth["fault"] == "junk_identifier")]
    junk_rows = set()
    offset = 0
    for part in sorted((world / "identities").glob("*.parquet")):
        junk_rows |= {offset + row for row in junk.loc[junk["file"] == part.name, "row"]}
        offset += pq.read_metadata(part).num_rows
    parent = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for position, row in enumerate(identities.itertuples()):
        value = row.id_value.strip().lower()
        if row.id_type == "phone":
            value = "".join(ch for ch in value if ch.isdigit())
        if position not in junk_rows:
            parent[root(row.customer_id)] = root((row.id_type, value))
    return {customer: root(customer) for customer in identities["customer_id"]}


def test_identity_junk_is_blocked_and_surviving_links_are_recovered(ingested, dirty_world):
    summary, out = ingested
    counts = summary.tables["identities"]
    assert counts["read"] == counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]
    truth = _read(dirty_world / "truth" / "dirty_rows")
    junk = int((truth["fault"] == "junk_identifier").sum())
    planted_duplicates = int(((truth["table"] == "identities") & (truth["fault"] == "duplicate")).sum())
    # A junk row can repeat another junk row of the same account exactly; then it is a duplicate.
    assert counts["quarantined"]["blocked_identifier"] + counts["duplicates"] - planted_duplicates == junk
    mapping = _read(out / "identity" / "mapping")
    expected = pd.Series(_surviving_links(dirty_world), name="group").rename_axis("customer_id").reset_index()
    linked = mapping.merge(expected, on="customer_id")
    assert len(linked) == len(mapping)
    # Precision and recall 1 against the links the data still holds.
    assert (linked.groupby("group")["customer_key"].nunique() == 1).all()
    assert (linked.groupby("customer_key")["group"].nunique() == 1).all()
    # ... which are nearly all the planted ones: dirt junked only a few linking rows.
    accounts = _read(dirty_world / "truth" / "accounts").merge(mapping, on="customer_id")
    split = (accounts.groupby("person_id")["customer_key"].nunique() > 1).sum()
    multi = (accounts.groupby("person_id")["customer_id"].nunique() > 1).sum()
    assert multi > 100 and split <= 0.1 * multi
    assert (accounts.groupby("customer_key")["person_id"].nunique() == 1).all()  # never two people


def test_store_is_clustered_by_customer_and_sorted(ingested):
    summary, out = ingested
    meta = json.loads((out / "store" / "_store.json").read_text())
    assert meta["partitions"] == summary.partitions == 4
    part_of = {}
    for table in ("transactions", "events", "customers"):
        parts = sorted((out / "store" / table).glob("part-*.parquet"))
        assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(4)]
        assert meta["tables"][table]["rows_per_partition"] == [pq.read_metadata(p).num_rows for p in parts]
        for number, part in enumerate(parts):
            rows = _read(part)
            assert "customer_id" not in rows.columns and rows["customer_key"].str.match(r"^k[0-9a-f]{16}$").all()
            order = ["customer_key", "ts"] if "ts" in rows.columns else ["customer_key"]
            assert rows.equals(rows.sort_values(order, ignore_index=True))
            for key in rows["customer_key"].unique():
                # Every customer lives in one part number, the same in every table.
                assert part_of.setdefault(key, number) == number
    events = meta["tables"]["events"]
    assert events["min_ts"] >= "2024-01-01" and events["max_ts"] < "2026-01-01"


def test_no_direct_identifier_or_key_reaches_any_output(ingested, clean_world):
    _, out = ingested
    profiles = _read(clean_world / "customers")
    identities = _read(clean_world / "identities")
    planted = set(profiles["email"].str.lower()) | set(profiles["phone"].dropna())
    planted |= set(identities.loc[identities["id_type"] != "device_id", "id_value"].str.strip().str.lower())
    planted |= set(profiles["full_name"])
    seen = set()
    for path in out.rglob("*"):
        if path.suffix in (".parquet", ".arrow"):  # the merged accounts are Arrow files
            frame = _read(path) if path.suffix == ".parquet" else pa.ipc.open_file(str(path)).read_pandas()
            for column in frame.columns:
                if frame[column].dtype == object or str(frame[column].dtype).startswith("str"):
                    seen |= set(frame[column].dropna().astype(str).str.strip().str.lower())
        elif path.is_file():
            text = path.read_text().lower()
            assert not any(value.lower() in text for value in list(planted)[:2000]), path
        if path.is_file():
            assert b"synthetic-world-21" not in path.read_bytes(), path  # the key is never written
    assert not (seen & {value.lower() for value in planted})
    sensitive = _read(out / "sensitive" / "customers")
    assert set(sensitive.columns) == {"customer_key", "gender", "age_band"}
    assert not {"gender", "age_band", "email", "phone", "full_name"} & set(_read(out / "store" / "customers").columns)


def test_ingest_is_deterministic(ingested, dirty_world, tmp_path, monkeypatch):
    _, first = ingested
    # However the merged accounts are split into lookup files.
    files = []

    def write_merged_part(part, directory, number):
        files.append(_merged.write_merged_part(part, directory, number))
        return files[-1]

    monkeypatch.setattr(_pipeline, "MERGED_ROWS_PER_FILE", 7)
    monkeypatch.setattr(_pipeline, "write_merged_part", write_merged_part)
    ingest(_config(dirty_world, tmp_path, partitions=4))
    assert len([rows for rows in files if rows]) > 1
    second = tmp_path / "ingest"
    for path in sorted((first / "store").rglob("*.parquet")) + sorted((first / "identity").rglob("*.parquet")):
        twin = second / path.relative_to(first)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(twin.read_bytes()).digest(), path


def test_rerun_replaces_the_previous_output(dirty_world, tmp_path):
    config = _config(dirty_world, tmp_path, partitions=2)
    ingest(config)
    (tmp_path / "ingest" / "stale.txt").write_text("from before")
    ingest(config)
    assert not (tmp_path / "ingest" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ingest"]


def test_a_key_is_required(dirty_world, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    with pytest.raises(UsageError, match=KEY_ENV_VAR):
        ingest(_config(dirty_world, tmp_path, pseudonym_key=None))
    monkeypatch.setenv(KEY_ENV_VAR, "a-key-from-the-environment")
    summary = ingest(_config(dirty_world, tmp_path, pseudonym_key=None, partitions=1))
    assert summary.tables["transactions"]["kept"] > 0


def test_a_full_disk_is_one_line_and_leaves_no_staging(dirty_world, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "Error writing bytes to file")

    monkeypatch.setattr(_store, "_write_by_partition", full)
    with pytest.raises(SegscaleError, match=r"no space left on the disk holding .* GiB free now.*\[run\] output_dir") as caught:
        ingest(_config(dirty_world, tmp_path / "run", partitions=2))
    assert not isinstance(caught.value, UsageError)  # exit code 1: the work failed, the input is fine
    assert "\n" not in str(caught.value)
    assert list((tmp_path / "run").iterdir()) == []


def test_inputs_too_big_for_the_free_disk_are_said_before_the_work(dirty_world, tmp_path, monkeypatch, caplog):
    config = _config(dirty_world, tmp_path, partitions=1)
    ingest(config)
    assert "may run out of space" not in caplog.text
    monkeypatch.setattr(_pipeline, "DISK_BYTES_PER_ROW", 2**50)
    ingest(config)
    (warning,) = [record for record in caplog.records if "may run out of space" in record.getMessage()]
    assert str(tmp_path / "ingest") in warning.getMessage()


def _csv_config(tmp_path, text, header_map=""):
    (tmp_path / "tx.csv").write_text(text)
    (tmp_path / "run.toml").write_text(
        '[inputs.transactions]\npath = "tx.csv"\n' + header_map + '[ingest]\npseudonym_key = "k-for-tests"\n'
    )
    return load_config(tmp_path / "run.toml")


def test_missing_required_column_names_file_and_column(tmp_path):
    config = _csv_config(tmp_path, "cust,ts,amount\nA,2024-01-01 10:00:00,3\n", '[inputs.transactions.columns]\ncustomer_id = "client"\n')
    with pytest.raises(InputDataError) as error:
        ingest(config)
    message = str(error.value)
    assert "tx.csv" in message and "'client'" in message and "customer_id" in message and "\n" not in message


def test_empty_input_is_an_error(tmp_path):
    with pytest.raises(InputDataError, match="tx.csv: no rows"):
        ingest(_csv_config(tmp_path, "customer_id,ts,amount\n"))
    assert not (tmp_path / "run" / "ingest").exists()


def test_an_input_with_no_row_kept_is_an_error_naming_the_reason(tmp_path):
    """Integer timestamps in Parquet: every row quarantined, and a run on nothing is no success."""
    pd.DataFrame({"customer_id": ["A", "B", "C"], "ts": [1_700_000_000, 1_700_000_100, 1_700_000_200],
                  "amount": [1.0, 2.0, 3.0]}).to_parquet(tmp_path / "tx.parquet")  # fmt: skip
    (tmp_path / "run.toml").write_text('[inputs.transactions]\npath = "tx.parquet"\n[ingest]\npseudonym_key = "k-for-tests"\n')
    with pytest.raises(InputDataError, match=r"tx.parquet: every one of the 3 transactions rows was rejected, 3 as bad_timestamp"):
        ingest(load_config(tmp_path / "run.toml"))
    assert not (tmp_path / "run" / "ingest").exists()


def test_unreadable_input_is_an_error(tmp_path):
    (tmp_path / "tx.parquet").write_text("this is not parquet")
    (tmp_path / "run.toml").write_text('[inputs.transactions]\npath = "tx.parquet"\n[ingest]\npseudonym_key = "k-for-tests"\n')
    with pytest.raises(InputDataError, match="tx.parquet: cannot read as parquet"):
        ingest(load_config(tmp_path / "run.toml"))


def test_text_that_is_not_utf8_names_the_byte_and_line_and_reads_in_its_encoding(tmp_path):
    text = "customer_id,ts,amount,product\nA,2024-01-01 10:00:00,3,cup\nB,2024-01-02 10:00:00,4,caf\u00e9\n"
    (tmp_path / "tx.csv").write_bytes(text.encode("latin-1"))
    (tmp_path / "run.toml").write_text('[inputs.transactions]\npath = "tx.csv"\n[ingest]\npseudonym_key = "k-for-tests"\n')
    at = text.encode("latin-1").index(b"\xe9")
    with pytest.raises(InputDataError, match=rf"tx.csv: byte {at} \(line 3\) is not utf-8 text; set \[inputs.transactions\] encoding"):
        ingest(load_config(tmp_path / "run.toml"))
    assert not (tmp_path / "run" / "ingest").exists()
    (tmp_path / "run.toml").write_text(
        '[inputs.transactions]\npath = "tx.csv"\nencoding = "latin-1"\n[ingest]\npseudonym_key = "k-for-tests"\n'
    )
    assert ingest(load_config(tmp_path / "run.toml")).tables["transactions"]["kept"] == 2


def test_a_truncated_gzip_names_the_file_and_where_it_ends(tmp_path):
    import gzip

    rows = "".join(f"C{i},2024-01-01 10:00:00,{i}\n" for i in range(20_000))
    packed = gzip.compress(("customer_id,ts,amount\n" + rows).encode())
    (tmp_path / "tx.csv.gz").write_bytes(packed[: len(packed) // 2])
    (tmp_path / "run.toml").write_text('[inputs.transactions]\npath = "tx.csv.gz"\n[ingest]\npseudonym_key = "k-for-tests"\n')
    with pytest.raises(InputDataError, match=r"tx.csv.gz: not a complete gzip file .* bytes of text \(line [\d,]+\)"):
        ingest(load_config(tmp_path / "run.toml"))


def test_exact_duplicates_are_judged_on_whole_source_rows(tmp_path):
    # Two lines of one invoice alike in every canonical column but the product: both stay.
    text = (
        "customer_id,ts,amount,order_id,product\n"
        "A,2024-01-01 10:00:00,3.5,1,cup\n"
        "A,2024-01-01 10:00:00,3.5,1,saucer\n"
        "A,2024-01-01 10:00:00,3.5,1,saucer\n"
        ",2024-01-01 10:00:00,3.5,1,saucer\n"
    )
    summary = ingest(_csv_config(tmp_path, text))
    assert summary.tables["transactions"] == {
        "read": 4, "kept": 2, "quarantined": {"blank_customer_id": 1}, "duplicates": 1,
    }  # fmt: skip


def test_both_backends_store_the_same_customers(backend, dirty_world, ingested, tmp_path):
    """The GPU path is the same code through the backend layer; where a GPU exists, it must
    write the same store as the CPU."""
    _, cpu_out = ingested
    config = _config(dirty_world, tmp_path, partitions=4)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, backend=backend.name))
    summary = ingest(config)
    assert summary.tables == json.loads((cpu_out / "ingest.json").read_text())["tables"]
    for table in ("transactions", "events", "customers"):
        ours = _read(tmp_path / "ingest" / "store" / table)
        theirs = _read(cpu_out / "store" / table)
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)


def test_inputs_can_be_fsspec_urls(tmp_path):
    import fsspec

    with fsspec.open("memory://segscale-test/tx.csv", "w") as remote:
        remote.write("customer_id,ts,amount\nA,2024-01-01 10:00:00,3\nB,2024-01-02 11:00:00,4\n,2024-01-03 12:00:00,5\n")
    (tmp_path / "run.toml").write_text(
        '[inputs.transactions]\npath = "memory://segscale-test/tx.csv"\n[ingest]\npseudonym_key = "k-for-tests"\n'
    )
    summary = ingest(load_config(tmp_path / "run.toml"))
    assert summary.tables["transactions"] == {"read": 3, "kept": 2, "quarantined": {"blank_customer_id": 1}, "duplicates": 0}
