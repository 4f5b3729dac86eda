"""segscale run, report and demo: exit codes, one JSON document, the lock, the report."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest

from .conftest import invoke, one_line_error


@pytest.fixture
def config_file(backtest_world, tmp_path):
    """The backtest world's config, writing into ``tmp_path/run``, with light segment settings."""
    world, backtest = backtest_world
    text = backtest.read_text().replace('output_dir = "backtest"', f'output_dir = "{tmp_path / "run"}"')
    text = text.replace("[segments]\n", "[segments]\nstability_resamples = 3\nmicro_k = 12\nniche_points = 2000\nk_max = 6\n")
    path = world / f"cli-{tmp_path.name}.toml"
    path.write_text(text)
    yield path
    path.unlink()


def test_run_prints_one_json_document_and_resumes_as_skips(config_file, tmp_path):
    result = invoke("run", config_file, "--workers", 1, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["exit_code"] == 0 and summary["as_of"] == "2025-10-03"
    assert [name for name, stage in summary["stages"].items() if stage["status"] == "ran"] == [
        "ingest", "features", "segments", "propensity", "value", "report",
    ]  # fmt: skip
    assert summary["manifest"] == str(tmp_path / "run" / "manifest.json") and summary["metrics"]["propensity"]["roc_auc"] > 0.8
    assert summary["report"] == str(tmp_path / "run" / "report.html")
    again = invoke("run", config_file, "--workers", 1)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("skipped") == 5 and "Top audiences" in again.stdout and "report:" in again.stdout
    rebuilt = invoke("report", tmp_path / "run")
    assert rebuilt.exit_code == 0 and "12 sections" in rebuilt.stdout
    # A stage command is a one-stage run: up to date, it does nothing; forced, it rewrites the
    # stage and records it, and the next run recomputes what reads it.
    unchanged = invoke("features", config_file, "--workers", 1)
    assert unchanged.exit_code == 0 and "up to date" in unchanged.stdout
    assert invoke("features", config_file, "--workers", 1, "--force").exit_code == 0
    after = json.loads(invoke("run", config_file, "--workers", 1, "--json").stdout)
    assert {name: stage["status"] for name, stage in after["stages"].items()} == {
        "ingest": "skipped", "features": "skipped", "segments": "ran", "propensity": "ran", "value": "skipped",
        "report": "ran",
    }  # fmt: skip


def test_a_full_disk_in_a_stage_is_said_plainly_and_kept_stages_stay(config_file, tmp_path, monkeypatch):
    """Arrow's write error from a worker, as a full tmpfs gave it: not an 'internal failure'."""
    from engine.pipeline import STAGES

    def full(context):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    assert invoke("run", config_file, "--workers", 1, "--stages", "ingest").exit_code == 0
    monkeypatch.setitem(STAGES, "features", dataclasses.replace(STAGES["features"], run=full))
    result = invoke("run", config_file, "--workers", 1, "--stages", "ingest,features")
    assert result.exit_code == 1
    one_line_error(result, "features: no space left on the disk holding", "finished stages are kept", after_progress=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["ingest"]["status"] == "skipped" and manifest["stages"]["features"]["status"] == "failed"


def test_sigterm_stops_cleanly_and_a_rerun_resumes(config_file, tmp_path):
    """What a scheduler sends first: exit 143, manifest 'interrupted', no lock, no staging."""
    run = tmp_path / "run"
    command = [sys.executable, "-c", "from cli.main import main; main()", "run", str(config_file), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "_stages" / "ingest.json").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "ingest did not finish"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["exit_code"] == 143
    assert manifest["stages"]["ingest"]["status"] == "ran"
    assert not (run / ".segscale.lock").exists() and not list(run.rglob("*staging*"))
    resumed = invoke("run", config_file, "--workers", 1, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["stages"]["ingest"]["status"] == "skipped"


def test_a_second_run_into_a_directory_in_use_exits_2(config_file, tmp_path):
    hold = "import sys, time; from engine.pipeline import RunLock\nwith RunLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("run", config_file, "--workers", 1)
        assert result.exit_code == 2
        one_line_error(result, "another segscale run is using this run directory", f"pid {holder.pid}", "started")
    finally:
        holder.kill()
        holder.wait()


def test_bad_config_and_missing_input_exit_2(backtest_world, tmp_path):
    world, backtest = backtest_world
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nsed = 1\n[inputs.transactions]\npath = 'x'\n")
    result = invoke("run", bad)
    assert result.exit_code == 2
    one_line_error(result, "bad.toml: [run] unknown key 'sed' (did you mean 'seed'?)")
    missing = tmp_path / "missing.toml"
    missing.write_text(backtest.read_text().replace('path = "transactions"', f'path = "{world / "nowhere"}"'))
    result = invoke("run", missing)
    assert result.exit_code == 2
    one_line_error(result, "[inputs.transactions] path: no such file or directory", "nowhere")
    result = invoke("run", backtest, "--stages", "segmnts")
    assert result.exit_code == 2
    one_line_error(result, "unknown stage segmnts")


def test_an_internal_failure_exits_1_and_the_manifest_says_so(config_file, tmp_path, monkeypatch):
    from engine.pipeline import STAGES

    def broken(context):
        raise RuntimeError("worker lost")

    monkeypatch.setitem(STAGES, "features", dataclasses.replace(STAGES["features"], run=broken))
    result = invoke("run", config_file, "--workers", 1)
    assert result.exit_code == 1
    one_line_error(result, "internal failure: RuntimeError: worker lost", "--log-level debug", after_progress=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["exit_code"] == 1
    assert manifest["stages"]["ingest"]["status"] == "ran" and manifest["stages"]["features"]["status"] == "failed"


def test_report_of_a_directory_that_is_not_a_run_exits_2(tmp_path):
    result = invoke("report", tmp_path / "nothing")
    assert result.exit_code == 2
    one_line_error(result, "not a segscale run directory (no manifest.json)")
    assert not (tmp_path / "nothing").exists()


def test_demo_runs_everything_and_points_at_the_report(tmp_path):
    result = invoke("demo", "--customers", "2k", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.stderr
    for fragment in ("world: 2,000 customers", "segments of", "value share", "Top audiences", "test AUC", "report:"):
        assert fragment in result.stdout, fragment
    run_dir = tmp_path / "demo" / "backtest"
    assert (tmp_path / "demo" / "demo.toml").exists() and (run_dir / "report.html").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["metrics"]["value"]["holdout"] is not None
    for table, rows in manifest["rows"].items():
        assert rows["reconciled"] and rows["read"] == rows["kept"] + rows["quarantined"] + rows["duplicates"], table


def test_demo_refuses_a_world_too_small_to_learn_from(tmp_path):
    result = invoke("demo", "--customers", 500, "--out", tmp_path / "demo")
    assert result.exit_code == 2
    one_line_error(result, "--customers 500 is too few for the demo", "at least 2,000")
