"""run_pipeline on a small backtest world: every stage, the manifest, resuming, selection."""

import dataclasses
import json

import pandas as pd
import pytest

from engine.exceptions import ConfigError, UsageError
from engine.layout import RunLayout
from engine.pipeline import STAGE_NAMES, STAGES, run_pipeline

# What a run computes, table by table; identical runs must agree on all of it.
OUTPUT_TABLES = ("features", "segments/assignments", "propensity/scores", "value/customers")


def _table(directory):
    return pd.read_parquet(directory).sort_values("customer_key", ignore_index=True)


def _mtimes(directory):
    return {path: path.stat().st_mtime_ns for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config_in):
    """One full run, untouched by the tests that read it."""
    config = config_in(tmp_path_factory.mktemp("reference") / "run")
    return config, run_pipeline(config)


def test_a_run_does_every_stage_and_records_it(reference):
    config, summary = reference
    manifest = json.loads(RunLayout(summary.run_dir).manifest.read_text())
    assert manifest["status"] == "succeeded" and manifest["exit_code"] == 0 and manifest["error"] is None
    assert manifest["as_of"] == "2025-10-03" and manifest["config"]["run"]["as_of"] == "2025-10-03"
    stages = manifest["stages"]
    assert list(stages) == ["ingest", "features", "segments", "propensity", "value", "report"]
    assert all(stage["status"] == "ran" and stage["seconds"] > 0 for stage in stages.values())
    assert all(stages[name]["peak_rss_bytes"] > 50 * 2**20 for name in STAGE_NAMES if name in stages)
    for name, record in stages.items():  # the client's and one worker's peaks are parts of the tree's
        assert 0 < record["peak_client_rss_bytes"] <= record["peak_rss_bytes"], name
        assert record["peak_worker_rss_bytes"] <= record["peak_rss_bytes"], name
    for table, rows in manifest["rows"].items():
        assert rows["read"] == rows["kept"] + rows["quarantined"] + rows["duplicates"] > 0, table
        assert rows["reconciled"] and rows["quarantined"] == sum(rows["quarantine_reasons"].values())
    assert manifest["rows"]["transactions"]["quarantined"] > 0  # the world is dirty
    metrics = manifest["metrics"]
    assert 3 <= metrics["segments"]["k"] <= 6 and metrics["propensity"]["roc_auc"] > 0.8
    assert metrics["value"]["converged"] and metrics["value"]["holdout"]["purchases"]["actual"] > 0
    assert {"segscale", "cpu", "memory_gib", "packages"} <= set(manifest["environment"])
    assert manifest["backend"] == {"requested": "auto", "resolved": "cpu", "scheduler": "local threads"}
    for name in ("ingest", "features", "segments", "propensity", "value"):
        record = json.loads(RunLayout(summary.run_dir).record(name).read_text())
        assert record["fingerprint"] == stages[name]["fingerprint"] and len(record["fingerprint"]) == 64
        assert all(path.startswith(str(summary.run_dir)) for path in record["outputs"])
    assert (summary.run_dir / "report.html").exists()
    assert not list(summary.run_dir.rglob("*staging*")) and not (summary.run_dir / ".segscale.lock").exists()


def test_the_key_never_reaches_the_run_directory(reference):
    config, summary = reference
    key = config.ingest.pseudonym_key.encode()
    for path in summary.run_dir.rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes(), path


def test_a_second_run_skips_every_stage_and_touches_no_output(reference, config_in, tmp_path):
    config, summary = reference
    before = _mtimes(summary.run_dir / "segments")
    again = run_pipeline(config, report=False)
    assert {name: stage["status"] for name, stage in again.manifest["stages"].items()} == dict.fromkeys(STAGE_NAMES[:5], "skipped")
    assert again.manifest["rows"] == summary.manifest["rows"] and again.manifest["metrics"] == summary.manifest["metrics"]
    assert _mtimes(summary.run_dir / "segments") == before


def test_a_crash_after_features_resumes_there_with_identical_outputs(reference, config_in, tmp_path, monkeypatch):
    config = config_in(tmp_path / "run")

    def crash(context):
        raise RuntimeError("injected crash")

    with monkeypatch.context() as patch:
        patch.setitem(STAGES, "segments", dataclasses.replace(STAGES["segments"], run=crash))
        with pytest.raises(RuntimeError, match="injected crash"):
            run_pipeline(config)
    failed = json.loads(RunLayout(tmp_path / "run").manifest.read_text())
    assert failed["status"] == "failed" and failed["exit_code"] == 1
    assert failed["error"] == "internal failure: RuntimeError: injected crash"
    assert [failed["stages"][name]["status"] for name in STAGE_NAMES[:5]] == ["ran", "ran", "failed", "not reached", "not reached"]
    assert not (tmp_path / "run" / "segments").exists() and not (tmp_path / "run" / ".segscale.lock").exists()

    done_before = {name: _mtimes(tmp_path / "run" / name) for name in ("ingest", "features")}
    resumed = run_pipeline(config)
    statuses = {name: stage["status"] for name, stage in resumed.manifest["stages"].items()}
    assert statuses == {"ingest": "skipped", "features": "skipped", "segments": "ran", "propensity": "ran", "value": "ran",
                        "report": "ran"}  # fmt: skip
    assert {name: _mtimes(tmp_path / "run" / name) for name in ("ingest", "features")} == done_before
    for table in OUTPUT_TABLES:
        pd.testing.assert_frame_equal(_table(tmp_path / "run" / table), _table(reference[1].run_dir / table), obj=table)


def test_a_changed_section_reruns_its_stage_and_what_reads_it(reference, config_in, tmp_path):
    config = config_in(tmp_path / "run")
    run_pipeline(config, report=False)
    changed = dataclasses.replace(config, segments=dataclasses.replace(config.segments, k=3))
    statuses = {name: stage["status"] for name, stage in run_pipeline(changed, report=False).manifest["stages"].items()}
    assert statuses == {"ingest": "skipped", "features": "skipped", "segments": "ran", "propensity": "skipped",
                        "value": "skipped"}  # fmt: skip
    later = dataclasses.replace(changed, run=dataclasses.replace(changed.run, as_of=changed.run.as_of.replace(day=10)))
    statuses = {name: stage["status"] for name, stage in run_pipeline(later, report=False).manifest["stages"].items()}
    assert statuses == {"ingest": "skipped", "features": "ran", "segments": "ran", "propensity": "ran", "value": "ran"}


def test_forced_stages_run_again(reference, config_in, tmp_path):
    config = config_in(tmp_path / "run")
    run_pipeline(config, stages=["ingest", "features", "value"], report=False)
    summary = run_pipeline(config, stages=["value"], force=True, report=False)
    statuses = {name: stage["status"] for name, stage in summary.manifest["stages"].items()}
    assert statuses == {"ingest": "not selected", "features": "not selected", "segments": "not selected",
                        "propensity": "not selected", "value": "ran"}  # fmt: skip
    assert summary.manifest["rows"]  # carried over from ingest's record


def test_a_selected_stage_needs_what_it_reads(config_in, tmp_path):
    config = config_in(tmp_path / "run")
    with pytest.raises(UsageError, match="segments needs features, which has not run here; add features to --stages"):
        run_pipeline(config, stages=["segments"])
    run_pipeline(config, stages=["ingest", "features"], report=False)
    stale = dataclasses.replace(config, features=dataclasses.replace(config.features, windows=(30, 60)))
    with pytest.raises(UsageError, match="features is out of date .* add features to --stages"):
        run_pipeline(stale, stages=["segments"])
    with pytest.raises(UsageError, match="unknown stage scoring; the stages are ingest, features"):
        run_pipeline(config, stages=["scoring"])
    with pytest.raises(UsageError, match="compare does not apply"):
        run_pipeline(config, stages=["compare"])
    failed = json.loads(RunLayout(tmp_path / "run").manifest.read_text())
    assert failed["exit_code"] == 2 and "out of date" in failed["error"]


def test_compare_against_a_previous_run(reference, config_in, tmp_path):
    config, summary = reference
    base = config_in(tmp_path / "run", k=3)
    current = dataclasses.replace(base, run=dataclasses.replace(base.run, previous_run=summary.run_dir))
    result = run_pipeline(current, stages=["ingest", "features", "segments", "propensity", "value", "compare"])
    comparison = result.manifest["metrics"]["compare"]
    # The same world as of the same day: every feature and score as before, nothing shifted.
    drift = result.manifest["stages"]["compare"]["summary"]["feature_drift"]
    assert {row["column"] for row in drift} >= {"recency_days", "frequency", "score", "p_alive", "clv"}
    assert max(row["psi"] for row in drift) < 0.01 and comparison["shifted"] == []
    assert comparison["common"] == result.manifest["metrics"]["segments"]["customers"]
    assert 0 < comparison["adjusted_rand"] <= 1
    assert (tmp_path / "run" / "compare" / "comparison.json").exists()
    report = (tmp_path / "run" / "report.html").read_text()
    assert 'alt="transition matrix"' in report and 'alt="segment size drift"' in report
    assert f"adjusted Rand index {comparison['adjusted_rand']:.3f}" in report
    assert "Drift of features and scores" in report
    nowhere = dataclasses.replace(current, run=dataclasses.replace(current.run, previous_run=tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"\[run\] previous_run: .*missing holds no segments"):
        run_pipeline(nowhere, stages=["compare"])


@pytest.mark.gpu
def test_a_whole_run_on_the_gpu_agrees_with_the_cpu(reference, config_in, tmp_path):
    """The tiny world end to end with backend gpu: the same rows quarantined for the same
    reasons, the same segment count, AUC within 0.01, the same customers valued."""
    config, cpu = reference
    gpu_config = config_in(tmp_path / "run")
    gpu_config = dataclasses.replace(gpu_config, run=dataclasses.replace(gpu_config.run, backend="gpu"))
    gpu = run_pipeline(gpu_config)
    cpu_manifest, gpu_manifest = cpu.manifest, gpu.manifest
    assert gpu_manifest["backend"]["resolved"] == "gpu" and gpu_manifest["status"] == "succeeded"
    assert gpu_manifest["rows"] == cpu_manifest["rows"]
    cpu_metrics, gpu_metrics = cpu_manifest["metrics"], gpu_manifest["metrics"]
    assert gpu_metrics["segments"]["k"] == cpu_metrics["segments"]["k"]
    assert gpu_metrics["segments"]["customers"] == cpu_metrics["segments"]["customers"]
    assert abs(gpu_metrics["propensity"]["roc_auc"] - cpu_metrics["propensity"]["roc_auc"]) < 0.01
    assert gpu_metrics["value"]["customers"] == cpu_metrics["value"]["customers"]
