"""segscale value on real purchase logs: a published fit reproduced from the CLI alone, and a
log without amounts."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.layout import RunLayout

from .conftest import invoke

CDNOW = Path(__file__).resolve().parents[1] / "data" / "cdnow_sample.csv"
GROCERY = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "btydplus_grocery_elog.csv"

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", CDNOW 1/10 sample, 39
# weeks of calibration (BG/NBD, weeks); and Fader & Hardie (2013), "The Gamma-Gamma model of
# monetary value", on its 946 repeat buyers.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LOG_LIKELIHOOD = -9582.4
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def _run(tmp_path, monkeypatch, config: str) -> RunLayout:
    monkeypatch.setenv("SEGSCALE_PSEUDONYM_KEY", "value-backtest-key")
    (tmp_path / "run.toml").write_text('[run]\noutput_dir = "run"\n' + config)
    for stage in ("ingest", "value"):
        result = invoke(stage, tmp_path / "run.toml", "--workers", 1)
        assert result.exit_code == 0, result.stderr
    return RunLayout(tmp_path / "run")


def test_the_published_cdnow_fits_come_out_of_the_cli(tmp_path, monkeypatch):
    """The BTYD conventions by default (T to the last calibration day, repeat purchase days,
    weeks): only the data's own settings are configured."""
    layout = _run(tmp_path, monkeypatch, f"""as_of = 1997-10-01
[inputs.transactions]
path = "{CDNOW}"
timestamp_format = "%Y%m%d"
duplicates = "none"
[inputs.transactions.columns]
customer_id = "customer_id"
ts = "date"
amount = "dollars"
quantity = "cds"
[value]
model = "bgnbd"
horizon_days = 273
""")
    document = json.loads(layout.value.summary.read_text())
    purchase, spend = document["purchase_model"], document["spend_model"]
    assert document["time_unit"] == "weeks" and purchase["customers"] == 2_357 and spend["customers"] == 946
    assert purchase["params"] == pytest.approx(PUBLISHED_BGNBD, rel=0.005)
    assert purchase["log_likelihood"] == pytest.approx(PUBLISHED_LOG_LIKELIHOOD, abs=0.1)
    assert spend["params"] == pytest.approx(PUBLISHED_GAMMA_GAMMA, rel=0.005)
    assert purchase["degenerate"] == spend["degenerate"] == []


@pytest.mark.skipif(not GROCERY.exists(), reason=f"{GROCERY} is not beside this checkout")
def test_a_log_without_amounts_gets_purchases_and_no_spend(tmp_path, monkeypatch):
    layout = _run(tmp_path, monkeypatch, f"""as_of = 2007-01-01
[inputs.transactions]
path = "{GROCERY}"
[inputs.transactions.columns]
customer_id = "cust"
ts = "date"
[value]
horizon_days = 364
""")
    document = json.loads(layout.value.summary.read_text())
    assert document["spend_model"] is None and document["holdout"]["spend"] is None
    columns = pq.read_schema(next(layout.value.customers.glob("*.parquet"))).names
    assert columns == document["columns"] and "clv" not in columns and "expected_spend" not in columns
    values = pq.read_table(layout.value.customers).to_pandas()
    assert len(values) == 1_525 and values["p_alive"].between(0, 1).all()
    # The 2007 holdout: every candidate beats the naive forecast on it, as in the literature.
    assert document["forecast"] == document["model_choice"]["chosen"]
    assert document["holdout"]["naive"]["model_mae_ratio"] < 0.62
    assert document["holdout"]["purchases"]["actual"] == 3_389
