"""segscale update against a full run over all the data at the same as-of (issue 28).

A generated world is split in time: the base run reads every row before 2025-10-03 and runs
as of that day; a week of later rows of the customers of store partition 0 arrives as the
update, as of 2025-10-10. The reference ingests the old files and the new ones together.
"""

import dataclasses
import hashlib
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.config import ActivateOptions, Audience, Condition, load_config
from engine.ingest import read_store_files, read_store_table
from engine.layout import RunLayout, part_files
from engine.pipeline import run_pipeline

SPLIT, UPDATE_AS_OF = "2025-10-03", date(2025, 10, 10)
PARTITIONS = 4


@pytest.fixture(scope="module")
def world(backtest_world, tmp_path_factory):
    """The base run's directory, the new files, and the configs of the base run and the reference."""
    source, config_path = backtest_world
    root = tmp_path_factory.mktemp("update")
    for table in ("transactions", "events"):
        rows = pd.read_parquet(source / table)
        (root / "old" / table).mkdir(parents=True)
        rows[rows["ts"].astype(str) < SPLIT].to_parquet(root / "old" / table / "part-00000.parquet", index=False)
    config = load_config(config_path)
    old = {table: dataclasses.replace(config.inputs[table], path=str(root / "old" / table))
           for table in ("transactions", "events")}  # fmt: skip
    base = dataclasses.replace(
        config, inputs={**config.inputs, **old},
        run=dataclasses.replace(config.run, output_dir=root / "base", as_of=date.fromisoformat(SPLIT)),
        ingest=dataclasses.replace(config.ingest, partitions=PARTITIONS),
        segments=dataclasses.replace(config.segments, stability_resamples=3, micro_k=12, niche_points=2_000, k_max=6),
        activate=ActivateOptions(campaign="autumn", consent="assumed", audiences=(
            Audience("likely-buyers", "email", {"band": Condition(values=("high",))}),)),
    )  # fmt: skip
    run_pipeline(base, report=False)
    # New rows: a week after the split, of the customers in store partition 0 only.
    layout = RunLayout(root / "base")
    ids = set(pd.read_parquet(layout.ingest.identity_mapping / "part-00000.parquet")["customer_id"].astype(str))
    new = {}
    for table in ("transactions", "events"):
        rows = pd.read_parquet(source / table)
        ts = rows["ts"].astype(str)
        mine = rows["customer_id"].astype(str).isin(ids)
        week = rows[(ts >= SPLIT) & (ts < UPDATE_AS_OF.isoformat()) & mine]
        assert len(week) > 10
        # Dirt: a row already in the store (an exact duplicate) and one with no time.
        stored, broken = rows[(ts < SPLIT) & mine].iloc[[0]], week.iloc[[0]].assign(ts="not a time")
        week = pd.concat([week, stored, broken], ignore_index=True)
        new[table] = root / "new" / f"{table}.parquet"
        new[table].parent.mkdir(exist_ok=True)
        week.to_parquet(new[table], index=False)
        # The reference reads the old file, then the new one.
        (root / "all" / table).mkdir(parents=True)
        shutil.copy(root / "old" / table / "part-00000.parquet", root / "all" / table / "part-00000.parquet")
        shutil.copy(new[table], root / "all" / table / "part-00001.parquet")
    everything = {table: dataclasses.replace(config.inputs[table], path=str(root / "all" / table))
                  for table in ("transactions", "events")}  # fmt: skip
    reference = dataclasses.replace(base, inputs={**config.inputs, **everything},
                                    run=dataclasses.replace(base.run, output_dir=root / "reference", as_of=UPDATE_AS_OF))  # fmt: skip
    run_pipeline(reference, stages=["ingest", "features"], report=False)
    return {"root": root, "base": base, "reference": reference, "new": new}


def _copy_of_base(world, directory: Path):
    shutil.copytree(world["root"] / "base", directory)
    return dataclasses.replace(world["base"], run=dataclasses.replace(world["base"].run, output_dir=directory))


def _digests(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in part_files(directory)}


def _table(directory: Path) -> pd.DataFrame:
    return pd.concat([pq.read_table(path).to_pandas() for path in part_files(directory)], ignore_index=True)


def _same_store(run: RunLayout, reference: RunLayout) -> None:
    """Every part, with the delta files an update added to it, reads as a full ingest's part
    (text read dictionary-encoded compares by value: a dictionary's order is the file's)."""
    from engine.ingest import read_store_table

    def read(layout, table, number):
        rows = read_store_table(layout.store.root, table, number, None, None).to_pandas()
        return rows.astype({name: object for name, kind in rows.dtypes.items() if kind == "category"})

    for table in ("transactions", "events"):
        for number in range(PARTITIONS):
            pd.testing.assert_frame_equal(read(run, table, number), read(reference, table, number), check_exact=True)


def test_an_update_gives_what_a_full_run_over_all_the_data_gives(world, tmp_path, monkeypatch):
    from engine.features import _pipeline as features
    from engine.propensity import score_propensity
    from engine.segments import assign_segments
    from engine.update import update_run
    from engine.value import rescore_value

    config = _copy_of_base(world, tmp_path / "run")
    run, reference = RunLayout(tmp_path / "run"), RunLayout(world["root"] / "reference")
    stored = {table: _digests(run.store.table(table)) for table in ("transactions", "events")}
    read = []
    monkeypatch.setattr(features, "read_store_table", lambda *a: read.append(a[1:3]) or read_store_table(*a))
    monkeypatch.setattr(features, "read_store_files", lambda *a: read.append(a[0]) or read_store_files(*a))
    summary = update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    # The events the base run's features summed up are not read again: only the new rows.
    assert [r for r in read if r[0] == "events" or isinstance(r, list)] == [
        [run.store.table("events") / "_deltas/part-00000/000001.parquet"]
    ]

    assert summary.partitions_appended == 1 and summary.partitions_rewritten == 0
    assert summary.as_of == UPDATE_AS_OF.isoformat()
    for table, counts in summary.tables.items():
        assert counts["read"] == counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]
        assert counts["duplicates"] >= 1 and sum(counts["quarantined"].values()) == 1
        assert len(pd.read_parquet(summary.update_dir / "quarantine" / table)) == 1
        # Only partition 0 received rows, as one delta file: no part was rewritten.
        assert _digests(run.store.table(table)) == stored[table]
        deltas = sorted(path.relative_to(run.store.table(table)) for path in run.store.table(table).rglob("_deltas/*/*"))
        assert deltas == [Path("_deltas/part-00000/000001.parquet")]
    _same_store(run, reference)
    # Bit-identical features, and the saved models give the same assignments and scores on them.
    pd.testing.assert_frame_equal(_table(run.features.root), _table(reference.features.root), check_exact=True)
    assign_segments(reference.features.root, run.segments.root, tmp_path / "segments", backend_name="cpu")
    pd.testing.assert_frame_equal(_table(run.segments.assignments), _table(tmp_path / "segments" / "assignments"))
    score_propensity(run.propensity_model.root, reference.features.root, tmp_path / "scores")
    pd.testing.assert_frame_equal(_table(run.propensity_scores.root), _table(tmp_path / "scores"), check_exact=True)
    rescore_value(reference.store.root, run.value.root, tmp_path / "value", as_of=UPDATE_AS_OF, backend_name="cpu")
    pd.testing.assert_frame_equal(_table(run.value.customers), _table(tmp_path / "value" / "customers"), check_exact=True)

    # The deltas: each change once, with a reason; customers with new rows are said to have them.
    deltas = pd.read_csv(summary.update_dir / "deltas.csv")
    assert set(deltas["reason"]) <= {"new customer", "new rows", "as-of moved"}
    # The audience was rebuilt from the new scores: its deltas are the customers who entered
    # (old empty) or left it (new empty), as the before and after audience files say.
    audience = pd.read_parquet(run.activate.audience("likely-buyers"))
    entered = deltas[(deltas["change"] == "audience:likely-buyers") & deltas["old"].isna()]
    assert set(entered["customer_key"]) <= set(audience["customer_key"])
    assert "audience:likely-buyers" in summary.changes
    assert deltas.groupby("change").size().to_dict() == {k: v for k, v in summary.changes.items() if v}
    assert not deltas.duplicated(["customer_key", "change"]).any()
    assert (deltas["old"].astype(str) != deltas["new"].astype(str)).all()
    assert len(_table(summary.update_dir / "deltas")) == len(deltas)
    # Exactly the customers whose segment the base run and the update give differently.
    segments = [_table(RunLayout(root).segments.assignments)[["customer_key", "segment_name"]].set_index("customer_key")
                for root in (world["root"] / "base", run.root)]  # fmt: skip
    both = segments[0].join(segments[1], how="outer", lsuffix="_old", rsuffix="_new").fillna("").astype(str)
    moved = both[both["segment_name_old"] != both["segment_name_new"]]
    said = deltas[deltas["change"] == "segment"].set_index("customer_key")[["old", "new"]].fillna("").astype(str)
    assert len(moved) > 0 and said.sort_index().to_numpy().tolist() == moved.sort_index().to_numpy().tolist()
    # The labels' old parts were kept for the deltas only; the scoring and recency stay for monitoring.
    kept = sorted(path.name for path in (summary.update_dir / "before").iterdir() if path.is_dir())
    assert kept == ["recency", "scores"]
    # A week later every "days since" is 7 more: aged before comparing, they shift little.
    assert not [row for row in summary.shifted if row["column"].startswith("days_since_") or row["column"] == "recency_days"]
    # The refreshed stages' records are gone: the next run recomputes and refits them.
    assert run.record("ingest").exists() and not run.record("segments").exists()


def test_a_crash_after_the_commit_resumes_without_appending_twice(world, tmp_path, monkeypatch):
    import engine.features
    from engine.ingest import read_store_meta
    from engine.update import update_run

    config = _copy_of_base(world, tmp_path / "run")
    run, reference = RunLayout(tmp_path / "run"), RunLayout(world["root"] / "reference")

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(engine.features, "build_features", crash)
    with pytest.raises(RuntimeError, match="killed"):
        update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    # The store took the rows and stays readable; the outputs are the base run's.
    assert read_store_meta(run.store.root)["tables"]["transactions"]["rows"] == \
        read_store_meta(reference.store.root)["tables"]["transactions"]["rows"]  # fmt: skip
    assert pq.read_schema(run.features.part(0))
    monkeypatch.undo()
    summary = update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    assert summary.resumed == ["before", "append"]
    _same_store(run, reference)
    pd.testing.assert_frame_equal(_table(run.features.root), _table(reference.features.root), check_exact=True)


def test_a_crash_during_the_commit_is_finished_by_the_rerun(world, tmp_path, monkeypatch):
    import engine.ingest._append as append
    from engine.update import update_run

    config = _copy_of_base(world, tmp_path / "run")
    run, reference = RunLayout(tmp_path / "run"), RunLayout(world["root"] / "reference")
    renames = []
    real_replace = append.os.replace

    def replace_then_crash(source, target):
        # The first store file goes into place; the process dies before the second.
        if Path(target).is_relative_to(run.store.root):
            if renames:
                raise OSError("killed during the commit")
            renames.append(target)
        real_replace(source, target)

    monkeypatch.setattr(append.os, "replace", replace_then_crash)
    with pytest.raises(OSError, match="killed during the commit"):
        update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    monkeypatch.undo()
    assert (run.root / "updates").is_dir() and len(renames) == 1
    update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    _same_store(run, reference)


def test_profile_rows_are_refused_in_one_line(world, tmp_path):
    from engine.exceptions import UsageError
    from engine.update import update_run

    config = _copy_of_base(world, tmp_path / "run")
    with pytest.raises(UsageError, match="customers rows change a customer's profile"):
        update_run(config, {"customers": Path(config.inputs["customers"].path)}, as_of=UPDATE_AS_OF)


def test_identity_rows_that_merge_two_customers_move_them_as_a_full_ingest_would(world, backtest_world, tmp_path):
    """Two customers of the base run share a new email: the update merges them, and its
    store, identity map and features are a full ingest's over the old and new identity rows."""
    from engine.update import update_run

    source = backtest_world[0]
    config = _copy_of_base(world, tmp_path / "run")
    run = RunLayout(tmp_path / "run")
    mapping = _table(run.ingest.identity_mapping)
    alone = mapping[~mapping["customer_key"].duplicated(keep=False)]
    first, second = alone.iloc[0], alone.iloc[len(alone) // 2]  # most likely in two partitions
    shared = pd.DataFrame({"customer_id": [first["customer_id"], second["customer_id"]], "id_type": "email",
                           "id_value": "Same.Person@example.com"})  # fmt: skip
    shared.to_parquet(tmp_path / "identities.parquet", index=False)
    (tmp_path / "all-identities").mkdir()
    for path in sorted((source / "identities").glob("*.parquet")):
        shutil.copy(path, tmp_path / "all-identities" / path.name)
    shutil.copy(tmp_path / "identities.parquet", tmp_path / "all-identities" / "part-99999.parquet")
    identities = dataclasses.replace(config.inputs["identities"], path=str(tmp_path / "all-identities"))
    reference = dataclasses.replace(config, inputs={**config.inputs, "identities": identities},
                                    run=dataclasses.replace(config.run, output_dir=tmp_path / "reference"))  # fmt: skip
    run_pipeline(reference, stages=["ingest", "features"], report=False)

    summary = update_run(config, {"identities": tmp_path / "identities.parquet"}, as_of=date.fromisoformat(SPLIT),
                         backend_name="cpu")  # fmt: skip
    assert summary.merged_customers == 1
    assert summary.tables["identities"] == {"read": 2, "kept": 2, "quarantined": {}, "duplicates": 0}
    theirs = RunLayout(tmp_path / "reference")
    for table in ("transactions", "events"):
        for number in range(PARTITIONS):
            pd.testing.assert_frame_equal(pq.read_table(run.store.table_part(table, number)).to_pandas(),
                                          pq.read_table(theirs.store.table_part(table, number)).to_pandas())  # fmt: skip
    # Profile rows: the same, though a merged customer's several rows follow the surviving
    # account's where a full ingest keeps the input files' order (the store keeps no account).
    for directory in ("store/customers", "sensitive/customers"):
        ours, full = (_table(layout.ingest.root / directory) for layout in (run, theirs))
        pd.testing.assert_frame_equal(ours.sort_values(list(ours.columns), ignore_index=True),
                                      full.sort_values(list(full.columns), ignore_index=True))  # fmt: skip
    for number in range(PARTITIONS):
        ours = pq.read_table(run.ingest.identity_mapping / f"part-{number:05d}.parquet").to_pandas()
        assert ours.equals(pq.read_table(theirs.ingest.identity_mapping / f"part-{number:05d}.parquet").to_pandas())
    # Features: bit-identical, but for the merged customer's profile attributes (above).
    merged_key = pd.read_parquet(summary.update_dir / "moves.parquet")["new_key"].iloc[0]
    ours, full = _table(run.features.root), _table(theirs.features.root)
    pd.testing.assert_frame_equal(ours[ours["customer_key"] != merged_key], full[full["customer_key"] != merged_key],
                                  check_exact=True)  # fmt: skip
    profile = {"days_since_signup", "region", "loyalty_member"}  # the world's non-sensitive profile columns
    assert profile <= set(ours.columns)
    behaviour = [c for c in ours.columns if c not in profile]
    pd.testing.assert_frame_equal(ours[behaviour], full[behaviour], check_exact=True)
    # The deltas say which key went into which.
    deltas = pd.read_csv(summary.update_dir / "deltas.csv")
    rekeyed = deltas[deltas["change"] == "customer_key"]
    assert len(rekeyed) == 1 and rekeyed["reason"].tolist() == ["merged"]
    assert set(rekeyed[["old", "new"]].iloc[0]) == set(mapping.loc[mapping["customer_id"].isin(shared["customer_id"]),
                                                                   "customer_key"])  # fmt: skip

    # A second update links a third customer to the merged one: the first update's identity
    # rows are resolved again with it, so its merge holds, as a full ingest of all three files.
    third = alone.iloc[-1]
    again = pd.DataFrame({"customer_id": [first["customer_id"], third["customer_id"]], "id_type": "phone",
                          "id_value": "+44 20 7946 0000"})  # fmt: skip
    again.to_parquet(tmp_path / "identities-2.parquet", index=False)
    shutil.copy(tmp_path / "identities-2.parquet", tmp_path / "all-identities" / "part-99999b.parquet")
    reference = dataclasses.replace(reference, run=dataclasses.replace(reference.run, output_dir=tmp_path / "reference-2"))
    run_pipeline(reference, stages=["ingest", "features"], report=False)
    second = update_run(config, {"identities": tmp_path / "identities-2.parquet"}, as_of=date.fromisoformat(SPLIT),
                        backend_name="cpu")  # fmt: skip
    assert second.merged_customers == 1 and second.tables["identities"]["read"] == 2
    theirs = RunLayout(tmp_path / "reference-2")
    for table in ("transactions", "events"):
        pd.testing.assert_frame_equal(_table(run.store.table(table)), _table(theirs.store.table(table)))
    assert _table(run.ingest.identity_mapping).equals(_table(theirs.ingest.identity_mapping))


@pytest.mark.gpu
def test_an_update_on_the_gpu_backend_agrees_with_the_cpu(world, tmp_path):
    """The same new rows through the GPU backend: the same store, features within float
    tolerance, nearly every customer in the same segment."""
    from engine.update import update_run

    runs = {}
    for backend in ("cpu", "gpu"):
        config = _copy_of_base(world, tmp_path / backend)
        runs[backend] = (update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name=backend),
                         RunLayout(tmp_path / backend))  # fmt: skip
    (cpu, cpu_run), (gpu, gpu_run) = runs["cpu"], runs["gpu"]
    assert gpu.tables == cpu.tables and gpu.partitions_appended == cpu.partitions_appended
    _same_store(gpu_run, cpu_run)
    pd.testing.assert_frame_equal(_table(gpu_run.features.root), _table(cpu_run.features.root), rtol=1e-6)
    segments = _table(gpu_run.segments.assignments).merge(_table(cpu_run.segments.assignments), on="customer_key")
    assert (segments["segment_x"] == segments["segment_y"]).mean() > 0.99


def test_a_merge_after_an_append_rewrites_the_parts_with_their_deltas_folded_in(world, backtest_world, tmp_path):
    """The week's rows go in as a delta of partition 0; then identity rows merge a customer of
    partition 0 with one of another: both parts are rewritten whole, the delta's rows in them,
    the delta file gone, and the store is a full ingest's over every file."""
    from engine.ingest._stored import delta_files
    from engine.update import update_run

    config = _copy_of_base(world, tmp_path / "run")
    run = RunLayout(tmp_path / "run")
    update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    assert [len(delta_files(run.store.table_part(table, 0))) for table in ("transactions", "events")] == [1, 1]
    mapping = _table(run.ingest.identity_mapping)
    alone = mapping[~mapping["customer_key"].duplicated(keep=False)]
    zero = set(pd.read_parquet(run.ingest.identity_mapping / "part-00000.parquet")["customer_key"])
    first = alone[alone["customer_key"].isin(zero)].iloc[0]
    second = alone[~alone["customer_key"].isin(zero)].iloc[0]
    shared = pd.DataFrame({"customer_id": [first["customer_id"], second["customer_id"]], "id_type": "email",
                           "id_value": "Both@example.com"})  # fmt: skip
    shared.to_parquet(tmp_path / "identities.parquet", index=False)
    (tmp_path / "all-identities").mkdir()
    for path in sorted((backtest_world[0] / "identities").glob("*.parquet")):
        shutil.copy(path, tmp_path / "all-identities" / path.name)
    shutil.copy(tmp_path / "identities.parquet", tmp_path / "all-identities" / "part-99999.parquet")
    identities = dataclasses.replace(config.inputs["identities"], path=str(tmp_path / "all-identities"))
    reference = dataclasses.replace(world["reference"], inputs={**world["reference"].inputs, "identities": identities},
                                    run=dataclasses.replace(world["reference"].run, output_dir=tmp_path / "reference"))  # fmt: skip
    run_pipeline(reference, stages=["ingest"], report=False)

    summary = update_run(config, {"identities": tmp_path / "identities.parquet"}, as_of=UPDATE_AS_OF, backend_name="cpu")
    assert summary.merged_customers == 1 and summary.partitions_rewritten >= 1
    assert all(not delta_files(run.store.table_part(table, 0)) for table in ("transactions", "events"))
    _same_store(run, RunLayout(tmp_path / "reference"))


def test_a_part_with_enough_deltas_is_rewritten_with_them_folded_in(world, tmp_path, monkeypatch):
    import engine.ingest._append as append
    from engine.ingest._stored import delta_files
    from engine.update import update_run

    monkeypatch.setattr(append, "MAX_DELTAS", 0)  # every part that gets rows is folded at once
    config = _copy_of_base(world, tmp_path / "run")
    run = RunLayout(tmp_path / "run")
    summary = update_run(config, world["new"], as_of=UPDATE_AS_OF, backend_name="cpu")
    assert summary.partitions_rewritten == PARTITIONS
    assert not [path for number in range(PARTITIONS) for path in delta_files(run.store.table_part("events", number))]
    _same_store(run, RunLayout(world["root"] / "reference"))
