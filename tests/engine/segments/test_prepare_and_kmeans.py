"""Preparation and k-means on small synthetic matrices with known answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from engine.exceptions import UsageError
from engine.segments import Preparation, assign, choose_k
from engine.segments._prepare import CLIP


def _frame(rows=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "recency_days": np.where(rng.random(rows) < 0.2, np.nan, rng.uniform(0, 300, rows)),
            "frequency": rng.poisson(3, rows).astype("float64"),
            "monetary_total": rng.lognormal(4, 1.2, rows),
            "spend_trend_90d": np.where(rng.random(rows) < 0.7, np.nan, rng.uniform(-1, 1, rows)),
            "region": ["north"] * rows,
        }
    )


def test_missing_values_are_filled_by_what_they_mean():
    frame = _frame()
    prep = Preparation().fit(frame)
    fill = dict(zip(prep.columns_, prep.fill_))
    assert fill["recency_days"] == pytest.approx(frame["recency_days"].max())  # never bought: long ago
    assert fill["spend_trend_90d"] == 0.0  # nothing in either window: no change
    assert fill["frequency"] == frame["frequency"].median()
    assert "region" not in prep.columns_  # not a behavioural feature


def test_skewed_money_is_logged_and_robust_scaling_centres_on_the_median():
    frame = _frame()
    prep = Preparation(scaler="robust").fit(frame)
    logged = dict(zip(prep.columns_, prep.log_))
    assert logged["monetary_total"] and not logged["recency_days"]
    prepared = prep.transform(frame)
    money = prepared[:, prep.columns_.index("monetary_total")]
    assert np.median(money) == pytest.approx(0, abs=1e-9)
    assert np.abs(prepared).max() <= CLIP


def test_a_mostly_constant_column_is_not_blown_up():
    frame = _frame()
    frame["spend_trend_90d"] = np.where(np.arange(len(frame)) < 20, 0.9, 0.0)
    prepared = Preparation(scaler="robust").fit(frame).transform(frame)
    # Its IQR is 0, so its standard deviation scales it instead.
    assert np.abs(prepared[:, 3]).max() < CLIP


def test_saved_preparation_transforms_identically(tmp_path):
    frame = _frame()
    prep = Preparation(pca_components=2).fit(frame)
    prep.save(tmp_path / "prep.json")
    again = Preparation.load(tmp_path / "prep.json")
    np.testing.assert_array_equal(again.transform(frame), prep.transform(frame))
    components = np.asarray(prep.components_)
    np.testing.assert_allclose(components @ components.T, np.eye(2), atol=1e-9)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"features": ("frequency", "nope")}, "not in the feature table: nope"),
        ({"features": ("frequency",)}, "at least 2 features"),
        ({"scaler": "minmax"}, "unknown scaler"),
        ({"pca_components": 9}, "pca_components"),
    ],
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        Preparation(**options).fit(_frame())


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [6, 0], [0, 6]])
    labels = rng.integers(0, 3, 900)
    return centres[labels] + rng.normal(0, 0.7, (900, 2)), labels


def test_silhouette_picks_the_planted_number_of_blobs():
    points, labels = _blobs()
    choice, model = choose_k(points, range(2, 7), seed=1)
    assert choice.k == 3 and model.k == 3
    assert [s["k"] for s in choice.scores] == [2, 3, 4, 5, 6]
    best = max(choice.scores, key=lambda s: s["silhouette"])
    assert best["k"] == 3 and best["davies_bouldin"] == min(s["davies_bouldin"] for s in choice.scores)
    segment, distance = assign(points, model.centres)
    assert adjusted_rand_score(labels, segment) > 0.99
    assert distance.dtype == np.float32 and (distance >= 0).all()


def test_assignment_matches_scikit_learn_and_ids_do_not_depend_on_the_seed():
    points, _ = _blobs(seed=2)
    _, first = choose_k(points, [3], seed=0)
    _, second = choose_k(points, [3], seed=7)
    np.testing.assert_allclose(first.centres, second.centres, atol=1e-6)
    reference = KMeans(n_clusters=3, n_init=4, random_state=0).fit(points)
    segment, _ = assign(points, first.centres)
    assert adjusted_rand_score(reference.labels_, segment) == 1.0


def test_k_outside_the_sample_is_a_usage_error():
    points, _ = _blobs()
    with pytest.raises(UsageError, match="at least 2"):
        choose_k(points[:5], [1, 2])
    with pytest.raises(UsageError, match="below the sample size"):
        choose_k(points[:5], [5])


def test_a_silhouette_tie_goes_to_the_smaller_k(monkeypatch):
    import engine.segments._kmeans as kmeans

    points = np.random.default_rng(4).normal(size=(400, 2))
    choice, _ = choose_k(points, [2, 3, 4], seed=0)
    best = max(choice.scores, key=lambda s: s["silhouette"])
    gaps = {s["k"]: best["silhouette"] - s["silhouette"] for s in choice.scores}
    # Widen the tie until every candidate is in it: the smallest k must win.
    monkeypatch.setattr(kmeans, "SILHOUETTE_TIE", max(gaps.values()) + 1e-9)
    assert choose_k(points, [2, 3, 4], seed=0)[0].k == 2
    monkeypatch.setattr(kmeans, "SILHOUETTE_TIE", 0.0)
    assert choose_k(points, [2, 3, 4], seed=0)[0].k == best["k"]

def test_stability_chooses_the_largest_k_that_holds_up():
    """Five blobs, two of them close: k = 5 holds on resamples, while k = 4 merges the close
    pair in one resample and not in another, and k >= 6 cuts a blob at random."""
    from engine.segments import bootstrap_stability

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]])
    points = centres[rng.integers(0, 5, 2_000)] + rng.normal(0, 0.8, (2_000, 2))
    asked = []

    def stability(k, model_centres):
        asked.append(k)
        labels, _ = assign(points, model_centres)
        return bootstrap_stability(points, labels, k, resamples=5, seed=0)

    choice, model = choose_k(points, range(3, 9), seed=0, stability=stability, min_share=0.05)
    assert asked == list(range(3, 9)) and choice.by == "stability"
    assert choice.k == model.k == max(s["k"] for s in choice.scores if s["stable"] and s["smallest_share"] >= 0.05)
    assert choice.k >= 5 and choice.stability[choice.k] and all(e["stable"] for e in choice.stability[choice.k])
    # A floor on segment size no k meets leaves the most stable k.
    _, fallback = choose_k(points, range(3, 9), seed=0, stability=stability, min_share=0.5)
    best = max(choice.scores, key=lambda s: (s["stability_min"], -s["k"]))["k"]
    assert fallback.k == best


def test_stability_choice_with_made_up_scores():
    points, _ = _blobs()
    jaccard = {2: 0.9, 3: 0.8, 4: 0.7, 5: 0.95}

    def stability(k, centres):
        return [{"segment": s, "jaccard": jaccard[k], "stable": jaccard[k] >= 0.75} for s in range(k)]

    assert choose_k(points, [2, 3, 4, 5], stability=stability)[0].k == 5
    jaccard[5] = 0.5
    assert choose_k(points, [2, 3, 4, 5], stability=stability)[0].k == 3


def test_silhouettes_of_many_labellings_are_scikit_learns():
    from sklearn.metrics import silhouette_score

    from engine.segments._kmeans import silhouettes

    rng = np.random.default_rng(1)
    points = np.vstack([rng.normal(loc, 1.0, size=(700, 5)) for loc in (0.0, 4.0, 9.0)])
    labellings = [np.repeat([0, 1, 2], 700), rng.integers(0, 6, len(points)), rng.integers(3, 5, len(points)),
                  np.r_[np.zeros(len(points) - 1, dtype=int), [9]]]  # a cluster of one point  # fmt: skip
    expected = [silhouette_score(points, labels) for labels in labellings]
    # Blocks that do not divide the rows, and one labelling of a single cluster.
    got = silhouettes(points, [*labellings, np.zeros(len(points), dtype=int)], rows_per_block=512)
    np.testing.assert_allclose(got[:-1], expected, rtol=0, atol=1e-9)
    assert got[-1] == -1.0 and expected[0] > 0.5
