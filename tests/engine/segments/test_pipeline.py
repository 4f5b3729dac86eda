"""build_segments on the features of a small synthetic world."""

import dataclasses
import json
import shutil
from datetime import date

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.config import SegmentOptions, load_config
from engine.exceptions import InputDataError, UsageError
from engine.features import build_features
from engine.ingest import ingest
from engine.segments import build_segments
from engine.segments._backtest import MEASURES
from engine.segments._baseline import UNSCORED_CELL
from engine.synth import WorldSpec, generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, WorldSpec(customers=3_000, seed=8, chunk_size=1_000))
    config = load_config(out / "segscale.toml")
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, partitions=3))
    ingest(config)
    build_features(
        out / "run" / "ingest" / "store", out / "run" / "features", as_of=config.run.as_of, backend_name="cpu"
    )
    return out


@pytest.fixture(scope="module")
def segmented(world):
    summary = build_segments(
        world / "run" / "features", world / "run" / "segments", options=SegmentOptions(sample=3000), backend_name="cpu"
    )
    return summary, world / "run" / "segments"


def _assignments(out):
    return pq.read_table(out / "assignments").to_pandas().sort_values("customer_key").reset_index(drop=True)


def test_every_customer_gets_one_named_segment(segmented, world):
    summary, out = segmented
    assignments = _assignments(out)
    features = pq.read_table(world / "run" / "features", columns=["customer_key"]).to_pandas()
    assert sorted(assignments["customer_key"]) == sorted(features["customer_key"])
    assert assignments["segment"].between(0, summary.k - 1).all() and (assignments["distance"] >= 0).all()
    names = {s["segment"]: s["name"] for s in summary.segments}
    assert len(set(names.values())) == summary.k
    assert (assignments["segment_name"] == assignments["segment"].map(names)).all()
    assert sorted(p.name for p in (out / "assignments").glob("*.parquet")) == [
        f"part-0000{i}.parquet" for i in range(3)
    ]


def test_profiles_and_model_are_written(segmented):
    summary, out = segmented
    profile = pq.read_table(out / "profiles.parquet").to_pandas()
    assert profile["customers"].sum() == summary.customers
    assert profile["share_customers"].sum() == pytest.approx(1) and profile["share_revenue"].sum() == pytest.approx(1)
    assert {"mean_recency_days", "z_recency_days", "median_recency_days"} <= set(profile.columns)
    described = json.loads((out / "profiles.json").read_text())
    assert all(len(s["top_features"]) == 5 and s["because"] for s in described)
    model = json.loads((out / "model.json").read_text())
    assert len(model["kmeans"]["centres"]) == summary.k
    assert [s["k"] for s in model["k_scores"]] == list(range(3, 11))
    # k by stability and usefulness: the largest k whose segments all hold up, none tiny.
    useful = [s["k"] for s in model["k_scores"] if s["stable"] and s["smallest_share"] >= 0.02]
    assert summary.k_chosen_by == model["k_chosen_by"] == "stability" and useful and summary.k == max(useful)
    assert [entry["jaccard"] >= 0.75 for entry in model["stability"]] == [True] * summary.k


def test_reruns_are_identical_and_seeds_agree(segmented, world, tmp_path):
    summary, out = segmented
    again = build_segments(
        world / "run" / "features",
        tmp_path / "again",
        options=SegmentOptions(sample=3000, k=summary.k),
        backend_name="cpu",
    )
    first, second = _assignments(out), _assignments(tmp_path / "again")
    pd.testing.assert_frame_equal(first, second)
    assert [s["name"] for s in again.segments] == [s["name"] for s in summary.segments]
    other_seed = build_segments(
        world / "run" / "features",
        tmp_path / "seed",
        options=SegmentOptions(sample=3000, k=summary.k),
        seed=5,
        backend_name="cpu",
    )
    assert adjusted_rand_score(first["segment"], _assignments(tmp_path / "seed")["segment"]) >= 0.95
    assert other_seed.k == summary.k


def test_kmeans_can_be_fitted_on_every_customer(world, tmp_path):
    features = world / "run" / "features"

    def inertia(out):
        return float((_assignments(out)["distance"].astype("float64") ** 2).sum())

    options = SegmentOptions(sample=500, k=4, micro_k=None, niches=False, stability_resamples=0)
    build_segments(features, tmp_path / "sample", options=options, backend_name="cpu")
    build_segments(features, tmp_path / "all", options=dataclasses.replace(options, kmeans_fit="all"),
                   backend_name="cpu")  # fmt: skip
    # Centres fitted on all 3,000 customers fit them better than those of a 500-customer sample.
    assert inertia(tmp_path / "all") < inertia(tmp_path / "sample")
    model = json.loads((tmp_path / "all" / "model.json").read_text())["kmeans"]
    assert model["inertia"] == pytest.approx(inertia(tmp_path / "all"), rel=1e-4)
    assert json.loads((tmp_path / "all" / "_segments.json").read_text())["kmeans_fit"] == "all"


def test_micro_segments_niches_and_outliers_reach_every_customer(segmented):
    summary, out = segmented
    assignments = _assignments(out)
    hierarchy = pq.read_table(out / "hierarchy.parquet").to_pandas()
    assert len(hierarchy) == summary.micro_segments > summary.k
    parent = hierarchy.set_index("micro_segment")["segment"]
    assert (assignments["micro_segment"].map(parent) == assignments["segment"]).all()
    assert hierarchy["customers"].sum() == summary.customers
    assert (hierarchy.groupby("segment")["share_of_segment"].sum().round(6) == 1).all()
    assert assignments["outlier"].sum() == summary.outliers
    niches = assignments.loc[assignments["niche"] >= 0, "niche"].value_counts().sort_index()
    assert niches.tolist() == [n for n in summary.niche_customers if n]
    stability = [s["stability"] for s in json.loads((out / "profiles.json").read_text())]
    assert all(0 <= s["jaccard"] <= 1 and s["stable"] == (s["jaccard"] >= 0.75) for s in stability)
    assert summary.unstable_segments == [i for i, s in enumerate(stability) if not s["stable"]]


def test_rules_restate_segments_and_place_new_customers(segmented, world):
    from engine.segments._fit import SegmentFit

    _, out = segmented
    described = json.loads((out / "profiles.json").read_text())
    assert all(s["rules"]["segment"] == s["segment"] for s in described)
    assert all(1 <= len(s["rules"]["conditions"]) <= 3 and s["rules"]["rule"] for s in described)
    model = SegmentFit.from_dict(json.loads((out / "model.json").read_text()))
    features = pq.read_table(world / "run" / "features").to_pandas().sort_values("customer_key").reset_index(drop=True)
    by_rules = model.rules.predict(features)
    agreement = (by_rules == _assignments(out)["segment"].to_numpy()).mean()
    recorded = json.loads((out / "_segments.json").read_text())["rules_fidelity"]
    # Fitted on the sample, which is every customer here: the rules place them as they did there.
    assert agreement == pytest.approx(recorded, abs=1e-4) and agreement > 0.5


def test_the_saved_model_places_customers_as_the_run_did(segmented, world):
    from engine.segments._fit import SegmentFit

    _, out = segmented
    model = SegmentFit.from_dict(json.loads((out / "model.json").read_text()))
    features = pq.read_table(world / "run" / "features").to_pandas().sort_values("customer_key").reset_index(drop=True)
    placed = model.place(features)
    assignments = _assignments(out)
    for column in ("segment", "micro_segment", "niche", "outlier"):
        assert (placed[column] == assignments[column].to_numpy()).all(), column


def test_switches_turn_off_micro_segments_niches_and_stability(world, tmp_path):
    options = SegmentOptions(sample=3000, k=4, micro_k=None, niches=False, stability_resamples=0)
    summary = build_segments(world / "run" / "features", tmp_path / "plain", options=options, backend_name="cpu")
    assignments = _assignments(tmp_path / "plain")
    assert (assignments["micro_segment"] == -1).all() and (assignments["niche"] == -1).all()
    assert not assignments["outlier"].any() and summary.micro_segments == 0
    assert not (tmp_path / "plain" / "hierarchy.parquet").exists()


def _permute_after(store, as_of, seed=0):
    """The store with every transaction after ``as_of`` given another customer's key and
    amount (within its partition, where a customer's rows live): what happened next shuffled."""
    rng = np.random.default_rng(seed)
    for part in sorted((store / "transactions").glob("*.parquet")):
        frame = pq.read_table(part).to_pandas()
        after = np.flatnonzero(frame["ts"] >= pd.Timestamp(as_of, tz="UTC"))
        for column in ("customer_key", "amount"):
            frame.loc[frame.index[after], column] = frame[column].to_numpy()[rng.permutation(after)]
        frame.sort_values(["customer_key", "ts"]).to_parquet(part, index=False)


def test_a_backtest_compares_segments_and_the_rfm_grid_on_what_happened_next(world, tmp_path):
    as_of = date(2025, 9, 1)
    build_features(world / "run" / "ingest" / "store", tmp_path / "features", as_of=as_of, backend_name="cpu")
    options = SegmentOptions(sample=3000, k_max=6, outcome_days=90, stability_resamples=3, niches=False, micro_k=None)
    summary = build_segments(tmp_path / "features", tmp_path / "segments", options=options, backend_name="cpu")
    evaluation = json.loads((tmp_path / "segments" / "evaluation.json").read_text())
    assert evaluation["window"]["start"].startswith("2025-09-01") and evaluation["window"]["end"].startswith(
        "2025-11-30"
    )
    assignments = _assignments(tmp_path / "segments")
    for grouping, column in (("segments", "segment"), ("rfm_grid", "rfm_segment")):
        result = evaluation[grouping]
        assert result["customers"] == len(assignments)
        assert 0 <= result["spend_eta_squared"] <= 1 and 0 < result["churn_rate"] < 1
        assert {g["group"] for g in result["groups"]} == set(assignments[column])
    # Recency is most of what predicts next-period churn: both groupings spread it widely.
    assert evaluation["segments"]["churn_rate_range"] > 0.3 and evaluation["rfm_grid"]["churn_rate_range"] > 0.3
    assert evaluation["customers"] == evaluation["of_customers"] == len(assignments)

    # The fair comparison: the RFM grid cut into as many groups as there are segments, in
    # each standard way, the best cut on each measure.
    compared = evaluation["at_equal_groups"]
    assert compared["groups"]["segments"] == summary.k == assignments["segment"].nunique()
    assert set(compared["groups"]) - {"segments"} and set(compared["groups"].values()) == {summary.k}
    cells = assignments["rfm_cell"].to_numpy()
    assert cells.min() >= 0 and cells.max() <= UNSCORED_CELL
    assert [m["measure"] for m in compared["measures"]] == list(MEASURES) and compared["resamples"] == 200
    for measure in compared["measures"]:
        assert measure["rfm_grid"]["value"] == max(measure["cuts"].values()) == measure["cuts"][measure["cut"]]
        for side in ("segments", "rfm_grid", "difference"):
            assert measure[side]["low"] < measure[side]["high"], (measure, side)
        assert measure["segments_win"] == (True if measure["difference"]["low"] > 0 else
                                           False if measure["difference"]["high"] < 0 else None)  # fmt: skip
    assert summary.against_rfm_grid["groups"] == summary.k

    # Bounded: on a sample of customers by key, never all of them gathered.
    bounded = dataclasses.replace(options, outcome_customers=1000)
    build_segments(tmp_path / "features", tmp_path / "bounded", options=bounded, backend_name="cpu")
    sampled = json.loads((tmp_path / "bounded" / "evaluation.json").read_text())
    assert sampled["of_customers"] == len(assignments) > 1500
    assert 0.7 * 1000 < sampled["customers"] < 1.3 * 1000
    assert sampled["segments"]["customers"] == sampled["customers"]
    # A uniform sample: the churn rate it measures is the population's, within sampling error.
    assert abs(sampled["segments"]["churn_rate"] - evaluation["segments"]["churn_rate"]) < 0.06

    # What happened next, shuffled, changes the measurement and nothing else: k and every
    # customer's segment come from before as-of.
    store = tmp_path / "store"
    shutil.copytree(world / "run" / "ingest" / "store", store)
    _permute_after(store, as_of)
    build_features(store, tmp_path / "features-shuffled", as_of=as_of, backend_name="cpu")
    shuffled = build_segments(tmp_path / "features-shuffled", tmp_path / "shuffled", options=options, backend_name="cpu")
    assert shuffled.k == summary.k
    pd.testing.assert_frame_equal(_assignments(tmp_path / "shuffled"), assignments)
    after = json.loads((tmp_path / "shuffled" / "evaluation.json").read_text())
    assert after["segments"]["log_spend_eta_squared"] != evaluation["segments"]["log_spend_eta_squared"]


def test_without_days_after_as_of_the_backtest_is_skipped(segmented):
    _, out = segmented
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert "before as-of + 90 days" in evaluation["skipped"]
    assert set(_assignments(out)["rfm_segment"]) <= {
        "Champions", "Loyal customers", "Potential loyalists", "New customers", "Promising", "Need attention",
        "About to sleep", "At risk", "Cannot lose them", "Hibernating", "Lost", "No purchases",
    }  # fmt: skip


def test_bad_inputs(world, tmp_path):
    with pytest.raises(InputDataError, match="not a segscale feature table"):
        build_segments(tmp_path, tmp_path / "s")
    with pytest.raises(UsageError, match="k must be at least 2"):
        build_segments(world / "run" / "features", tmp_path / "s", options=SegmentOptions(k_min=5, k_max=4))
    assert not (tmp_path / "s").exists()


@pytest.mark.gpu
def test_gpu_segments_agree_with_the_cpu(segmented, world, tmp_path):
    summary, out = segmented
    build_segments(
        world / "run" / "features",
        tmp_path / "gpu",
        options=SegmentOptions(sample=3000, k=summary.k),
        backend_name="gpu",
    )
    assert adjusted_rand_score(_assignments(out)["segment"], _assignments(tmp_path / "gpu")["segment"]) >= 0.99
