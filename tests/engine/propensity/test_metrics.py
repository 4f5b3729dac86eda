"""Test-split metrics and the fairness audit, on hand-made scores."""

import numpy as np
import pandas as pd
import pytest

from engine.propensity import calibration_table, classification_metrics, fairness_audit, flagged_groups, lift_table
from engine.propensity import permutation_importance


def test_a_calibrated_score_has_small_ece_and_a_shifted_one_does_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    y = (rng.random(p.size) < p).astype(int)
    table, ece = calibration_table(y, p)
    assert ece < 0.01 and len(table) == 10 and sum(row["customers"] for row in table) == p.size
    assert table[9]["observed_rate"] == pytest.approx(0.95, abs=0.02)
    _, shifted = calibration_table(y, np.clip(p + 0.1, 0, 1))
    assert shifted == pytest.approx(0.1, abs=0.02)


def test_lift_and_gains_by_decile():
    y = np.array([1] * 10 + [0] * 90)
    p = np.linspace(1, 0, 100)  # the positives score highest
    rows = lift_table(y, p)
    assert [row["customers"] for row in rows] == [10] * 10
    assert rows[0]["lift"] == pytest.approx(10.0) and rows[0]["cumulative_gain"] == 1.0
    assert rows[-1]["cumulative_gain"] == 1.0 and rows[1]["positives"] == 0


def test_classification_metrics_on_a_perfect_and_a_single_class_score():
    y = np.array([0, 0, 1, 1])
    metrics = classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == 1.0
    assert metrics["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.04, 0.01]))
    assert classification_metrics(np.zeros(4), np.full(4, 0.5))["roc_auc"] is None


def test_permutation_importance_ranks_the_used_column_first():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"used": rng.normal(size=2_000), "unused": rng.normal(size=2_000)})
    y = (frame["used"] > 0).astype(int).to_numpy()
    rows = permutation_importance(lambda f: f["used"].to_numpy(), frame, y, ["unused", "used"])
    assert [row["feature"] for row in rows] == ["used", "unused"]
    assert rows[0]["auc_drop"] > 0.4 and rows[1]["auc_drop"] == 0.0


def test_permutation_importance_is_the_same_in_batches_and_one_copy_per_call():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "c": rng.normal(size=500)})
    y = (frame["a"] + 0.5 * frame["b"] + rng.normal(size=500) > 0).astype(int).to_numpy()
    calls = []

    def predict(f):
        calls.append(len(f))
        return (f["a"] + 0.5 * f["b"]).to_numpy()

    batched = permutation_importance(predict, frame, y, ["a", "b", "c"], repeats=3, seed=4)
    batched_calls = len(calls)
    calls.clear()
    single = permutation_importance(predict, frame, y, ["a", "b", "c"], repeats=3, seed=4, rows_per_call=1)
    assert batched == single
    assert batched_calls == 2 and len(calls) == 1 + 9  # the reference, then every shuffled copy alone


def test_fairness_audit_flags_a_group_selected_under_four_fifths():
    scored = pd.DataFrame(
        {
            "customer_key": [f"k{i}" for i in range(8)],
            "score": [0.9, 0.8, 0.2, 0.1, 0.9, 0.3, 0.2, 0.1],
            "band": ["high", "high", "low", "low", "high", "low", "low", "low"],
            "label": [1, 1, 0, 0, 1, 0, 1, 0],
        }
    )
    sensitive = pd.DataFrame({"customer_key": [f"k{i}" for i in range(8)], "gender": ["a"] * 4 + ["b"] * 3 + [None]})
    audit = fairness_audit(scored, sensitive, ["gender", "not_there"])
    rows = {row["group"]: row for row in audit["gender"]}
    assert set(audit) == {"gender"} and set(rows) == {"a", "b", "(missing)"}
    assert rows["a"]["high_share"] == 0.5 and rows["a"]["selection_ratio"] == 1.0 and rows["a"]["auc"] == 1.0
    assert rows["b"]["selection_ratio"] == pytest.approx(2 / 3) and rows["b"]["flagged"]
    assert flagged_groups(audit) == ["gender=b", "gender=(missing)"]
