"""The activation benchmark: a run directory built directly, then the stage timed on it."""

import contextlib

from benchmarks import _activate
from benchmarks.cases import select_cases


def test_the_activate_stage_has_its_case():
    assert [case.name for case in select_cases(("activate",))] == ["activate"]


def test_ten_audiences_over_a_built_run(tmp_path):
    data = _activate.prepare_activation_run(2_000, tmp_path / "data", "cpu", 1)
    assert data["contacts"] == 40_000
    result = _activate.run_activate(2_000, tmp_path / "run", "cpu", 1, contextlib.nullcontext(), data)
    quality = result["quality"]
    assert result["rows"] == {"customers": 2_000} and quality["audiences"] == 10
    assert quality["in_audiences"] == quality["treated"] + quality["control"] > 0
    # Every removal the stage makes happens in this run: consent, suppressions, caps, overlap, recency.
    assert {"removed_frequency_cap", "removed_no_consent", "removed_suppressed", "removed_in_an_earlier_audience",
            "removed_recent_purchase"} <= set(quality)  # fmt: skip
    assert quality["actions_chosen"] > 0
