"""Micro-segments and their Ward tree."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage

from engine.segments import assign, choose_k
from engine.segments._hierarchy import assign_micro, fit_micro_segments, ward_linkage


def test_unit_weights_reproduce_scipy_ward():
    points = np.random.default_rng(0).normal(size=(30, 3))
    ours, scipy = ward_linkage(points, np.ones(30)), linkage(points, "ward")
    np.testing.assert_allclose(ours[:, 2], scipy[:, 2], rtol=1e-9)
    np.testing.assert_array_equal(ours[:, 3], scipy[:, 3])


def test_weights_count_as_repeated_points():
    # A centre of weight 3 merges like three points sitting on it.
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    repeated = np.repeat(centres, [3, 1, 2], axis=0)
    ours = ward_linkage(centres, [3, 1, 2])
    theirs = linkage(repeated, "ward")
    # Repeated points first merge among themselves at height 0; the last two merges match.
    np.testing.assert_allclose(ours[:, 2], theirs[-2:, 2])


def test_groups_merge_within_themselves_first():
    centres = np.array([[0.0], [10.0], [0.5], [10.5]])
    tree = ward_linkage(centres, np.ones(4), groups=[0, 1, 1, 0])
    # 0 and 3 share a group although 0 and 2 are nearer; the groups join only at the end.
    first_two = {tuple(sorted(row[:2].astype(int))) for row in tree[:2]}
    assert first_two == {(0, 3), (1, 2)}
    assert tree[-1, 3] == 4


@pytest.fixture
def blobs():
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0], [8, 0], [0, 8]], dtype=float)
    points = np.vstack([rng.normal(centre, 1.0, size=(400, 2)) for centre in centres])
    _, model = choose_k(points, [3], seed=0)
    segments, _ = assign(points, model.centres)
    return points, segments


def test_every_micro_segment_nests_in_its_customers_segment(blobs):
    points, segments = blobs
    micro = fit_micro_segments(points, segments, 3, 12, seed=0, backend_name="cpu", n_init=2)
    parent = np.asarray(micro.parent)
    assert set(parent) == {0, 1, 2} and len(parent) == 12
    assert list(parent) == sorted(parent)  # ids read as nested blocks
    placed = assign_micro(points, segments, micro.centres, parent)
    assert (parent[placed] == segments).all()
    assert sum(micro.sizes) == len(points)
    tree = np.asarray(micro.linkage)
    assert tree.shape == (11, 4) and tree[-1, 3] == len(points)


def test_a_segment_no_micro_cell_belongs_to_still_gets_a_child():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(300, 2))
    segments = (points[:, 0] > 0).astype(np.int32)
    segments[:3] = 2  # a tiny segment inside the others' cells
    micro = fit_micro_segments(points, segments, 3, 4, seed=0, backend_name="cpu", n_init=1)
    assert 2 in micro.parent
    placed = assign_micro(points, segments, micro.centres, micro.parent)
    assert (np.asarray(micro.parent)[placed] == segments).all()


def test_micro_placement_is_the_same_in_every_array_namespace(blobs, backend):
    points, segments = blobs
    micro = fit_micro_segments(points, segments, 3, 12, seed=0, backend_name="cpu", n_init=2)
    xp = backend.xp
    placed = assign_micro(xp.asarray(points), xp.asarray(segments), micro.centres, micro.parent, xp)
    host = placed.get() if hasattr(placed, "get") else placed
    np.testing.assert_array_equal(host, assign_micro(points, segments, micro.centres, micro.parent))
