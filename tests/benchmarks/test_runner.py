"""Tests for benchmarks.runner: one real tiny run of the generator, and the runner's rules."""

import json
from pathlib import Path

import pytest
from rich.console import Console

from benchmarks import CASES, BenchmarkUsageError, Case, format_table, run_benchmarks
from engine.exceptions import UsageError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULT_KEYS = {
    "case", "stage", "backend", "size", "size_unit", "workers", "status", "reason", "rows", "rows_by_table",
    "median_seconds", "min_seconds", "rows_per_second", "peak_rss_gib", "setup_seconds", "runs", "speedup_vs",
}  # fmt: skip
METADATA_KEYS = {
    "timestamp", "git_sha", "segscale_version", "python", "platform", "cpu_model", "usable_cores",
    "total_ram_gib", "packages", "gpu", "run",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One real run: 2,000 customers, in-process, two repeats."""
    out_dir = tmp_path_factory.mktemp("bench")
    calls = []
    document = run_benchmarks(
        sizes=(2000,), workers=1, repeats=2, out_dir=out_dir, progress=lambda done, total: calls.append((done, total))
    )
    return document, out_dir, calls


def test_json_document_is_written_with_documented_keys(tiny):
    document, out_dir, _ = tiny
    path = Path(document["paths"]["json"])
    assert path.parent == out_dir and path.name.startswith("bench-") and path.suffix == ".json"
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(document))
    assert METADATA_KEYS <= loaded["metadata"].keys()
    assert loaded["metadata"]["timestamp"].endswith("Z")
    packages = loaded["metadata"]["packages"]
    assert {"numpy", "pandas", "pyarrow", "dask", "distributed", "scikit-learn"} <= packages.keys()
    assert loaded["metadata"]["run"]["repeats"] == 2
    (result,) = loaded["results"]
    assert RESULT_KEYS <= result.keys()
    assert (result["case"], result["size"], result["status"], result["workers"]) == ("generate", 2000, "ok", 1)


def test_numbers_are_consistent(tiny):
    (result,) = tiny[0]["results"]
    assert len(result["runs"]) == 2
    assert result["median_seconds"] >= result["min_seconds"] > 0
    assert result["min_seconds"] == min(run["seconds"] for run in result["runs"])
    assert result["rows"] > 0
    assert result["rows"] == sum(result["rows_by_table"].values())
    assert set(result["rows_by_table"]) == {"transactions", "events", "customers", "identities"}
    assert result["rows_per_second"] == pytest.approx(result["rows"] / result["median_seconds"])
    assert 0 < result["peak_rss_gib"] < 64
    assert result["setup_seconds"] is None  # one worker: no cluster to start


def test_plot_is_a_png(tiny):
    plot = Path(tiny[0]["paths"]["plot"])
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_world_is_deleted(tiny):
    document, out_dir, _ = tiny
    assert document["results"][0]["data_path"] is None
    assert sorted(p.suffix for p in out_dir.iterdir()) == [".json", ".png"]


def test_progress_counts_runs(tiny):
    assert tiny[2] == [(1, 2), (2, 2)]


def test_format_table_renders(tiny):
    console = Console(record=True, width=160)
    console.print(format_table(tiny[0]))
    text = console.export_text()
    assert "generate" in text and "2,000" in text and "ok" in text


def test_keep_data_and_warmup(tmp_path):
    document = run_benchmarks(sizes=(300,), workers=1, warmup=True, out_dir=tmp_path, keep_data=True)
    (result,) = document["results"]
    assert len(result["runs"]) == 1 and result["warmup_seconds"] > 0
    world = Path(result["data_path"])
    assert world.is_relative_to(tmp_path / "data")
    assert (world / "transactions").is_dir() and (world / "segscale.toml").is_file()


def test_unsupported_backend_is_skipped_with_reason(tmp_path):
    document = run_benchmarks(sizes=(1000,), backend="gpu", workers=1, out_dir=tmp_path)
    (result,) = document["results"]
    assert result["status"] == "skipped"
    assert "gpu" in result["reason"] and "cpu" in result["reason"]
    assert result["median_seconds"] is None and result["runs"] == []
    assert document["paths"]["plot"] is None
    assert json.loads(Path(document["paths"]["json"]).read_text())["results"][0]["status"] == "skipped"
    console = Console(record=True, width=200)
    console.print(format_table(document))
    assert "skipped" in console.export_text()


def test_unknown_stage_lists_known_ones(tmp_path):
    with pytest.raises(ValueError, match="known stages: activate, backtest, features, generate, ingest") as error:
        run_benchmarks(stages=("generate", "nonsense"), sizes=(10,), out_dir=tmp_path)
    assert "'nonsense'" in str(error.value)
    assert isinstance(error.value, UsageError)  # the CLI maps it to exit code 2
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "arguments", [{"sizes": ()}, {"sizes": (0,)}, {"repeats": 0}, {"workers": 0}, {"backend": "tpu"}]
)
def test_bad_arguments_are_usage_errors(tmp_path, arguments):
    with pytest.raises(BenchmarkUsageError):
        run_benchmarks(**{"sizes": (10,), **arguments, "out_dir": tmp_path})


# --- the runner's rules, on fake cases -------------------------------------------------


def _fake_run(size, workdir, backend_name, workers, clock):
    with clock:
        (workdir / "out.txt").write_text("x" * size)
    return {"rows": {"things": size}, "quality": {"score": 1.0}}


def _failing_run(size, workdir, backend_name, workers, clock):
    raise RuntimeError("boom")


def _untimed_run(size, workdir, backend_name, workers, clock):
    return {"rows": {"things": size}}


@pytest.fixture
def fake_stage(monkeypatch):
    cases = {
        "fake-ours": Case("fake-ours", "fake", "ours", _fake_run, backends=("cpu", "gpu"), baselines=("fake-peer",)),
        "fake-peer": Case("fake-peer", "fake", "a peer", _fake_run),
        "fake-broken": Case("fake-broken", "fake", "fails", _failing_run),
        "fake-untimed": Case("fake-untimed", "fake", "never starts its clock", _untimed_run),
    }
    for name, case in cases.items():
        monkeypatch.setitem(CASES, name, case)
    return cases


def test_failures_are_reported_and_others_still_run(tmp_path, fake_stage):
    calls = []
    document = run_benchmarks(
        stages=("fake",), sizes=(10, 20), workers=1, repeats=2, out_dir=tmp_path, progress=lambda *a: calls.append(a)
    )
    status = {(r["case"], r["size"]): (r["status"], r["reason"]) for r in document["results"]}
    assert status[("fake-ours", 20)] == ("ok", None)
    assert status[("fake-broken", 10)] == ("failed", "RuntimeError: boom")
    assert status[("fake-untimed", 10)][0] == "failed" and "clock" in status[("fake-untimed", 10)][1]
    assert calls[-1] == (16, 16) and [done for done, _ in calls] == sorted(done for done, _ in calls)
    ours = next(r for r in document["results"] if r["case"] == "fake-ours" and r["size"] == 20)
    assert ours["rows"] == 20 and ours["quality"] == {"score": 1.0}
    assert set(ours["speedup_vs"]) == {"fake-peer"}
    assert not (tmp_path / "data").exists()
    assert Path(document["paths"]["plot"]).read_bytes()[:8] == PNG_MAGIC


def test_each_case_is_on_disk_as_soon_as_it_ends(tmp_path, fake_stage, monkeypatch):
    seen = []

    def reading_run(size, workdir, backend_name, workers, clock):
        # What a reader finds while this case runs: the cases before it, marked partial.
        (path,) = tmp_path.glob("bench-*.json")
        document = json.loads(path.read_text())
        seen.append((document["partial"], [(r["case"], r["size"], r["status"]) for r in document["results"]]))
        return _fake_run(size, workdir, backend_name, workers, clock)

    monkeypatch.setitem(CASES, "fake-untimed", Case("fake-untimed", "fake", "reads the document", reading_run))
    document = run_benchmarks(stages=("fake",), sizes=(10,), workers=1, out_dir=tmp_path)
    assert seen == [(True, [("fake-ours", 10, "ok"), ("fake-peer", 10, "ok"), ("fake-broken", 10, "failed")])]
    assert document["partial"] is False
    assert json.loads(Path(document["paths"]["json"]).read_text()) == json.loads(json.dumps(document))
    assert not list(tmp_path.glob("*.tmp"))


def test_the_commit_is_the_one_checked_out_when_the_run_started(tmp_path, fake_stage, monkeypatch):
    from benchmarks import runner

    heads = iter(["commit-at-start", "commit-made-during-the-run"])
    monkeypatch.setattr(runner, "_git_sha", lambda: next(heads))
    document = run_benchmarks(stages=("fake",), sizes=(10,), workers=1, out_dir=tmp_path)
    assert document["metadata"]["git_sha"] == "commit-at-start"


def test_gpu_request_without_gpu_fails_before_running(tmp_path, fake_stage):
    from engine.backend import probe_gpu

    if probe_gpu().available:
        pytest.skip("a GPU is usable here")
    with pytest.raises(UsageError, match="GPU backend requested"):
        run_benchmarks(stages=("fake",), sizes=(10,), backend="gpu", out_dir=tmp_path)


def test_registry_rejects_bad_cases():
    from benchmarks.cases import _check_registry

    with pytest.raises(ValueError, match="backends"):
        Case("x", "s", "d", _untimed_run, backends=("tpu",))
    with pytest.raises(ValueError, match="baseline 'nope'"):
        _check_registry({"x": Case("x", "s", "d", _untimed_run, baselines=("nope",))})


# --- shared datasets and optional peers ---------------------------------------------------


def _data_run(size, workdir, backend_name, workers, clock, data):
    with clock:
        text = (data["dir"] / "input.txt").read_text()
    return {"rows": {"things": len(text)}, "quality": {"built": data["built"]}}


@pytest.fixture
def data_stage(monkeypatch):
    from benchmarks import cases

    built = []

    def prepare(size, directory, backend_name, workers):
        built.append((size, directory))
        (directory / "input.txt").write_text("y" * size)
        return {"dir": directory, "built": len(built)}

    monkeypatch.setitem(cases.DATASETS, "fake-data", prepare)
    for name in ("a", "b"):
        monkeypatch.setitem(CASES, f"data-{name}", Case(f"data-{name}", "data", name, _data_run, dataset="fake-data"))
    peer = Case("data-peer", "data", "needs a library", _data_run, dataset="fake-data", requires=("no_such_module_xyz",))
    monkeypatch.setitem(CASES, "data-peer", peer)
    return built


def test_datasets_are_built_once_per_size_shared_and_removed(tmp_path, data_stage):
    document = run_benchmarks(stages=("data",), sizes=(5, 7), workers=1, repeats=2, out_dir=tmp_path)
    assert [size for size, _ in data_stage] == [5, 7]
    ok = [r for r in document["results"] if r["status"] == "ok"]
    assert [(r["case"], r["rows"], r["quality"]["built"]) for r in ok] == [("data-a", 5, 1), ("data-a", 7, 2), ("data-b", 5, 1), ("data-b", 7, 2)]
    assert not any(directory.exists() for _, directory in data_stage)
    assert not (tmp_path / "data").exists()


def test_a_peer_without_its_library_is_skipped_with_how_to_install(tmp_path, data_stage):
    document = run_benchmarks(stages=("data",), sizes=(5,), workers=1, out_dir=tmp_path)
    peer = next(r for r in document["results"] if r["case"] == "data-peer")
    assert peer["status"] == "skipped"
    assert "no_such_module_xyz not installed" in peer["reason"] and ".[bench]" in peer["reason"]
    text = _table_text(document)
    assert "no_such_module_xyz not installed" in text


def _table_text(document):
    console = Console(width=200, record=True)
    console.print(format_table(document))
    return console.export_text()


def test_time_against_the_fastest_peer(tmp_path, fake_stage, monkeypatch):
    from benchmarks import runner

    results = [
        {**runner._result(CASES["fake-ours"], 10, "cpu", 1, "ok"), "median_seconds": 1.0},
        {**runner._result(CASES["fake-peer"], 10, "cpu", 1, "ok"), "median_seconds": 4.0},
    ]
    runner._compare_with_baselines(results, CASES)
    assert results[0]["fastest_peer"] == "fake-peer" and results[0]["time_vs_fastest_peer"] == 0.25
    assert results[0]["speedup_vs"] == {"fake-peer": 4.0}
    assert results[1]["time_vs_fastest_peer"] is None


def test_baselines_choose_which_peers_run():
    from benchmarks.cases import BenchmarkUsageError, select_cases

    everything = [case.name for case in select_cases(["kmeans"])]
    assert everything[:2] == ["kmeans-sklearn", "kmeans"] and "kmeans-spark" in everything
    ours = ["kmeans", "kmeans-distributed"]
    assert [case.name for case in select_cases(["kmeans"], baselines=["kmeans-sklearn"])] == ["kmeans-sklearn", *ours]
    assert [case.name for case in select_cases(["kmeans"], baselines=[])] == ours
    with pytest.raises(BenchmarkUsageError, match="unknown baseline.*known: kmeans-sklearn, kmeans-spark"):
        select_cases(["kmeans"], baselines=["features-duckdb"])


def _measured(case, size, seconds, peak, **quality):
    from benchmarks import runner

    return {**runner._result(CASES[case], size, "cpu", 1, "ok"), "median_seconds": seconds, "peak_rss_gib": peak,
            "quality": quality}  # fmt: skip


def test_scaling_is_the_log_log_slope_of_time_and_the_growth_of_peak_memory(fake_stage):
    from benchmarks import runner

    results = [
        # Linear in total, quadratic in one part, constant in another; memory up 50% at 4x.
        _measured("fake-ours", size, seconds=size / 100, peak=1.0 + 0.5 * (size == 400), load_seconds=(size / 100) ** 2,
                  fit_seconds=3.0, score=1.0)
        for size in (400, 100, 200)
    ] + [_measured("fake-peer", 100, seconds=1.0, peak=1.0), runner._result(CASES["fake-peer"], 200, "cpu", 1, "failed")]
    (curve,) = runner._scaling(results)  # the peer has one size that ran: no curve
    assert curve["case"] == "fake-ours" and curve["sizes"] == [100, 200, 400]
    assert curve["time_slope"] == pytest.approx(1.0)
    assert curve["part_time_slopes"] == {"load": pytest.approx(2.0), "fit": pytest.approx(0.0)}
    assert curve["peak_rss_gib"] == [1.0, 1.0, 1.5] and curve["peak_rss_vs_smallest"] == [1.0, 1.0, 1.5]
    text = " ".join(_table_text({"results": results, "scaling": [curve]}).split())
    assert "fake-ours from 100 to 400 customers: time slope 1.00" in text
    assert "by part: load 2.00, fit 0.00; peak RSS 1.00 -> 1.50 GiB (x1.50)" in text


def test_a_run_at_several_sizes_reports_its_scale_curve(tmp_path, fake_stage):
    document = run_benchmarks(stages=("fake",), sizes=(10, 20), workers=1, out_dir=tmp_path, baselines=())
    curves = {curve["case"]: curve for curve in document["scaling"]}
    assert set(curves) == {"fake-ours"}  # the others failed
    assert curves["fake-ours"]["sizes"] == [10, 20] and curves["fake-ours"]["time_slope"] is not None
    assert json.loads(Path(document["paths"]["json"]).read_text())["scaling"] == json.loads(json.dumps(document["scaling"]))
