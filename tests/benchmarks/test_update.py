"""The update benchmark: segscale update against a full run over all the data at the same as-of."""

import pytest

from benchmarks import _update
from benchmarks._measure import Clock
from benchmarks.cases import CASES, select_cases


def test_the_update_stage_has_its_case_and_peer():
    assert [case.name for case in select_cases(("update",))] == ["update-full-run", "update"]
    assert CASES["update"].baselines == ("update-full-run",)
    assert CASES["update"].dataset == CASES["update-full-run"].dataset == "update-run"


@pytest.mark.slow  # 50 s here: a base run and a full run of 3,000 customers
def test_an_update_and_a_full_run_cover_the_same_customers(tmp_path):
    data = _update.prepare_update_run(3_000, tmp_path / "data", "cpu", 1)
    assert data["customers_with_new_rows"] == 30 and sum(data["new_rows"].values()) > 0
    full_clock, update_clock = Clock(), Clock()
    full = _update.run_full_run(3_000, tmp_path / "full", "cpu", 1, full_clock, data)
    update = _update.run_update(3_000, tmp_path / "update", "cpu", 1, update_clock, data)
    quality = update["quality"]
    assert quality["partitions_appended"] >= 1 and update["rows"]["new_rows"] > 0
    assert quality["as_of"] == full["quality"]["as_of"] == data["as_of"].isoformat()
    assert 0 < quality["customers_with_new_rows"] <= 30
    assert update["rows"]["customers"] == full["rows"]["customers"] > 2_000
    # The full run ran first and left its time: the update reports the ratio.
    assert quality["full_run_seconds"] > 0 and quality["speedup_vs_full_run"] > 0
    assert {"append_seconds", "features_seconds", "deltas_seconds"} <= quality.keys()
