import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import engine
from engine.exceptions import SegscaleError, UsageError
from engine.layout import RunLayout

from .conftest import invoke, one_line_error

# A purchase log of customer id and date only (no amount): BTYDplus' grocery event log.
ELOG = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "btydplus_grocery_elog.csv"


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("generate", "demo", "doctor", "check", "ingest", "features", "segments", "run", "report", "bench"):
        assert command in result.stdout


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"segscale {engine.__version__}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    result = invoke("generate", "--customers", "1.5k", "--out", out, "--seed", 3, "--dirt", 0.02, "--json")
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


def test_generate_json_is_one_document_on_stdout(world):
    out, summary = world
    assert summary["customers"] == 1500 and summary["seed"] == 3 and summary["dirt"] == 0.02
    assert set(summary["rows"]) == {"transactions", "events", "customers", "identities"}
    assert summary["rows"]["transactions"] > 1500
    assert sum(summary["dirty_rows"]["events"].values()) > 0
    assert summary["config"] == str(out / "segscale.toml")


def test_generate_prints_a_readable_summary(tmp_path):
    result = invoke("generate", "-n", 300, "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "transactions" in result.stdout and "300 customers" in result.stdout
    assert "segscale.toml" in result.stdout


def test_generate_refuses_to_replace_a_world(world):
    out, _ = world
    result = invoke("generate", "-n", 100, "--out", out)
    assert result.exit_code == 2
    one_line_error(result, str(out), "--overwrite")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--customers", "0"), "must be at least 1"),
        (("--customers", "lots"), "is not a count"),
        (("--start", "2024-13-01"), "--start"),
        (("--seed", "-4"), "--seed"),
    ],
)
def test_generate_bad_options_exit_2(tmp_path, args, fragment):
    result = invoke("generate", "--out", tmp_path, *args)
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_generate_rejects_dirt_out_of_range(tmp_path):
    result = invoke("generate", "--out", tmp_path, "-n", 10, "--dirt", 0.9)
    assert result.exit_code == 2
    one_line_error(result, "--dirt", "0.9")


def test_check_accepts_the_world_config(world):
    out, _ = world
    result = invoke("check", out / "segscale.toml", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["backend"] == "cpu"
    assert set(document["config"]["inputs"]) == {"transactions", "events", "customers", "identities"}


def test_check_reports_a_bad_config_in_one_line(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[run]\nsed = 3\n[inputs.transactions]\npath = "tx.parquet"\n')
    result = invoke("check", config)
    assert result.exit_code == 2
    one_line_error(result, "run.toml", "unknown key 'sed'", "did you mean 'seed'")


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('[inputs.transactions]\npath = "tx.csv"\n[inputs.transactions.columns]\ncustomer_id = "client"\n'
         '[ingest]\npseudonym_key = "k-for-tests"\n', "missing required column 'client'"),
        ('[inputs.transactions]\npath = "tx.csv"\n', "no pseudonymisation key"),
    ],
)  # fmt: skip
def test_check_refuses_what_run_would(tmp_path, monkeypatch, config, fragment):
    monkeypatch.delenv("SEGSCALE_PSEUDONYM_KEY", raising=False)
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,2024-01-01 10:00:00,3\n")
    (tmp_path / "run.toml").write_text(config)
    result = invoke("check", tmp_path / "run.toml")
    assert result.exit_code == 2
    one_line_error(result, fragment)


def test_check_missing_config(tmp_path):
    result = invoke("check", tmp_path / "absent.toml")
    assert result.exit_code == 2
    one_line_error(result, "absent.toml", "no such config file")


def test_asking_for_the_gpu_without_one_exits_2(world):
    out, _ = world
    result = invoke("check", out / "segscale.toml", "--backend", "gpu")
    assert result.exit_code == 2
    one_line_error(result, "GPU backend requested but not available", "cudf", "--backend cpu")


def test_doctor_reports_the_environment():
    result = invoke("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == {"requested": "auto", "resolved": "cpu"}
    assert report["cpu"]["usable_cores"] >= 1 and report["memory_gib"] > 0
    assert report["packages"]["pandas"] and "cudf" in report["gpu"]["packages"]
    readable = invoke("doctor")
    assert readable.exit_code == 0 and "CUDA devices" in readable.stdout


def test_doctor_warns_when_the_output_directory_is_open_to_others(tmp_path):
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\n")
    (tmp_path / "run.toml").write_text('[run]\noutput_dir = "open/run"\n[inputs.transactions]\npath = "tx.csv"\n')
    result = invoke("doctor", tmp_path / "run.toml", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["output_dir"] == {"path": str(tmp_path / "open"), "mode": "0755", "shared": True}
    assert "is open to other users" in result.stderr
    (tmp_path / "open").chmod(0o700)
    private = invoke("doctor", tmp_path / "run.toml", "--json")
    assert json.loads(private.stdout)["output_dir"]["shared"] is False and "open to other" not in private.stderr


def test_doctor_gpu_prints_the_report_then_exits_2():
    result = invoke("doctor", "--backend", "gpu", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["backend"] == {"requested": "gpu", "resolved": None}
    assert "cudf" in result.stderr


@pytest.mark.parametrize(
    ("error", "code", "fragments"),
    [
        (SegscaleError("chunk 3 could not be written: disk full"), 1, ("disk full",)),
        (KeyError("oops"), 1, ("internal failure: KeyError", "--log-level debug")),
        (UsageError("the input is bad"), 2, ("the input is bad",)),
    ],
)
def test_engine_errors_map_to_exit_codes(monkeypatch, tmp_path, error, code, fragments):
    import engine.synth

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(engine.synth, "generate", broken)
    result = invoke("generate", "--out", tmp_path, "-n", 10)
    assert result.exit_code == code
    one_line_error(result, *fragments)


def test_bench_measures_a_tiny_world(tmp_path):
    result = invoke("bench", "--stages", "generate", "--customers", "1k", "--workers", 1, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    [measured] = document["results"]
    assert measured["case"] == "generate" and measured["size"] == 1000 and measured["status"] == "ok"
    assert measured["rows"] > 1000 and measured["peak_rss_gib"] > 0
    assert Path(document["paths"]["json"]).exists()


def test_bench_unknown_stage_exits_2(tmp_path):
    result = invoke("bench", "--stages", "segmnts", "--customers", "1k", "--out", tmp_path)
    assert result.exit_code == 2
    one_line_error(result, "unknown stage", "generate")


def test_bench_exits_1_when_a_case_fails(tmp_path, monkeypatch):
    import benchmarks.cases as cases

    def broken(size, workdir, backend_name, workers, clock):
        raise RuntimeError("out of disk")

    monkeypatch.setitem(cases.CASES, "generate", dataclasses.replace(cases.CASES["generate"], run=broken))
    result = invoke("bench", "--customers", "1k", "--workers", 1, "--out", tmp_path)
    assert result.exit_code == 1
    assert "out of disk" in result.stdout and "benchmark runs failed: generate at 1,000" in result.stderr
    as_json = invoke("bench", "--customers", "1k", "--workers", 1, "--out", tmp_path, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["results"][0]["status"] == "failed"  # one document


def test_ingest_runs_a_generated_world_with_no_edits(world):
    out, _ = world
    result = invoke("ingest", out / "segscale.toml", "--workers", 1, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    for table, counts in summary["tables"].items():
        assert counts["read"] == counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"], table
    assert summary["tables"]["transactions"]["quarantined"]
    assert Path(summary["out_dir"], "store", "_store.json").exists()


@pytest.mark.skipif(not ELOG.exists(), reason=f"{ELOG} is not beside this checkout")
def test_ingest_takes_a_purchase_log_without_amounts(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGSCALE_PSEUDONYM_KEY", "grocery-test-key")
    (tmp_path / "run.toml").write_text(
        f'[run]\noutput_dir = "run"\n[inputs.transactions]\npath = "{ELOG}"\n'
        '[inputs.transactions.columns]\ncustomer_id = "cust"\nts = "date"\n'
    )
    result = invoke("ingest", tmp_path / "run.toml", "--workers", 1, "--json")
    assert result.exit_code == 0, result.stderr
    lines = sum(1 for _ in ELOG.open()) - 1
    counts = json.loads(result.stdout)["tables"]["transactions"]
    assert counts == {"read": lines, "kept": lines, "quarantined": {}, "duplicates": 0}
    store = tmp_path / "run" / "ingest" / "store"
    assert json.loads((store / "_store.json").read_text())["has_amount"] is False
    stored = pd.read_parquet(store / "transactions")
    assert len(stored) == lines and stored["amount"].isna().all()
    assert stored["customer_key"].nunique() == pd.read_csv(ELOG)["cust"].nunique()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["rows"]["transactions"]["duplicates"] == 0 and manifest["rows"]["transactions"]["reconciled"]


def test_a_memory_limit_that_is_no_size_exits_2(world):
    out, _ = world
    result = invoke("ingest", out / "segscale.toml", "--memory-limit", "lots")
    assert result.exit_code == 2
    one_line_error(result, "memory limit 'lots' is not a size such as 4GB", after_progress=True)


def test_ingest_bad_input_exits_2(tmp_path):
    (tmp_path / "tx.csv").write_text("client,ts,amount\nA,2024-01-01 10:00:00,3\n")
    (tmp_path / "run.toml").write_text('[inputs.transactions]\npath = "tx.csv"\n[ingest]\npseudonym_key = "a-test-key"\n')
    result = invoke("ingest", tmp_path / "run.toml", "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, "tx.csv", "missing required column 'customer_id'")


def test_ingest_without_a_key_exits_2(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGSCALE_PSEUDONYM_KEY", raising=False)
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nA,2024-01-01 10:00:00,3\n")
    (tmp_path / "run.toml").write_text('[inputs.transactions]\npath = "tx.csv"\n')
    result = invoke("ingest", tmp_path / "run.toml", "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, "SEGSCALE_PSEUDONYM_KEY")


def test_features_run_a_generated_world_with_no_edits(world):
    out, _ = world
    ingested = invoke("ingest", out / "segscale.toml", "--workers", 1)
    assert ingested.exit_code == 0, ingested.stderr
    result = invoke("features", out / "segscale.toml", "--workers", 1, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {"out_dir", "as_of", "customers", "features", "partitions", "seconds"}
    assert summary["customers"] > 1000 and len(summary["features"]) > 40
    assert summary["as_of"] == "2026-01-01" and summary["out_dir"] == str(out / "run" / "features")


def test_a_stage_command_is_a_one_stage_run(world):
    """Recorded, skipped when up to date, forced on demand, and resumed from by segscale run."""
    out, _ = world
    config = out / "one-stage.toml"
    config.write_text((out / "segscale.toml").read_text().replace('output_dir = "run"', 'output_dir = "one-stage"'))
    run = RunLayout(out / "one-stage")
    assert invoke("ingest", config, "--workers", 1).exit_code == 0
    ingested = json.loads(run.record("ingest").read_text())
    again = invoke("ingest", config, "--workers", 1)
    assert again.exit_code == 0 and "up to date" in again.stdout
    assert json.loads(run.record("ingest").read_text())["finished_at"] == ingested["finished_at"]
    first = json.loads(invoke("features", config, "--workers", 1, "--json").stdout)
    resumed = invoke("run", config, "--stages", "ingest,features", "--workers", 1, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    stages = json.loads(resumed.stdout)["stages"]
    assert stages["ingest"]["status"] == stages["features"]["status"] == "skipped"
    forced = invoke("features", config, "--workers", 1, "--force", "--json")
    assert forced.exit_code == 0 and json.loads(forced.stdout)["customers"] == first["customers"]
    assert json.loads(run.record("features").read_text())["finished_at"] > ingested["finished_at"]
    moved = json.loads(invoke("features", config, "--as-of", "2025-12-01", "--workers", 1, "--json").stdout)
    assert moved["as_of"] == "2025-12-01"  # an option overrides the config, so the stage runs again
    manifest = json.loads(run.manifest.read_text())
    assert manifest["as_of"] == "2025-12-01" and manifest["stages"]["features"]["status"] == "ran"


def test_features_from_a_store_with_explicit_options(world, tmp_path):
    out, _ = world
    store = out / "run" / "ingest" / "store"
    if not store.exists():
        assert invoke("ingest", out / "segscale.toml", "--workers", 1).exit_code == 0
    result = invoke("features", "--store", store, "--as-of", "2025-06-30", "--out", tmp_path / "f", "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "as of 2025-06-30" in result.stdout
    assert json.loads((tmp_path / "f" / "_features.json").read_text())["as_of"] == "2025-06-30"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--store", "{tmp}"), "both --store and --out"),
        (("--store", "{tmp}", "--out", "{tmp}/f"), "not a segscale store"),
        (("--store", "{tmp}", "--out", "{tmp}/f", "--as-of", "2025-13-01"), "--as-of"),
    ],
)
def test_features_bad_usage_exits_2(tmp_path, args, fragment):
    result = invoke("features", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.stdout
    assert fragment in result.stderr


def test_segments_run_after_features_with_no_edits(world):
    out, _ = world
    if not (out / "run" / "features" / "_features.json").exists():
        assert invoke("ingest", out / "segscale.toml", "--workers", 1).exit_code == 0
        assert invoke("features", out / "segscale.toml", "--workers", 1).exit_code == 0
    result = invoke("segments", out / "segscale.toml", "--workers", 1, "--k", 4, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["k"] == 4 and len(summary["segments"]) == 4
    assert sum(s["customers"] for s in summary["segments"]) == summary["customers"]
    table = invoke("segments", out / "segscale.toml", "--workers", 1, "--k", 4)
    assert table.exit_code == 0 and "4 segments of" in table.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("features", "--store", "{tmp}", "--out", "{tmp}/f"), "not a segscale store"),  # the engine's refusal
        (("features", "--as-of", "2025-13-01"), "--as-of"),  # click's own usage error
        (("run", "{tmp}/missing.toml"), "missing.toml"),
    ],
)
def test_json_answers_a_failure_with_one_document_too(tmp_path, args, fragment):
    result = invoke(*[a.format(tmp=tmp_path) for a in args], "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["status"] == "failed" and document["exit_code"] == 2 and fragment in document["error"]


def test_segments_without_features_exits_2(tmp_path):
    result = invoke("segments", "--features", tmp_path, "--out", tmp_path / "s", "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, "not a segscale feature table")



def _segscale(tmp_path, *args, umask=None):
    """The installed entry point in a process of its own (the umask is the process's)."""
    env = {key: value for key, value in os.environ.items() if key != "SEGSCALE_UMASK"}
    if umask is not None:
        env["SEGSCALE_UMASK"] = umask
    command = [sys.executable, "-c", "from cli.main import main; main()", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _modes(directory: Path) -> set[int]:
    return {stat.S_IMODE(path.stat().st_mode) for path in [directory, *directory.rglob("*")]}


def test_what_segscale_writes_is_private_unless_told_otherwise(tmp_path):
    made = _segscale(tmp_path, "generate", "--customers", 300, "--out", tmp_path / "private")
    assert made.returncode == 0, made.stderr
    assert _modes(tmp_path / "private") <= {0o600, 0o700}
    shared = _segscale(tmp_path, "generate", "--customers", 300, "--out", tmp_path / "shared", umask="022")
    assert shared.returncode == 0, shared.stderr
    assert _modes(tmp_path / "shared") <= {0o644, 0o755}
    bad = _segscale(tmp_path, "--version", umask="rw-------")
    assert bad.returncode == 2 and "SEGSCALE_UMASK='rw-------' is not an octal umask" in bad.stderr


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_an_interrupt_swallowed_in_a_callback_is_delivered_again(signal_name):
    """Found in CI: SIGTERM landed in distributed's garbage-collector callback, where Python
    only prints an exception, and the run went on to succeed. A ``__del__`` does the same."""
    program = f"""
import os, signal, time
from cli.main import handle_termination
handle_termination()
class Dropped:
    def __del__(self):
        os.kill(os.getpid(), signal.{signal_name})
        time.sleep(0.01)  # the handler runs here, inside __del__
try:
    Dropped()
    time.sleep(10)
    print("went on")
except KeyboardInterrupt as error:
    print("stopped by", type(error).__name__)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr  # reported once, where it ends the command
    expected = "Terminated" if signal_name == "SIGTERM" else "KeyboardInterrupt"
    assert done.stdout.strip() == f"stopped by {expected}", done.stderr
