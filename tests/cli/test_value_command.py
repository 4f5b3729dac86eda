"""segscale value: from a run config or a store, as text or one JSON document."""

import json
import re

import pytest

from .conftest import invoke


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    assert invoke("generate", "--customers", "2k", "--out", out, "--seed", 5, "--workers", 1).exit_code == 0
    config = out / "segscale.toml"
    # A [value] section the config parser must accept: MBG/NBD, each order a purchase.
    config.write_text(config.read_text() + '\n[value]\nmodel = "mbgnbd"\ngrain = "order"\nmin_repeat_customers = 50\n')
    assert invoke("ingest", config, "--workers", 1).exit_code == 0
    return out


def test_value_from_a_run_config_prints_one_json_document(world):
    result = invoke("value", world / "segscale.toml", "--workers", 1, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["out_dir"] == str(world / "run" / "value")
    assert document["purchase_model"]["name"] == "mbgnbd" and document["purchase_grain"] == "order"
    assert document["horizon_days"] == 365 and document["holdout"] is None  # the store ends at as-of
    assert (world / "run" / "value" / "value.json").exists()


def test_value_from_a_store_with_a_holdout_prints_the_evaluation(world, tmp_path):
    store = world / "run" / "ingest" / "store"
    args = ("--store", store, "--as-of", "2025-10-02", "--horizon-days", 90, "--out", tmp_path / "v", "--workers", 1)
    result = invoke("value", *args)
    assert result.exit_code == 0, result.stderr
    assert re.search(r"(BG|MBG|Pareto)/NBD: r=", result.stdout) and "purchases" in result.stdout and "inside the 80% interval" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--store", "{tmp}"), "both --store and --out"),
        (("--store", "{tmp}", "--out", "{tmp}/v"), "not a segscale store"),
    ],
)
def test_value_bad_usage_exits_2(tmp_path, args, fragment):
    result = invoke("value", *[str(a).format(tmp=tmp_path) for a in args], "--workers", 1)
    assert result.exit_code == 2 and result.stdout == ""
    assert fragment in result.stderr


def test_value_refuses_thin_data_with_exit_2(world, tmp_path):
    store = world / "run" / "ingest" / "store"
    result = invoke("value", "--store", store, "--as-of", "2024-01-03", "--out", tmp_path / "v", "--workers", 1)
    assert result.exit_code == 2 and "cannot fit BG/NBD" in result.stderr
    assert not (tmp_path / "v").exists()
