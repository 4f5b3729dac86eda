"""build_report: every section, every chart a real PNG inlined, and honest notes for what is missing."""

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from engine.exceptions import InputDataError
from engine.pipeline import run_pipeline
from engine.report import audience_table, build_report
from engine.report._html import table

SECTIONS = ("run", "quality", "segments", "profiles", "names", "hierarchy", "stability", "baseline", "propensity",
            "fairness", "value", "audiences")  # fmt: skip


def _images(document):
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', document)]


def test_every_section_is_there_with_its_charts(full_run):
    summary = build_report(full_run)
    document = summary.path.read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in document and f'href="#{anchor}"' in document
    images = _images(document)
    # stages, quarantine, sizes, profiles, tree, stability, baseline, ROC/PR, calibration, gains,
    # importance, value's tracking and conditional expectation, CLV, audiences
    assert len(images) == len(summary.images) == 15
    for image, path in zip(images, summary.images):
        assert image == path.read_bytes()
        with Image.open(io.BytesIO(image)) as picture:
            assert picture.format == "PNG" and picture.width > 300 and picture.height > 150
    assert 'class="note"' not in document.split('id="stability"')[0]  # nothing missing before the comparison note
    assert "set [run] previous_run" in document  # no earlier run: said, not hidden
    manifest = json.loads((full_run / "manifest.json").read_text())
    assert f"{manifest['rows']['transactions']['read']:,}" in document
    assert f"{manifest['metrics']['propensity']['roc_auc']:.3f}" in document
    assert "src=\"http" not in document and "<script" not in document  # one file, nothing fetched


def test_audiences_count_every_scored_customer_once(full_run):
    audiences = audience_table(full_run)
    scores = pd.read_parquet(full_run / "propensity" / "scores")
    assert audiences["customers"].sum() == len(scores)
    listed = json.loads((full_run / "manifest.json").read_text())["stages"]["report"]["summary"]["audiences"]
    assert [row["customers"] for row in listed] == audiences["customers"].tolist()
    assert set(audiences["band"]) <= {"high", "medium", "low"}
    value = pd.read_parquet(full_run / "value" / "customers", columns=["customer_key", "clv"])
    scored_value = value[value["customer_key"].isin(scores["customer_key"])]["clv"].sum()
    assert audiences["clv_total"].sum() == pytest.approx(scored_value)


def test_a_partial_run_says_what_did_not_run(config_in, tmp_path):
    run_dir = run_pipeline(config_in(tmp_path / "run"), stages=["ingest", "features"]).run_dir
    document = build_report(run_dir).path.read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in document
    assert "The segments stage has no output in this run directory (status: not selected)" in document
    assert "The propensity stage has no output" in document and "The value stage has no output" in document


def test_a_directory_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(InputDataError, match="not a segscale run directory"):
        build_report(tmp_path)


def test_values_are_escaped_and_numbers_aligned():
    html = table(["segment", "customers", "share"], [("<b>Loyal</b> & co", 1234, "12.5%")], flagged=[True])
    assert "&lt;b&gt;Loyal&lt;/b&gt; &amp; co" in html and "<b>" not in html
    assert '<td class="num">1,234</td>' in html and '<td class="num">12.5%</td>' in html and 'class="flag"' in html


def test_a_backtest_on_a_sample_of_customers_says_so():
    from types import SimpleNamespace

    from engine.report._build import _baseline_section, _Figures

    grouping = {"customers": 1000, "spend_eta_squared": 0.3, "log_spend_eta_squared": 0.4, "churn_rate_range": 0.6,
                "churn_rate_std": 0.2, "groups": [{"group": "A"}]}  # fmt: skip
    evaluation = {"window": {"start": "2025-09-01T00:00:00", "end": "2025-11-30T00:00:00"}, "customers": 1000,
                  "of_customers": 5000, "segments": grouping, "rfm_grid": grouping}  # fmt: skip
    section = _baseline_section(SimpleNamespace(evaluation=evaluation), _Figures())
    assert "Measured on 1,000 of the 5,000 customers" in str(section)
    whole = _baseline_section(SimpleNamespace(evaluation={**evaluation, "customers": 5000}), _Figures())
    assert "Measured on" not in str(whole)


def test_the_baseline_section_compares_at_equal_group_count():
    from types import SimpleNamespace

    from engine.report._build import _baseline_section, _Figures
    from engine.segments._backtest import compare_at_equal_groups

    rng = np.random.default_rng(0)
    kind = rng.integers(0, 4, 3000)
    outcomes = pd.DataFrame({"orders_next": (rng.random(3000) < kind / 4).astype(int), "spend_next": kind * 10.0})
    grouping = {"customers": 3000, "spend_eta_squared": 0.3, "log_spend_eta_squared": 0.4, "churn_rate_range": 0.6,
                "churn_rate_std": 0.2, "groups": [{"group": 0}, {"group": 1}]}  # fmt: skip
    evaluation = {"window": {"start": "2025-09-01T00:00:00", "end": "2025-11-30T00:00:00"}, "customers": 3000,
                  "of_customers": 3000, "segments": grouping, "rfm_grid": grouping,
                  "at_equal_groups": compare_at_equal_groups(kind, {"score sum": rng.integers(0, 4, 3000)}, outcomes,
                                                             resamples=50)}  # fmt: skip
    figures = _Figures()
    html = str(_baseline_section(SimpleNamespace(evaluation=evaluation), figures))
    assert "RFM grid, 4 groups" in html and "as many groups (4)" in html and "95% from 50 bootstrap resamples" in html
    assert html.count(">score sum</td>") == 3
    assert html.count("segments ahead") == 3 and "next-period log spend (adjusted η²)" in html
    assert "named RFM grid" in html


def test_a_degenerate_value_fit_is_flagged_in_the_report(tmp_path):
    from types import SimpleNamespace

    from html import unescape

    from engine.report._build import _Figures, _value_section

    fit = {"params": {"r": 0.5, "alpha": 9.0, "a": 1e-9, "b": 924.0}, "standard_errors": {"b": 7132.0},
           "converged": True, "log_likelihood": -1.0, "customers": 3404}  # fmt: skip
    reason = "b = 924 has a standard error of 7,132, 8x the estimate"
    value = {"purchase_model": {"name": "bgnbd", **fit, "degenerate": [reason]},
             "spend_model": {"params": {"p": 1.0}, "standard_errors": {}, "converged": True, "log_likelihood": -2.0,
                             "degenerate": []},
             "as_of": "2011-09-09", "horizon_days": 90, "discount_rate_yearly": 0.1, "holdout": None}  # fmt: skip
    html = unescape(_value_section(SimpleNamespace(value=value, run_dir=tmp_path), _Figures()).body)
    assert f"The purchases model's fit is degenerate, so its predictions are not to be trusted: {reason}." in html
    assert html.count('class="flag"') == 1 and "The spend model" not in html


def test_the_value_holdout_sets_the_model_beside_the_naive_forecast(tmp_path):
    from html import unescape
    from types import SimpleNamespace

    from engine.report._build import _Figures, _value_section

    fit = {"params": {"r": 0.7}, "standard_errors": {}, "converged": True, "log_likelihood": -1.0, "customers": 3362,
           "degenerate": []}  # fmt: skip
    holdout = {"purchases": {"predicted": 3313.2, "actual": 4397.0, "mae": 0.923, "rmse": 1.485},
               "spend": {"predicted": 1.5e6, "actual": 2.6e6, "mae": 577.3, "rmse": 2911.2},
               "naive": {"predicted": 3143.9, "mae": 0.905, "model_mae_ratio": 1.02}}  # fmt: skip
    value = {"purchase_model": {"name": "bgnbd", **fit}, "spend_model": fit, "as_of": "2011-09-09",
             "horizon_days": 90, "discount_rate_yearly": 0.1, "holdout": holdout}  # fmt: skip
    html = unescape(_value_section(SimpleNamespace(value=value, run_dir=tmp_path), _Figures()).body)
    assert "purchases, naive forecast" in html and "1.020x its: worse than the naive forecast" in html
    assert html.count('class="flag"') == 1


def test_the_value_section_shows_how_the_purchase_model_was_chosen(tmp_path):
    from html import unescape
    from types import SimpleNamespace

    from engine.report._build import _Figures, _value_section

    fit = {"params": {"r": 0.7}, "standard_errors": {}, "converged": True, "log_likelihood": -1.0, "customers": 3362,
           "degenerate": []}  # fmt: skip
    choice = {"chosen": "bgnbd", "forecast": "naive", "window_days": 90, "customers": 2811, "naive_mae": 0.763,
              "every_model_loses": True,
              "scores": {"bgnbd": {"mae": 0.811, "mae_vs_naive": 1.063}, "mbgnbd": {"mae": 0.812, "mae_vs_naive": 1.064}}}  # fmt: skip
    value = {"purchase_model": {"name": "bgnbd", **fit}, "spend_model": fit, "as_of": "2011-09-09", "horizon_days": 90,
             "discount_rate_yearly": 0.1, "holdout": None, "model_choice": choice, "forecast": "naive",
             "time_unit": "weeks", "calibration_end": "last_day"}  # fmt: skip
    html = unescape(_value_section(SimpleNamespace(value=value, run_dir=tmp_path), _Figures()).body)
    assert "up to 90 days before as-of" in html and ">best model<" in html and ">used<" in html
    assert "the naive forecast (each customer buying on at their calibration rate) makes the expected purchases" in html
    assert "BG/NBD is shown for its diagnosis, and P(alive) is not given." in html
    assert "Parameters in weeks; T runs to the last calibration day." in html
    # Without amounts: no spend model, no CLV, said so.
    counts_only = {**value, "spend_model": None, "columns": ["customer_key", "p_alive"]}
    html = unescape(_value_section(SimpleNamespace(value=counts_only, run_dir=tmp_path), _Figures()).body)
    assert "The transactions carry no amounts, so there is no spend model and no CLV." in html
