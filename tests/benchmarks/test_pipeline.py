"""The pipeline benchmark: segscale run on a generated world, each stage's time and memory."""

import pytest

from benchmarks import run_benchmarks

CUSTOMERS = 2_000
STAGES = ("ingest", "features", "segments", "propensity", "value", "report")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-pipeline")
    document = run_benchmarks(stages=("pipeline",), sizes=(CUSTOMERS,), workers=1, out_dir=out)
    (result,) = document["results"]
    return result


def test_every_stage_runs_and_reports_its_time_and_memory(result):
    assert result["status"] == "ok", result["reason"]
    quality = result["quality"]
    for stage in STAGES:
        assert quality[f"{stage}_seconds"] > 0
        assert quality[f"{stage}_peak_rss_gib"] > 0
    # The run's sampler and the bench's watch the same processes, at instants of their own,
    # so the highest stage peak is near the bench's peak but need not be below it.
    highest = max(quality[f"{stage}_peak_rss_gib"] for stage in STAGES)
    assert highest == pytest.approx(result["peak_rss_gib"], rel=0.25)
    # The stages are the timed work, so together they fit in it.
    assert sum(quality[f"{stage}_seconds"] for stage in STAGES) <= result["median_seconds"]
    # Ingest's phases, inside ingest's time.
    phases = [quality[f"ingest_{phase}_seconds"] for phase in ("identities", "phase_1", "phase_2")]
    assert all(seconds > 0 for seconds in phases) and sum(phases) <= quality["ingest_seconds"]


def test_it_reports_what_the_run_produced(result):
    quality = result["quality"]
    # About one key per person: accounts merge by identity, and dirt leaves a few strays.
    assert 0.9 * CUSTOMERS < quality["customers"] < 1.1 * CUSTOMERS
    assert 3 <= quality["segments"] <= 10
    assert 0.5 < quality["test_auc"] <= 1.0
    # Staging and outputs took disk beside the inputs (reported for out-of-core sizes).
    assert quality["disk_peak_gib"] > 0 and quality["inputs_gib"] > 0
    # Rows are the inputs read, every table of the world.
    assert set(result["rows_by_table"]) == {"transactions", "events", "customers", "identities"}
    assert result["rows"] == sum(result["rows_by_table"].values()) > CUSTOMERS


def test_the_ingest_case_ingests_the_same_world(result, tmp_path):
    document = run_benchmarks(stages=("ingest",), sizes=(CUSTOMERS,), workers=1, out_dir=tmp_path, baselines=())
    (ingest,) = document["results"]
    assert ingest["status"] == "ok", ingest["reason"]
    assert ingest["rows_by_table"] == result["rows_by_table"]
    assert {"identities_seconds", "phase_1_seconds", "phase_2_seconds"} <= ingest["quality"].keys()
    assert ingest["quality"]["disk_peak_gib"] > 0
