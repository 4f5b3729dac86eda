"""``segscale propensity --table`` and ``segscale score``: exit codes and output."""

import json

import numpy as np
import pandas as pd
import pytest

from .conftest import invoke


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=1_500)
    frame = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(x.size)],
            "x": x,
            "plan": rng.choice(["a", "b"], size=x.size),
            "bought": np.where(rng.random(x.size) < 1 / (1 + np.exp(-2 * x)), "yes", "no"),
        }
    )
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    return path


def test_table_training_prints_metrics_and_json(table, tmp_path):
    result = invoke("propensity", "--table", table, "--id", "id", "--target", "bought", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and "top inputs by permutation importance" in result.output
    result = invoke("propensity", "--table", table, "--id", "id", "--target", "bought", "--model", "logistic", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["train"]["model"] == "logistic" and document["train"]["metrics"]["roc_auc"] > 0.75
    assert document["scores"] is None and document["train"]["out_dir"] is None


def test_bad_usage_exits_2(table, tmp_path):
    assert invoke("propensity").exit_code == 2
    result = invoke("propensity", "--table", table, "--id", "id")
    assert result.exit_code == 2 and "needs --target" in result.output
    result = invoke("score", "--model", tmp_path, "--features", tmp_path, "--out", tmp_path / "s", "--workers", "1")
    assert result.exit_code == 2 and "not a segscale propensity model" in result.output


def test_monitor_needs_a_scoring(tmp_path):
    result = invoke("monitor", "--scores", tmp_path, "--store", tmp_path)
    assert result.exit_code == 2 and "not a segscale scoring" in result.output
