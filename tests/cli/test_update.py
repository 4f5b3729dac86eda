"""segscale update CONFIG --new ...: a finished run refreshed from the command line."""

import json
import shutil

import pandas as pd
import pytest

from .conftest import invoke, one_line_error



@pytest.fixture(scope="module")
def finished(backtest_world, full_run, tmp_path_factory):
    """A copy of the session's whole run of the backtest config, a config writing into it, and
    a week of new purchases (copies of the world's purchases of that week, as new orders a
    second later)."""
    world, config = backtest_world
    directory = tmp_path_factory.mktemp("cli-update")
    shutil.copytree(full_run, directory / "run")
    path = world / "update.toml"  # the config's paths are relative to it
    path.write_text(config.read_text().replace('output_dir = "backtest"', f'output_dir = "{directory / "run"}"'))
    rows = pd.read_parquet(world / "transactions")
    ts = rows["ts"].astype(str)
    week = rows[(ts >= "2025-10-03") & (ts < "2025-10-10") & rows["customer_id"].notna()].copy()
    week["ts"] = (pd.to_datetime(week["ts"], errors="coerce") + pd.Timedelta(seconds=1)).dt.strftime("%Y-%m-%d %H:%M:%S")
    week["order_id"] += 10**9
    week.to_csv(directory / "new.csv", index=False)
    return path, directory


def test_update_refreshes_the_run_and_writes_the_deltas(finished):
    config, directory = finished
    result = invoke("update", config, "--new", f"transactions={directory / 'new.csv'}", "--as-of", "2025-10-10",
                    "--workers", 1, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    new = pd.read_csv(directory / "new.csv")
    counts = summary["tables"]["transactions"]
    assert counts["read"] == len(new) and counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"] == len(new)
    assert summary["as_of"] == "2025-10-10" and summary["previous_as_of"] == "2025-10-03"
    # The store holds what happened in the 90 days after the run's as-of: the scoring the
    # update replaced is judged on it, as segscale monitor would.
    realised = summary["realised"]
    assert realised["scoring_as_of"] == "2025-10-03" and realised["realised"]["customers"] > 1_000
    assert summary["stale"] == (bool(summary["shifted"]) or realised["retrain"])
    deltas = pd.read_csv(f"{summary['update_dir']}/deltas.csv")
    assert set(deltas["change"]) <= {"segment", "band"} and len(deltas) == sum(summary["changes"].values())
    features = json.loads((directory / "run" / "features" / "_features.json").read_text())
    assert features["as_of"] == "2025-10-10"
    manifest = json.loads((directory / "run" / "manifest.json").read_text())
    assert [entry["as_of"] for entry in manifest["updates"]] == ["2025-10-10"]
    # The report reads the refreshed outputs.
    report = invoke("report", directory / "run")
    assert report.exit_code == 0, report.stderr
    page = (directory / "run" / "report.html").read_text()
    assert "<h2>Updates</h2>" in page or ">Updates<" in page
    assert "customers changed in the latest update" in page
    assert sum(sum(r.values()) for r in summary["change_reasons"].values()) == sum(summary["changes"].values())
    # The same command again is the same update, already done: nothing is appended twice.
    again = invoke("update", config, "--new", f"transactions={directory / 'new.csv'}", "--as-of", "2025-10-10",
                   "--workers", 1, "--json")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["tables"] == summary["tables"]
    assert set(json.loads(again.stdout)["resumed"]) >= {"append", "features", "deltas"}
    # The next full run keeps the store with the new rows (ingest is up to date) and refits the rest.
    rerun = invoke("run", config, "--workers", 1, "--json")
    assert rerun.exit_code == 0, rerun.stderr
    stages = json.loads(rerun.stdout)["stages"]
    assert stages["ingest"]["status"] == "skipped" and stages["segments"]["status"] == "ran"
    store = json.loads((directory / "run" / "ingest" / "store" / "_store.json").read_text())
    assert store["tables"]["transactions"]["rows"] == summary["tables"]["transactions"]["kept"] + json.loads(
        (directory / "run" / "ingest" / "ingest.json").read_text())["tables"]["transactions"]["kept"]


@pytest.mark.parametrize("new, fragment", [
    ("customers={world}/customers", "customers rows change a customer's profile"),
    ("transactions={directory}/absent.csv", "absent.csv"),
])  # fmt: skip
def test_what_an_update_cannot_take_is_one_line_and_exit_2(finished, backtest_world, new, fragment):
    config, directory = finished
    value = new.format(world=backtest_world[0], directory=directory)
    result = invoke("update", config, "--new", value, "--as-of", "2025-10-12", "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, fragment, after_progress=True)


def test_an_update_before_a_run_is_exit_2(backtest_world, tmp_path):
    world, config = backtest_world
    path = world / "fresh-update.toml"
    path.write_text(config.read_text().replace('output_dir = "backtest"', f'output_dir = "{tmp_path / "nothing"}"'))
    result = invoke("update", path, "--new", str(world / "transactions"), "--workers", 1)
    assert result.exit_code == 2
    one_line_error(result, "run segscale run CONFIG first", after_progress=True)


def test_new_files_name_their_table_or_are_transactions_and_keep_equals_signs_in_paths():
    from cli._stages import _new_files

    assert _new_files(["events=/feeds/date=2025-10-10", "/feeds/day.csv"]) == {
        "events": "/feeds/date=2025-10-10", "transactions": "/feeds/day.csv"}
    assert _new_files(["/feeds/date=2025-10-10/day.csv"]) == {"transactions": "/feeds/date=2025-10-10/day.csv"}
    with pytest.raises(Exception, match="events is given twice"):
        _new_files(["events=a", "events=b"])
