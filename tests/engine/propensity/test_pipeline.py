"""train_propensity and score_propensity on a small world, against the world's truth."""

import dataclasses
import json
import shutil
import subprocess
import sys
from datetime import date

import dask
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from engine.config import PropensityOptions, load_config
from engine.exceptions import InputDataError, UsageError
from engine.features import build_features
from engine.ingest import ingest
from engine.layout import IngestLayout
from engine.propensity import (
    _labels,
    _pipeline,
    SCORE_COLUMNS,
    MonitorLimits,
    calibration_table,
    labelled_features,
    load_model,
    monitor_scores,
    score_propensity,
    split_customers,
    train_propensity,
    training_origins,
)
from engine.propensity._boosted import LeafTables
from engine.propensity._train import _fingerprint, _subset

from .conftest import truth_by_key

OPTIONS = PropensityOptions(n_estimators=100)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    world_dir, config = world
    out = tmp_path_factory.mktemp("propensity") / "model"
    summary = train_propensity(world_dir / "run" / "ingest" / "store", out, as_of=config.run.as_of, options=OPTIONS,
                               seed=config.run.seed, backend_name="cpu")  # fmt: skip
    return summary, out


@pytest.fixture(scope="module")
def scored(world, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "scores"
    summary = score_propensity(trained[1], world[0] / "run" / "features", out)
    return summary, out


def test_the_model_directory_holds_everything_scoring_needs(trained):
    summary, out = trained
    document = json.loads((out / "model.json").read_text())
    tables = ["leaf_tables.pickle"] if document["model"] == "gradient_boosting" else []
    assert sorted(p.name for p in out.iterdir()) == [*tables, "metrics.json", "model.joblib", "model.json",
                                                     "test_scores.parquet"]  # fmt: skip
    assert document["format"] == 1 and document["backend"] == "cpu"
    selection = document["selection"]
    assert set(selection) == {"gradient_boosting", "logistic"} and document["model"] == max(selection, key=selection.get)
    assert document["source"]["window"] == {"features_before": "2025-10-03", "labels_from": "2025-10-03",
                                            "labels_until": "2026-01-01", "horizon_days": 90,
                                            "origins": ["2025-10-03"]}  # fmt: skip
    assert "gender" not in document["inputs"] and "recency_days" in document["inputs"]
    assert {"scikit-learn", "numpy", "python"} <= set(document["versions"]) and len(document["data_fingerprint"]) == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["test"]["calibration"]) == 10 and len(metrics["test"]["lift"]) == 10
    assert metrics["test"]["lift"][0]["lift"] > 2 and metrics["importance"][0]["auc_drop"] > 0
    assert {"gender", "age_band"} <= set(metrics["fairness"])
    assert summary.metrics["roc_auc"] > 0.85 and summary.splits["test"] == summary.metrics["customers"]
    test = pd.read_parquet(out / "test_scores.parquet")
    assert list(test.columns) == ["customer_key", "label", "score"] and len(test) == summary.splits["test"]
    assert roc_auc_score(test["label"], test["score"]) == pytest.approx(summary.metrics["roc_auc"])


def test_scores_every_customer_and_tracks_the_truth(world, scored):
    summary, out = scored
    scores = pq.read_table(out).to_pandas()
    features = pq.read_table(world[0] / "run" / "features", columns=["customer_key"]).to_pandas()
    assert list(scores.columns) == list(SCORE_COLUMNS) and len(scores) == summary.customers == len(features)
    assert sorted(p.name for p in out.glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert abs(summary.bands["high"] / summary.customers - 0.1) < 0.05
    joined = scores.merge(truth_by_key(world[0]), on="customer_key")
    y = joined["purchased_next_90d"].astype(int)
    bayes = roc_auc_score(y, joined["p_purchase_90d"])
    # The truth knows who is still alive, which no history shows: 0.04 at 20k customers, looser here.
    assert roc_auc_score(y, joined["score"]) > bayes - 0.07
    assert calibration_table(y.to_numpy(), joined["score"].to_numpy())[1] < 0.06


def test_the_same_seed_gives_the_same_scores(world, trained, scored, tmp_path):
    score_propensity(trained[1], world[0] / "run" / "features", tmp_path / "again")
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "again").to_pandas(), pq.read_table(scored[1]).to_pandas())


def test_a_worker_loads_the_model_once_until_its_files_change(world, trained, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(trained[1], model)
    loads = []
    monkeypatch.setattr(_pipeline, "load_model", lambda path, **how: loads.append(path) or load_model(path, **how))
    _pipeline._scoring_model.cache_clear()
    with dask.config.set(scheduler="synchronous"):  # one thread, as in a worker
        score_propensity(model, world[0] / "run" / "features", tmp_path / "first")
        assert len(loads) == 1  # two parts, one load
        (model / "model.json").write_text((model / "model.json").read_text() + "\n")  # retrained in place, say
        score_propensity(model, world[0] / "run" / "features", tmp_path / "second")
        assert len(loads) == 2


def test_a_boosted_model_scores_from_its_leaf_tables_without_scikit_learn(world, tmp_path):
    world_dir, config = world
    model, features = tmp_path / "model", world_dir / "run" / "features"
    train_propensity(world_dir / "run" / "ingest" / "store", model, as_of=config.run.as_of, seed=config.run.seed,
                     options=dataclasses.replace(OPTIONS, model="gradient_boosting", n_estimators=30),
                     backend_name="cpu")  # fmt: skip
    assert (model / "leaf_tables.pickle").exists()
    assert isinstance(load_model(model, scoring=True)[0].estimator, LeafTables)
    frame = pq.read_table(features).to_pandas()
    pd.testing.assert_frame_equal(load_model(model, scoring=True)[0].score(frame), load_model(model)[0].score(frame))
    # A scoring process (a worker) imports no scikit-learn, and writes the same scores.
    code = (f"import sys; from engine.propensity import score_propensity; "
            f"score_propensity({str(model)!r}, {str(features)!r}, {str(tmp_path / 'alone')!r}); "
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'sklearn'))")  # fmt: skip
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"
    score_propensity(model, features, tmp_path / "here")
    alone, here = (pq.read_table(tmp_path / name).to_pandas() for name in ("alone", "here"))
    pd.testing.assert_frame_equal(alone, here)


def test_a_feature_table_without_the_models_columns_is_a_clear_error(world, trained, tmp_path):
    features = tmp_path / "features"
    shutil.copytree(world[0] / "run" / "features", features)
    for path in features.glob("*.parquet"):
        pq.write_table(pq.read_table(path).drop_columns(["recency_days"]), path)
    with pytest.raises(InputDataError, match="missing feature columns the model needs: recency_days"):
        score_propensity(trained[1], features, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputDataError, match="not a segscale propensity model"):
        load_model(tmp_path)


def test_earlier_origins_add_training_rows_and_keep_the_latest_test_customers(world, trained, tmp_path):
    world_dir, config = world
    store = world_dir / "run" / "ingest" / "store"
    options = dataclasses.replace(OPTIONS, n_estimators=20, origins=3)
    summary = train_propensity(store, tmp_path / "m", as_of=config.run.as_of, options=options, seed=config.run.seed,
                               backend_name="cpu")  # fmt: skip
    document = json.loads((tmp_path / "m" / "model.json").read_text())
    assert document["source"]["window"]["origins"] == ["2025-10-03", "2025-07-05", "2025-04-06"]
    # Customers acquired after an earlier origin have no row at it: between 1x and 3x the rows.
    assert 1.5 * document["splits"]["train"] < document["train_rows"] < 3 * document["splits"]["train"]
    assert summary.splits == trained[0].splits
    one, three = (pd.read_parquet(d / "test_scores.parquet") for d in (trained[1], tmp_path / "m"))
    assert sorted(three["customer_key"]) == sorted(one["customer_key"])
    assert (three.sort_values("customer_key")["label"].to_numpy() == one.sort_values("customer_key")["label"].to_numpy()).all()
    with pytest.raises(InputDataError, match="the training origin 2023-07-16 is not after the first transaction"):
        train_propensity(store, tmp_path / "m2", as_of=config.run.as_of, options=dataclasses.replace(options, origins=10),
                         backend_name="cpu")  # fmt: skip
    assert not (tmp_path / "m2").exists()


def test_the_sample_drawn_while_reading_is_the_sample_of_every_row(world, tmp_path, monkeypatch):
    """The client reads only the sampled customers' features and sensitive columns, and
    trains on exactly the rows fit_and_evaluate would have drawn from every origin's every row."""
    world_dir, config = world
    store = world_dir / "run" / "ingest" / "store"
    options = dataclasses.replace(OPTIONS, n_estimators=10, origins=2, sample=1_500)
    read, sensitive = [], []
    sampled_part, sensitive_rows = _labels._sampled_part, _pipeline._sensitive
    monkeypatch.setattr(_labels, "_sampled_part", lambda *args: read.append(sampled_part(*args)) or read[-1])
    monkeypatch.setattr(_pipeline, "_sensitive", lambda *args: sensitive.append(sensitive_rows(*args)) or sensitive[-1])
    train_propensity(store, tmp_path / "m", as_of=config.run.as_of, options=options, seed=config.run.seed,
                     backend_name="cpu")  # fmt: skip
    document = json.loads((tmp_path / "m" / "model.json").read_text())
    rows_read = sum(table.num_rows for table, _ in read)
    frames = []
    for origin in training_origins(config.run.as_of, 90, origins=2):
        frame, meta = labelled_features(store, tmp_path / f"f{origin}", origin, options=OPTIONS, backend_name="cpu")
        frames.append(frame.assign(origin=origin))
    every = pd.concat(frames, ignore_index=True)
    drawn = _subset(every, 1_500, config.run.seed)
    inputs = [name for name in meta["features"] if name != "label"]
    assert len(every) > 2 * len(drawn) and rows_read == len(drawn)
    assert document["data_fingerprint"] == _fingerprint(drawn[["customer_key", "origin", *inputs, "label"]])
    profiled = pq.read_table(IngestLayout(store.parent).sensitive.table("customers")).column("customer_key")
    expected = set(drawn["customer_key"]) & set(profiled.to_pylist())
    assert len(profiled) > 2 * len(expected) > 0 and set(sensitive[0]["customer_key"]) == expected


def test_an_out_of_time_test_learns_from_earlier_windows_only(world, trained, tmp_path):
    world_dir, config = world
    store = world_dir / "run" / "ingest" / "store"
    options = dataclasses.replace(OPTIONS, n_estimators=20, origins=2, out_of_time_test=True)
    train_propensity(store, tmp_path / "m", as_of=config.run.as_of, options=options, seed=config.run.seed,
                     backend_name="cpu")  # fmt: skip
    document = json.loads((tmp_path / "m" / "model.json").read_text())
    earlier, _ = labelled_features(store, tmp_path / "f", date(2025, 7, 5), options=OPTIONS, backend_name="cpu")
    split = split_customers(earlier["customer_key"], seed=config.run.seed, validation_share=0.2, test_share=0.2)
    assert document["out_of_time_test"] and document["train_rows"] == (split == "train").sum()
    one, later = (pd.read_parquet(d / "test_scores.parquet") for d in (trained[1], tmp_path / "m"))
    assert sorted(later["customer_key"]) == sorted(one["customer_key"])
    with pytest.raises(UsageError, match="an out-of-time test needs at least 2 origins"):
        train_propensity(store, tmp_path / "m1", as_of=config.run.as_of,
                         options=dataclasses.replace(options, origins=1), backend_name="cpu")  # fmt: skip


def test_impossible_options_are_refused_before_any_feature_is_built(world, tmp_path, monkeypatch):
    world_dir, config = world

    def no_features(*args, **kwargs):
        raise AssertionError("features were built")

    monkeypatch.setattr("engine.propensity._labels.build_features", no_features)
    for options, message in [
        (dataclasses.replace(OPTIONS, origins=1, out_of_time_test=True), "out-of-time test needs at least 2 origins"),
        (dataclasses.replace(OPTIONS, target="response", campaign=None), "target response needs campaign"),
        (dataclasses.replace(OPTIONS, target="event", event_type=None), "target event needs event_type"),
    ]:
        with pytest.raises(UsageError, match=message):
            train_propensity(world_dir / "run" / "ingest" / "store", tmp_path / "m", as_of=config.run.as_of,
                             options=options, backend_name="cpu")  # fmt: skip


def test_thin_data_refuses_to_train_and_writes_nothing(world, tmp_path):
    world_dir, config = world
    options = PropensityOptions(n_estimators=10, min_class_count=100_000)
    with pytest.raises(InputDataError, match="too little data to train on"):
        train_propensity(world_dir / "run" / "ingest" / "store", tmp_path / "m", as_of=config.run.as_of,
                         options=options, backend_name="cpu")  # fmt: skip
    assert not (tmp_path / "m").exists()


def test_monitoring_a_scoring_once_its_outcomes_are_in(world, trained, scored, tmp_path):
    world_dir, config = world
    store = world_dir / "run" / "ingest" / "store"
    with pytest.raises(InputDataError, match="cannot label 2026-01-01"):
        monitor_scores(scored[1], store)  # scored as of the store's end: nothing to compare yet
    build_features(store, tmp_path / "features", as_of=date(2025, 10, 3), backend_name="cpu")
    score_propensity(trained[1], tmp_path / "features", tmp_path / "scores")
    # The window scored is the training window: 60% of these 2.6k customers are ones the
    # boosted model learned from, so its calibration reads worse than out of sample (ECE 0.050).
    report = monitor_scores(tmp_path / "scores", store, limits=MonitorLimits(max_ece=0.08))
    assert report["window"] == {"from": "2025-10-03", "days": 90, "target": "purchase"}
    assert report["realised"]["roc_auc"] > 0.85 and not report["retrain"] and report["reasons"] == []
    # A scoring that ranks customers at random is flagged, with the reasons.
    for path in (tmp_path / "scores").glob("*.parquet"):
        frame = pq.read_table(path).to_pandas()
        frame["score"] = frame["score"].sample(frac=1, random_state=0).to_numpy()
        frame.to_parquet(path, index=False)
    report = monitor_scores(tmp_path / "scores", store, limits=MonitorLimits(max_auc_drop=0.05))
    assert report["retrain"] and report["reasons"][0].startswith("AUC 0.")


@pytest.fixture(scope="module")
def campaign_store(world):
    """The world ingested again with an outcomes table: half the accounts treated in "spring"
    (converting more often the likelier the person is to buy), a few in "winter"."""
    world_dir, _ = world
    accounts = pq.read_table(world_dir / "truth" / "accounts", columns=["customer_id", "person_id"]).to_pandas()
    persons = pq.read_table(world_dir / "truth" / "persons", columns=["person_id", "p_purchase_90d"]).to_pandas()
    accounts = accounts.merge(persons, on="person_id")
    rng = np.random.default_rng(0)
    treated = rng.random(len(accounts)) < 0.5
    converted = rng.random(len(accounts)) < 0.05 + 0.6 * accounts["p_purchase_90d"].to_numpy()
    yes_no = np.array(["no", "yes"])
    outcomes = pd.DataFrame({"customer_id": accounts["customer_id"], "campaign": "spring",
                             "treated": yes_no[treated.astype(int)], "converted": yes_no[(treated & converted).astype(int)]})  # fmt: skip
    winter = outcomes.head(50).assign(campaign="winter")
    pd.concat([outcomes, winter]).to_csv(world_dir / "outcomes.csv", index=False)
    text = (world_dir / "segscale.toml").read_text().replace('output_dir = "run"', 'output_dir = "campaign-run"')
    text += '\n[inputs.outcomes]\npath = "outcomes.csv"\nformat = "csv"\n'
    (world_dir / "campaign.toml").write_text(text)
    config = load_config(world_dir / "campaign.toml")
    ingest(dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, partitions=2)))
    return world_dir / "campaign-run" / "ingest" / "store", config, int(treated.sum())


def test_a_response_model_learns_who_converts_among_the_treated(campaign_store, tmp_path):
    store, config, treated_accounts = campaign_store
    options = dataclasses.replace(OPTIONS, target="response", campaign="spring", n_estimators=50)
    summary = train_propensity(store, tmp_path / "m", as_of=config.run.as_of, options=options, backend_name="cpu")
    rows = sum(summary.splits.values())
    # Treated accounts, fewer where identity resolution merged several into one customer.
    assert 0.8 * treated_accounts < rows <= treated_accounts
    assert summary.metrics["roc_auc"] > 0.7 and 0.1 < summary.metrics["base_rate"] < 0.6
    for campaign, error, message in [
        ("autumn", InputDataError, r"no campaign 'autumn' \(it has: spring, winter\)"),
        (None, UsageError, "target response needs campaign"),
    ]:
        with pytest.raises(error, match=message):
            train_propensity(store, tmp_path / "x", as_of=config.run.as_of,
                             options=dataclasses.replace(options, campaign=campaign), backend_name="cpu")  # fmt: skip
    with pytest.raises(UsageError, match="origins apply to purchase, churn and event"):
        train_propensity(store, tmp_path / "x", as_of=config.run.as_of,
                         options=dataclasses.replace(options, origins=2), backend_name="cpu")  # fmt: skip


def test_a_response_target_needs_an_outcomes_table(world, tmp_path):
    world_dir, config = world
    options = dataclasses.replace(OPTIONS, target="response", campaign="spring")
    with pytest.raises(InputDataError, match="the store has no outcomes table"):
        train_propensity(world_dir / "run" / "ingest" / "store", tmp_path / "m", as_of=config.run.as_of,
                         options=options, backend_name="cpu")  # fmt: skip


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["auto", "random_forest", "gradient_boosting", "logistic"])
def test_each_model_on_the_gpu_scores_as_well_as_on_the_cpu(world, tmp_path, model):
    """cuML's forest, XGBoost's boosting and the logistic baseline, trained where the GPU is,
    against the same model on the CPU: the same split, test AUC within 0.01, everyone scored."""
    world_dir, config = world
    store, features = world_dir / "run" / "ingest" / "store", world_dir / "run" / "features"
    options = dataclasses.replace(OPTIONS, model=model)
    trained = {
        backend_name: train_propensity(store, tmp_path / backend_name, as_of=config.run.as_of, options=options,
                                       seed=config.run.seed, backend_name=backend_name)
        for backend_name in ("cpu", "gpu")
    }  # fmt: skip
    assert trained["gpu"].splits == trained["cpu"].splits
    assert abs(trained["gpu"].metrics["roc_auc"] - trained["cpu"].metrics["roc_auc"]) < 0.01
    scored = score_propensity(tmp_path / "gpu", features, tmp_path / "scores")
    assert scored.customers == sum(pq.read_metadata(part).num_rows for part in features.glob("part-*.parquet"))
