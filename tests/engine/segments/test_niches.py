"""DBSCAN niches and outliers, and placing customers in them."""

import numpy as np
import pytest

from engine.segments._niches import NicheModel, fit_niches, knee_eps, place_niches


@pytest.fixture
def planted():
    rng = np.random.default_rng(5)
    body = rng.normal(0, 1.0, size=(3000, 2))
    niche = rng.normal([12, 12], 0.2, size=(60, 2))
    strays = np.array([[30.0, -30.0], [-25.0, 28.0], [40.0, 40.0]])
    return np.vstack([body, niche, strays])


def test_a_small_dense_group_is_a_niche_and_strays_are_outliers(planted):
    model = fit_niches(planted, eps=0.6, min_samples=8)
    assert len(model.niche_sizes) == 1 and 55 <= model.niche_sizes[0] <= 60
    niche, outlier = place_niches(planted, model)
    assert (niche[3000:3060] == 0).mean() > 0.9
    assert (niche[:3000] == -1).all()
    assert outlier[-3:].all() and outlier[:3000].mean() < 0.02


def test_eps_from_the_knee_finds_the_same_structure(planted):
    model = fit_niches(planted, min_samples=8)
    assert 0 < model.eps < 3
    niche, outlier = place_niches(planted, model)
    assert outlier[-3:].all() and (niche[3000:3060] == 0).mean() > 0.9


def test_knee_sits_where_the_k_distance_curve_turns():
    rng = np.random.default_rng(2)
    dense = rng.normal(0, 0.1, size=(500, 2))
    sparse = rng.uniform(-50, 50, size=(25, 2))
    eps = knee_eps(np.vstack([dense, sparse]), 5)
    assert 0.02 < eps < 2.0


def test_subset_bounds_the_work_and_placement_covers_everyone(planted):
    model = fit_niches(planted, eps=0.6, min_samples=8, points=1000, max_core_points=200, seed=1)
    assert model.subset_points == 1000 and len(model.core_points) <= 200
    niche, outlier = place_niches(planted, model)
    assert niche.shape == outlier.shape == (len(planted),)
    again = NicheModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(place_niches(planted, again)[0], niche)


def test_rows_are_placed_in_blocks_the_same_as_at_once(planted, monkeypatch):
    model = fit_niches(planted, eps=0.6, min_samples=8)
    whole = place_niches(planted, model)
    monkeypatch.setattr("engine.segments._niches._PLACE_ROWS", 7)
    blocked = place_niches(planted, model)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


def test_each_backend_fits_and_places_the_same_niches(planted, backend):
    model = fit_niches(planted, eps=0.6, min_samples=8, backend_name=backend.name)
    reference = fit_niches(planted, eps=0.6, min_samples=8, backend_name="cpu")
    assert model.niche_sizes == reference.niche_sizes
    niche, outlier = place_niches(backend.xp.asarray(planted), model, backend.xp)
    host = niche.get() if hasattr(niche, "get") else niche
    expected, _ = place_niches(planted, reference)
    np.testing.assert_array_equal(host, expected)
    assert int(outlier.sum()) == int(place_niches(planted, reference)[1].sum())
