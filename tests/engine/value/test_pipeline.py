"""Summaries from purchase lines, and estimate_value on the store of a small synthetic world."""

import dataclasses
import json
from datetime import date

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.exceptions import InputDataError, UsageError
from engine.layout import ValueLayout
from engine.value import estimate_value, expected_repeat_purchases, fit_purchase_model, purchase_days, summarise
from engine.value._choice import choose_model

DAY_US = 86_400 * 1_000_000


def _lines(rows):
    frame = pd.DataFrame(rows, columns=["customer_key", "day", "hour", "amount", "is_return", "order_id"])
    frame["ts"] = ((frame["day"] * 24 + frame["hour"]) * 3_600 * 1_000_000).astype("int64")
    return frame


LINES = _lines(
    [
        ("a", 100, 9, 10.0, False, "o1"),
        ("a", 100, 18, 5.0, False, "o2"),  # a second order on the first day
        ("a", 104, 10, 20.0, False, "o3"),
        ("a", 104, 12, 8.0, True, "o3"),  # a return: never a purchase
        ("a", 110, 10, 30.0, False, "o4"),
        ("a", 121, 8, 7.0, False, "o5"),  # in the holdout
        ("b", 105, 11, 12.0, False, "o6"),
        ("b", 107, 11, -3.0, False, "o7"),  # a day that nets out negative is no purchase
        ("b", 109, 11, 0.0, False, "o9"),  # a free one is: a transaction worth 0
        ("c", 122, 11, 9.0, False, "o8"),  # first bought after as-of: not summarised
    ]
)


def test_day_summaries_follow_the_btyd_conventions():
    # T runs to the last calibration day (119), where a purchase that day would sit.
    summary = summarise(purchase_days(LINES), as_of_day=120, horizon_days=10).set_index("customer_key")
    assert list(summary.index) == ["a", "b"]
    a, b = summary.loc["a"], summary.loc["b"]
    assert (a.frequency, a.recency, a["T"], a.monetary) == (2, 10, 19, 25.0)
    assert (b.frequency, b.recency, b["T"], b.monetary) == (1, 4, 14, 0.0)
    assert (a.holdout_purchases, a.holdout_spend, a.holdout_wait) == (1, 7.0, 2.0)
    assert b.holdout_purchases == 0 and np.isnan(b.holdout_wait)
    # To the as-of midnight: a day more, and a holdout purchase at the middle of its day.
    to_as_of = summarise(purchase_days(LINES), as_of_day=120, horizon_days=10, calibration_end="as_of")
    a = to_as_of.set_index("customer_key").loc["a"]
    assert (a.recency, a["T"], a.holdout_wait) == (10, 20, 1.5)


def test_order_summaries_keep_each_order_at_its_own_time():
    summary = summarise(purchase_days(LINES, "order"), as_of_day=120, horizon_days=10, grain="order")
    a = summary.set_index("customer_key").loc["a"]
    assert a.frequency == 3 and a.monetary == pytest.approx((5 + 20 + 30) / 3)
    assert a.recency == pytest.approx(10 + 1 / 24) and a["T"] == pytest.approx(20 - 9 / 24)
    assert a.holdout_wait == pytest.approx(1 + 8 / 24)


@pytest.fixture(scope="module")
def valued(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("value") / "value"
    summary = estimate_value(
        store,
        out,
        as_of=date(2025, 10, 2),
        horizon_days=90,
        model="mbgnbd",
        min_repeat_customers=50,
        backend_name="cpu",
    )
    return summary, out


def test_every_customer_is_scored_and_written(valued):
    summary, out = valued
    values = pq.read_table(ValueLayout(out).customers).to_pandas()
    assert sorted(p.name for p in ValueLayout(out).customers.glob("*.parquet")) == [
        f"part-0000{i}.parquet" for i in range(3)
    ]
    assert len(values) == summary.customers and values["customer_key"].is_unique
    assert values["p_alive"].between(0, 1).all() and values["p_purchase"].between(0, 1).all()
    assert (values["expected_purchases"] >= 0).all() and (values["expected_spend"] > 0).all()
    # Discounting only ever lowers the value of the expected purchases.
    assert (values["clv"] <= values["expected_purchases"] * values["expected_spend"] + 1e-9).all()
    dates = pd.to_datetime(values["next_purchase_date"])
    assert (dates >= pd.Timestamp("2025-10-02")).all()


def test_value_json_reports_fits_and_the_holdout(valued, store):
    summary, out = valued
    document = json.loads(ValueLayout(out).summary.read_text())
    assert document["purchase_model"]["converged"] and document["spend_model"]["converged"]
    assert document["purchase_model"]["name"] == "mbgnbd" and set(document["purchase_model"]["params"]) == {
        "r", "alpha", "a", "b",
    }  # fmt: skip
    # A world that follows the model: nothing degenerate, and customers do drop out.
    assert document["purchase_model"]["degenerate"] == document["spend_model"]["degenerate"] == []
    assert 0 <= document["purchase_model"]["share_almost_surely_alive"] < 0.95
    holdout = document["holdout"]
    assert holdout["customers"] == summary.customers
    # The world follows the model for most customers: totals come out within a fifth.
    assert holdout["purchases"]["predicted"] == pytest.approx(holdout["purchases"]["actual"], rel=0.2)
    assert holdout["buyers"]["predicted"] == pytest.approx(holdout["buyers"]["actual"], rel=0.2)
    inside = holdout["next_purchase_inside_interval"]
    assert 0.35 < inside["50%"] < 0.65 and 0.65 < inside["80%"] < 0.92
    # Holdout purchases are the store's own orders in the window, counted by day.
    lines = pq.read_table(store / "transactions", columns=["customer_key", "ts", "amount", "is_return"]).to_pandas()
    lines["ts"] = lines["ts"].dt.tz_convert(None).astype("datetime64[us]").astype("int64")
    days = purchase_days(lines)
    start = (date(2025, 10, 2) - date(1970, 1, 1)).days
    known = set(pq.read_table(ValueLayout(out).customers, columns=["customer_key"]).column(0).to_pylist())
    window = days[(days["day"] >= start) & (days["day"] < start + 90) & days["customer_key"].isin(known)]
    assert holdout["purchases"]["actual"] == len(window)
    # The naive forecast: each customer buying on at their calibration rate for the 90 days.
    values = pq.read_table(ValueLayout(out).customers, columns=["customer_key", "frequency", "T"]).to_pandas()
    naive = values["frequency"] / values["T"].where(values["T"] > 0) * 90
    assert holdout["naive"]["predicted"] == pytest.approx(naive.fillna(0).sum())
    actual = window.groupby("customer_key").size().reindex(values["customer_key"], fill_value=0).to_numpy()
    assert holdout["naive"]["mae"] == pytest.approx(np.abs(naive.fillna(0).to_numpy() - actual).mean())
    # On a world that follows the model, the model beats it.
    assert holdout["naive"]["model_mae_ratio"] == pytest.approx(holdout["purchases"]["mae"] / holdout["naive"]["mae"])
    assert holdout["naive"]["model_mae_ratio"] < 1
    # By calibration repeat purchases: every customer once, the totals the same.
    rows = holdout["by_calibration_purchases"]
    assert [row["repeat_purchases"] for row in rows][:2] == ["0", "1"] and rows[-1]["repeat_purchases"] == "7+"
    assert sum(row["customers"] for row in rows) == holdout["customers"]
    for key, total in (("actual", holdout["purchases"]["actual"]), ("predicted", holdout["purchases"]["predicted"]),
                       ("naive", holdout["naive"]["predicted"])):  # fmt: skip
        assert sum(row[f"{key}_mean"] * row["customers"] for row in rows) == pytest.approx(total)
    assert rows[0]["naive_mean"] == 0  # no repeat purchase, no calibration rate
    # The tracking weeks add up to the summaries: repeat purchases before as-of are the
    # customers' frequencies, those after it the holdout's, and the model's expected total at
    # as-of is the sum of each customer's E[X(T)].
    tracking = document["tracking"]
    weeks = np.asarray(tracking["week_start_days"])
    assert weeks[0] < 0 and 0 in weeks and (np.diff(weeks) == 7).all() and weeks[-1] < 90
    summaries = pq.read_table(ValueLayout(out).customers, columns=["frequency", "T"]).to_pandas()
    actual, expected = np.asarray(tracking["actual"]), np.asarray(tracking["expected"])
    assert actual[weeks < 0].sum() == summaries["frequency"].sum()
    assert actual[weeks >= 0].sum() == holdout["purchases"]["actual"]
    # The fit is reported in weeks (the default time unit); the summaries are in days.
    assert document["time_unit"] == "weeks" and document["calibration_end"] == "last_day"
    params = {**document["purchase_model"]["params"], "alpha": document["purchase_model"]["params"]["alpha"] * 7}
    by_hand = expected_repeat_purchases(params, summaries["T"].to_numpy(), "mbgnbd").sum()
    assert expected[weeks < 0].sum() == pytest.approx(by_hand, rel=1e-9)


def test_the_models_fit_a_bounded_sample_and_score_everyone(valued, store, tmp_path):
    full, _ = valued
    summary = estimate_value(store, tmp_path / "v", as_of=date(2025, 10, 2), horizon_days=90, model="mbgnbd",
                             min_repeat_customers=50, sample=1_500, backend_name="cpu")  # fmt: skip
    purchase, everyone = summary.document["purchase_model"], full.document["purchase_model"]
    assert everyone["customers"] == full.customers > 2_500
    # 500 of each of the 3 partitions' ~900 customers
    assert purchase["customers"] == 1_500 and summary.document["spend_model"]["customers"] <= 1_500
    assert summary.customers == full.customers  # every customer is still scored
    for name, value in purchase["params"].items():  # half the customers, the same model
        assert abs(value - everyone["params"][name]) < 4 * purchase["standard_errors"][name], name


def test_a_degenerate_fit_is_said_on_stderr_and_in_value_json(store, tmp_path, monkeypatch, caplog):
    import engine.value._pipeline as pipeline

    def no_dropout(*args, **kwargs):
        fit = fit_purchase_model(*args, **kwargs)
        # Online Retail's fit: dropout pushed out of reach, P(alive) about 1 for everyone.
        params = {**fit.params, "a": 1e-9, "b": 924.0}
        return dataclasses.replace(fit, params=params, standard_errors={**fit.standard_errors, "b": 7132.0})

    monkeypatch.setattr(pipeline, "fit_purchase_model", no_dropout)
    # Straight to the stage's logger: the CLI's logging set-up, if an earlier test ran it,
    # stops records before they reach the root logger.
    pipeline.logger.addHandler(caplog.handler)
    monkeypatch.setattr(pipeline.logger, "level", 0)
    summary = estimate_value(store, tmp_path / "v", as_of=date(2025, 10, 2), horizon_days=90, model="bgnbd",
                             min_repeat_customers=50, backend_name="cpu")  # fmt: skip
    degenerate = summary.document["purchase_model"]["degenerate"]
    assert "b = 924 has a standard error of 7,132, 8x the estimate" in degenerate
    assert any("P(alive) is above 0.99 for" in reason for reason in degenerate)
    assert summary.document["purchase_model"]["share_almost_surely_alive"] > 0.95
    assert summary.document["spend_model"]["degenerate"] == []
    pipeline.logger.removeHandler(caplog.handler)
    assert any("purchase model's fit is degenerate" in record.getMessage() for record in caplog.records)


def test_without_the_days_after_as_of_there_is_no_holdout(store, tmp_path):
    summary = estimate_value(store, tmp_path / "v", horizon_days=30, min_repeat_customers=50, backend_name="cpu")
    assert summary.as_of == "2026-01-01" and summary.document["holdout"] is None


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"horizon_days": 0}, UsageError, "at least 1 day"),
        ({"model": "pareto"}, UsageError, "unknown purchase model"),
        ({"grain": "week"}, UsageError, "unknown purchase grain"),
        ({"min_repeat_customers": 10**7}, InputDataError, "needed to estimate"),
        ({"as_of": date(2024, 1, 2)}, InputDataError, "cannot fit BG/NBD"),
    ],
)
def test_refusals_leave_no_output(store, tmp_path, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        estimate_value(store, tmp_path / "v", backend_name="cpu", **kwargs)
    assert not (tmp_path / "v").exists()


def test_not_a_store(tmp_path):
    with pytest.raises(InputDataError, match="not a segscale store"):
        estimate_value(tmp_path, tmp_path / "v", backend_name="cpu")


@pytest.mark.gpu
def test_the_gpu_fits_and_scores_what_the_cpu_does(store, valued, tmp_path):
    summary, out = valued
    gpu = estimate_value(store, tmp_path / "gpu", as_of=date(2025, 10, 2), horizon_days=90, model="mbgnbd",
                         min_repeat_customers=50, backend_name="gpu")  # fmt: skip
    for fit in ("purchase_model", "spend_model"):
        for name, value in summary.document[fit]["params"].items():
            assert gpu.document[fit]["params"][name] == pytest.approx(value, rel=1e-6), (fit, name)
    cpu_values = pq.read_table(ValueLayout(out).customers).to_pandas().sort_values("customer_key", ignore_index=True)
    gpu_values = pq.read_table(ValueLayout(tmp_path / "gpu").customers).to_pandas().sort_values("customer_key",
                                                                                                 ignore_index=True)
    numeric = [c for c in cpu_values.columns if c not in ("customer_key", "next_purchase_date")]
    pd.testing.assert_frame_equal(gpu_values[numeric], cpu_values[numeric], check_exact=False, rtol=1e-6)


def test_auto_chooses_the_purchase_model_on_the_days_before_as_of(store, valued, tmp_path):
    chosen = estimate_value(store, tmp_path / "auto", as_of=date(2025, 10, 2), horizon_days=90, min_repeat_customers=50,
                            backend_name="cpu")  # fmt: skip
    choice = chosen.document["model_choice"]
    assert choice["window_days"] == 90 and set(choice["scores"]) == {"bgnbd", "mbgnbd", "pareto_nbd"}
    best = min(choice["scores"], key=lambda model: choice["scores"][model]["mae"])
    assert choice["chosen"] == best == chosen.document["purchase_model"]["name"]
    assert choice["every_model_loses"] == (choice["scores"][best]["mae"] > choice["naive_mae"])
    assert all(score["mae_vs_naive"] == pytest.approx(score["mae"] / choice["naive_mae"]) for score in choice["scores"].values())
    # The window lies before as-of: a longer horizon reads more of the store after as-of and
    # leaves the choice as it was.
    longer = estimate_value(store, tmp_path / "longer", as_of=date(2025, 10, 2), horizon_days=120,
                            min_repeat_customers=50, backend_name="cpu")  # fmt: skip
    assert longer.document["model_choice"] == choice
    # A model named in the config is used as it is.
    assert valued[0].document["model_choice"] is None and valued[0].document["purchase_model"]["name"] == "mbgnbd"


def test_the_choice_window_leaves_most_of_the_history_to_calibrate_on():
    from engine.value._choice import choice_window

    assert choice_window(365, 700) == 90 and choice_window(30, 700) == 30 and choice_window(365, 120) == 40
    assert choice_window(90, 2) == 0


def test_when_every_model_loses_the_naive_forecast_makes_the_predictions(store, tmp_path, monkeypatch):
    import engine.value._pipeline as pipeline

    def lost(*args, **kwargs):
        choice, starts = choose_model(*args, **kwargs)
        return {**choice, "forecast": "naive", "every_model_loses": True}, starts

    monkeypatch.setattr(pipeline, "choose_model", lost)
    summary = estimate_value(store, tmp_path / "v", as_of=date(2025, 10, 2), horizon_days=90, min_repeat_customers=50,
                             backend_name="cpu")  # fmt: skip
    document = summary.document
    assert document["forecast"] == "naive" and document["purchase_model"]["name"] == document["model_choice"]["chosen"]
    values = pq.read_table(ValueLayout(tmp_path / "v").customers).to_pandas()
    rate = (values["frequency"] / values["T"].where(values["T"] > 0)).fillna(0.0)
    assert values["expected_purchases"].to_numpy() == pytest.approx((rate * 90).to_numpy())
    assert values["p_purchase"].to_numpy() == pytest.approx(-np.expm1(-rate * 90).to_numpy())
    assert values["p_alive"].isna().all()  # the naive forecast has no dropout
    # No repeat purchase, no rate: no next purchase date.
    assert values.loc[rate == 0, "next_purchase_date"].isna().all() and values.loc[rate > 0, "next_purchase_date"].notna().all()
    assert document["holdout"]["naive"]["model_mae_ratio"] == pytest.approx(1.0)
