"""rescore_value: every customer scored at a new as-of with the saved value models."""

import json
import shutil
from datetime import date
from functools import partial

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.exceptions import InputDataError
from engine.features import build_features
from engine.layout import ValueLayout, part_name
from engine.value import _rescore as rescore
from engine.value import estimate_value, rescore_value, summaries_writer
from engine.value._summaries import partition_summaries, write_summaries
from engine.value._choice import choose_model

FITTED_AS_OF, LATER = date(2025, 10, 2), date(2025, 11, 15)


@pytest.fixture(scope="module")
def valued(store, tmp_path_factory):
    """Pareto/NBD (two time parameters) fitted as of FITTED_AS_OF, with a 60-day holdout."""
    out = tmp_path_factory.mktemp("value") / "value"
    estimate_value(store, out, as_of=FITTED_AS_OF, horizon_days=60, model="pareto_nbd", min_repeat_customers=50,
                   backend_name="cpu")  # fmt: skip
    return out


def _parts(out):
    return {path.name: pq.read_table(path).to_pandas() for path in sorted(ValueLayout(out).customers.iterdir())}


def _document(out):
    return json.loads(ValueLayout(out).summary.read_text())


def _assert_same_scores(out, fitted):
    parts, expected = _parts(out), _parts(fitted)
    assert list(parts) == list(expected)
    for name, frame in parts.items():
        pd.testing.assert_frame_equal(frame, expected[name], check_exact=True)


def _assert_same_fits(document, fitted):
    for key in ("model_choice", "purchase_model", "spend_model", "tracking", "forecast", "time_unit", "columns",
                "horizon_days", "discount_rate_yearly", "purchase_grain", "calibration_end"):  # fmt: skip
        assert document[key] == fitted[key], key


@pytest.mark.parametrize("in_place", [False, True], ids=["elsewhere", "in-place"])
def test_at_the_fitted_as_of_the_scores_are_the_fits_own(store, valued, tmp_path, in_place):
    fitted = _document(valued)
    out = tmp_path / "value" if in_place else tmp_path / "rescored"
    if in_place:  # a copy, so that the module's output stays as it was
        shutil.copytree(valued, out)
    summary = rescore_value(store, out if in_place else valued, out, as_of=FITTED_AS_OF, backend_name="cpu")
    _assert_same_scores(out, valued)
    document = _document(out)
    assert summary.to_dict() == document | {"out_dir": str(out)}
    _assert_same_fits(document, fitted)
    # The store holds the 60 days after as-of: the holdout is measured again, on the same scores.
    assert document["holdout"] == fitted["holdout"] and document["holdout"] is not None
    assert (document["as_of"], document["customers"], document["partitions"]) == (
        fitted["as_of"], fitted["customers"], fitted["partitions"],
    )  # fmt: skip
    assert document["refit"] is False and document["model_fitted_as_of"] == FITTED_AS_OF.isoformat()
    assert summary.customers == fitted["customers"] and summary.as_of == FITTED_AS_OF.isoformat()
    assert not list(tmp_path.glob(".*-staging-*"))


def test_a_later_as_of_keeps_the_models_and_moves_the_scores(store, valued, tmp_path):
    fitted = _document(valued)
    rescore_value(store, valued, tmp_path / "later", as_of=LATER, backend_name="cpu")
    document = _document(tmp_path / "later")
    _assert_same_fits(document, fitted)
    assert document["as_of"] == LATER.isoformat() and document["model_fitted_as_of"] == FITTED_AS_OF.isoformat()
    assert document["customers"] >= fitted["customers"]
    # The store's data end before LATER + 60 days: no holdout, as estimate_value would find.
    assert document["holdout"] is None
    before = pq.read_table(ValueLayout(valued).customers).to_pandas().set_index("customer_key")
    after = pq.read_table(ValueLayout(tmp_path / "later").customers).to_pandas().set_index("customer_key")
    assert len(after) == document["customers"] and set(before.index) <= set(after.index)
    assert list(after.columns) == list(before.columns)
    common = after.loc[before.index]
    # Six weeks more: every T grows by as much, so P(alive) and CLV move for most customers.
    assert (common["T"] - before["T"] == (LATER - FITTED_AS_OF).days).all()
    for column in ("p_alive", "clv"):
        assert (common[column] != before[column]).mean() > 0.5, column
    # A rescore of the rescore: the models are still the first fit's, fitted at its as-of.
    rescore_value(store, tmp_path / "later", tmp_path / "later", as_of=LATER, backend_name="cpu")
    again = _document(tmp_path / "later")
    _assert_same_fits(again, fitted)
    assert again["model_fitted_as_of"] == FITTED_AS_OF.isoformat()
    pd.testing.assert_frame_equal(
        pq.read_table(ValueLayout(tmp_path / "later").customers).to_pandas().set_index("customer_key"), after,
        check_exact=True,
    )  # fmt: skip


@pytest.mark.parametrize("grain", ["day", "order"])
def test_summaries_from_the_feature_stages_read_are_the_stores_own(store, tmp_path, grain):
    as_of_day = (LATER - date(1970, 1, 1)).days
    writer = partial(write_summaries, str(tmp_path), as_of_day, grain, "last_day")
    build_features(store, tmp_path / "features", as_of=LATER, backend_name="cpu", transactions_to=writer)
    for number in range(3):
        expected, _, _ = partition_summaries(str(store), number, as_of_day, None, grain, 0, "last_day")
        made = pq.read_table(tmp_path / part_name(number)).to_pandas()
        assert len(made) > 100
        pd.testing.assert_frame_equal(made, expected, check_exact=True)


def test_a_rescore_from_the_summaries_the_features_made_reads_no_transactions(store, valued, tmp_path, monkeypatch):
    made = tmp_path / "summaries"
    build_features(store, tmp_path / "features", as_of=LATER, backend_name="cpu",
                   transactions_to=summaries_writer(valued, made, LATER))  # fmt: skip
    rescore_value(store, valued, tmp_path / "read", as_of=LATER, backend_name="cpu")

    def no_read(*args, **kwargs):
        raise AssertionError("the store's transactions were read")

    monkeypatch.setattr(rescore, "partition_summaries", no_read)
    rescore_value(store, valued, tmp_path / "made", as_of=LATER, backend_name="cpu", summaries=made)
    _assert_same_scores(tmp_path / "made", tmp_path / "read")
    # A partition's summaries missing: the store is read (and here, refused).
    (made / part_name(1)).unlink()
    with pytest.raises(AssertionError, match="transactions were read"):
        rescore_value(store, valued, tmp_path / "again", as_of=LATER, backend_name="cpu", summaries=made)


def test_the_naive_forecast_stays_naive(store, tmp_path, monkeypatch):
    import engine.value._pipeline as pipeline

    def lost(*args, **kwargs):
        choice, starts = choose_model(*args, **kwargs)
        return {**choice, "forecast": "naive", "every_model_loses": True}, starts

    monkeypatch.setattr(pipeline, "choose_model", lost)
    estimate_value(store, tmp_path / "naive", as_of=FITTED_AS_OF, horizon_days=60, min_repeat_customers=50,
                   backend_name="cpu")  # fmt: skip
    monkeypatch.undo()  # the rescore chooses nothing: it reads the forecast from value.json
    rescore_value(store, tmp_path / "naive", tmp_path / "same", as_of=FITTED_AS_OF, backend_name="cpu")
    _assert_same_scores(tmp_path / "same", tmp_path / "naive")
    assert _document(tmp_path / "same")["holdout"] == _document(tmp_path / "naive")["holdout"]
    rescore_value(store, tmp_path / "naive", tmp_path / "later", as_of=LATER, backend_name="cpu")
    values = pq.read_table(ValueLayout(tmp_path / "later").customers).to_pandas()
    assert _document(tmp_path / "later")["forecast"] == "naive" and values["p_alive"].isna().all()
    rate = (values["frequency"] / values["T"].where(values["T"] > 0)).fillna(0.0)
    assert values["expected_purchases"].to_numpy() == pytest.approx((rate * 60).to_numpy())


def test_not_a_value_output(store, tmp_path):
    with pytest.raises(InputDataError, match="not a segscale value output"):
        rescore_value(store, tmp_path, tmp_path / "out", as_of=LATER, backend_name="cpu")
    assert not (tmp_path / "out").exists()
