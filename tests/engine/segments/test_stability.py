"""Bootstrap stability of segments."""

import numpy as np

from engine.segments import assign, choose_k
from engine.segments._stability import bootstrap_stability


def _segmented(points, k):
    _, model = choose_k(points, [k], seed=0)
    return assign(points, model.centres)[0]


def test_well_separated_segments_are_stable():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(centre, 0.5, size=(300, 2)) for centre in ([0, 0], [10, 0], [0, 10])])
    scores = bootstrap_stability(points, _segmented(points, 3), 3, resamples=5)
    assert [s["segment"] for s in scores] == [0, 1, 2]
    assert all(s["jaccard"] > 0.95 and s["stable"] for s in scores)


def test_cutting_one_blob_in_two_scores_lower_than_separate_blobs():
    rng = np.random.default_rng(1)
    # One round blob split by k=2: the cut's direction is arbitrary, so refits disagree.
    points = rng.normal(0, 1.0, size=(600, 2))
    scores = bootstrap_stability(points, _segmented(points, 2), 2, resamples=8, seed=3)
    separated = np.vstack([points[:300] - 20, points[300:] + 20])
    clear = bootstrap_stability(separated, _segmented(separated, 2), 2, resamples=8, seed=3)
    assert np.mean([s["jaccard"] for s in scores]) < np.mean([s["jaccard"] for s in clear])
    assert all(s["stable"] for s in clear)


def test_same_seed_same_scores():
    points = np.random.default_rng(2).normal(size=(200, 3))
    segments = _segmented(points, 4)
    assert bootstrap_stability(points, segments, 4, resamples=3, seed=7) == bootstrap_stability(
        points, segments, 4, resamples=3, seed=7
    )
