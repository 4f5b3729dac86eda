"""The ingest benchmark on a tiny dirty world: DuckDB and polars do segscale's ingest work, and
keep, quarantine and drop the very same rows."""

import dataclasses
import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks import run_benchmarks
from benchmarks._ingest import compare_counts, run_duckdb, run_polars, run_segscale_ingest
from benchmarks._measure import Clock

CUSTOMERS = 2_000
# More than one store part, so that the peers' part by key is exercised at this size.
PARTS = 3
PEERS = {"duckdb": run_duckdb, "polars": run_polars}
STORED = ("transactions", "events", "customers")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The shared data of the ingest cases, for a world of 2,000 customers (1% dirt) whose
    config asks for ``PARTS`` store parts."""
    from engine.config import load_config
    from engine.synth import WorldSpec, generate_world

    world = tmp_path_factory.mktemp("dirty-world")
    generate_world(world, WorldSpec(customers=CUSTOMERS, seed=0, dirt=0.01), overwrite=True)
    config = load_config(world / "segscale.toml")
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, partitions=PARTS))
    return {"config": config, "counts": {}}


def _run(run, data, workdir) -> dict:
    clock = Clock()
    result = run(CUSTOMERS, workdir, "cpu", 1, clock, data)
    assert clock.seconds > 0
    return result


@pytest.fixture(scope="module")
def segscale(data, tmp_path_factory):
    return _run(run_segscale_ingest, data, tmp_path_factory.mktemp("segscale"))


@pytest.fixture(scope="module", params=sorted(PEERS))
def peer(request, data, segscale, tmp_path_factory):
    """(tool, result) of each peer, run after segscale on the same world."""
    tool = request.param
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} not installed")
    return tool, _run(PEERS[tool], data, tmp_path_factory.mktemp(tool))


def test_the_world_is_dirty_enough_to_check_something(data, segscale):
    counts = data["counts"]["segscale"]
    for table in (*STORED, "identities"):
        assert counts["tables"][table]["duplicates"] > 0
        assert sum(counts["tables"][table]["quarantined"].values()) > 0
    # Accounts merged by shared identifiers: fewer keys than distinct profiles kept.
    assert counts["customers"] < counts["tables"]["customers"]["kept"]
    assert counts["partitions"] == PARTS


def test_peer_keeps_quarantines_and_drops_the_rows_segscale_does(data, segscale, peer):
    tool, result = peer
    assert compare_counts(data["counts"][tool], data["counts"]["segscale"]) == []
    assert result["quality"]["matches_segscale"] is True
    assert result["rows"] == segscale["rows"]
    shown = ("transactions_kept", "events_quarantined", "identities_duplicates", "customers", "identity_components")
    for name in shown:
        assert result["quality"][name] == segscale["quality"][name]


def test_peer_store_is_in_parts_by_key_sorted_by_key_and_time(peer):
    _, result = peer
    store = f"{result['data_path']}/store"
    for table in STORED:
        keys_by_part = []
        for number in range(PARTS):
            frame = pq.read_table(f"{store}/{table}/part-{number:05d}.parquet").to_pandas()
            assert "customer_id" not in frame.columns and "email" not in frame.columns
            order = ["customer_key", *(["ts"] if "ts" in frame.columns else [])]
            assert frame.equals(frame.sort_values(order, kind="stable").reset_index(drop=True)), (table, number)
            keys = frame["customer_key"].to_numpy(dtype=np.uint64)
            assert (keys % np.uint64(PARTS) == number).all()
            keys_by_part.append(set(keys.tolist()))
        assert sum(map(len, keys_by_part)) == len(set().union(*keys_by_part))


def test_differences_are_named_count_by_count(data, segscale):
    ours = data["counts"]["segscale"]
    theirs = {**ours, "customers": ours["customers"] + 1, "tables": {**ours["tables"]}}
    events = ours["tables"]["events"]
    theirs["tables"]["events"] = {**events, "quarantined": {**events["quarantined"], "bad_timestamp": 0}}
    assert compare_counts(ours, theirs) == [
        f"customers {ours['customers']} vs {ours['customers'] + 1}",
        f"events.quarantined.bad_timestamp {events['quarantined']['bad_timestamp']} vs 0",
    ]


def test_the_runner_runs_the_peers_beside_segscale_and_reports_the_check(tmp_path):
    document = run_benchmarks(stages=("ingest",), sizes=(500,), workers=1, out_dir=tmp_path)
    results = {result["case"]: result for result in document["results"]}
    assert list(results) == ["ingest", "ingest-duckdb", "ingest-polars"]
    assert results["ingest"]["status"] == "ok", results["ingest"]["reason"]
    for name, tool in (("ingest-duckdb", "duckdb"), ("ingest-polars", "polars")):
        if importlib.util.find_spec(tool) is None:
            assert results[name]["status"] == "skipped"
            continue
        assert results[name]["status"] == "ok", results[name]["reason"]
        assert results[name]["quality"]["matches_segscale"] is True
        assert results[name]["rows_by_table"] == results["ingest"]["rows_by_table"]
        assert name in results["ingest"]["speedup_vs"]
