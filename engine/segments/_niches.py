"""Niche groups and outliers by DBSCAN on a memory-bounded subset, joined back to everyone.

DBSCAN's cost grows with the square of the points, so it runs on a subset of the prepared
sample (``points``, default 20,000): scikit-learn's on the CPU, cuML's on the GPU with an
explicit batch memory budget and int64 labels. ``eps`` comes from the knee of the sorted
k-distance curve unless given. Dense groups holding less than ``niche_max_share`` of the
subset are *niches*; the large ones are the main body of customers and carry no flag.

Every customer is then placed like a new point in DBSCAN: within ``eps`` of a core point it
joins that core point's group, otherwise it is an *outlier*. The core points kept for this
(at most ``max_core_points``, an even thinning) travel with the model, so placing a partition
is a chunked nearest-neighbour search in its array namespace. Most rows are settled, by a
bound that leaves no doubt, against a few hundred of the core points (pivots, spread by
farthest-point sampling); only the rest are measured against every core point, and the
answer is the same to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..backend import resolve_backend, to_host_array

__all__ = ["NicheModel", "fit_niches", "knee_eps", "place_niches"]

# Rows placed per matrix product, bounding the distance block to rows x core points. A row's
# answer is that of its block, the nearest core point as the formula rounds it for the whole
# block at once: a matrix product may round a row differently with the block's shape, so
# squared norms are summed, and rows in doubt measured again, in these blocks.
_PLACE_ROWS = 4096
# Core points every row is measured against first, then the rows those leave against more:
# of a million customers with 5,000 core points, 256 settled 90% and 1,024 all but 1.5%.
_PIVOTS = (256, 1024)
# Times sqrt((dimensions + 4) x 2^-52) x (|x| + |c|): a bound, with room to spare, on how far
# rounding moves a distance computed as |x|^2 - 2 x.c + |c|^2 (see _rounding_slack).
_SLACK_FACTOR = 4.0


@dataclass
class NicheModel:
    """What placing customers needs: core points (prepared units), their group, and the rules."""

    eps: float
    min_samples: int
    core_points: list[list[float]]
    core_group: list[int]  # niche id, or -1 for a core point of a large group
    niche_sizes: list[int]  # subset points per niche
    subset_points: int
    subset_outlier_share: float
    # Derived from the core points once, so each partition placed does not redo it.
    index: CoreIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.index = CoreIndex.of(self.core_points, self.core_group, _PIVOTS)

    def to_dict(self) -> dict:
        return {entry.name: getattr(self, entry.name) for entry in fields(self) if entry.init}

    @classmethod
    def from_dict(cls, document: dict) -> NicheModel:
        return cls(**document)


@dataclass(frozen=True)
class CoreIndex:
    """The core points as arrays, and levels of pivots among them that stand for the rest.

    A level is the first so many pivots. At each, every core point belongs to the level's
    nearest pivot of its own group, so a pivot and its radius (its farthest such core point)
    bound the distance from any row to those of the group's core points.
    """

    points: np.ndarray  # cores x dimensions, float64
    group: np.ndarray  # int32, as NicheModel.core_group
    pivots: np.ndarray  # positions in points, in the order chosen
    radii: tuple[np.ndarray, ...]  # per level, one float64 radius per pivot of the level
    largest_norm: float  # of a core point, scaling how far rounding can move a distance

    @classmethod
    def of(cls, core_points: list[list[float]], core_group: list[int], levels: tuple[int, ...]) -> CoreIndex:
        # No core points is a 0 x 0 matrix, not the 1-d array an empty list makes.
        points = np.asarray(core_points, dtype=np.float64).reshape(len(core_points), -1 if len(core_points) else 0)
        group = np.asarray(core_group, dtype=np.int32)
        pivots, levels_chosen = _farthest_points(points, group, levels)
        radii = tuple(_radii(points, pivots[:count], owner) for count, owner in levels_chosen)
        largest_norm = float(np.sqrt((points**2).sum(axis=1)).max()) if len(points) else 0.0
        return cls(points=points, group=group, pivots=pivots, radii=radii, largest_norm=largest_norm)


def _farthest_points(points: np.ndarray, group: np.ndarray, levels: tuple[int, ...]):
    """Pivots, each the core point farthest from its group's pivots so far, up to each level's count.

    Starts from the first core point of each group, so every group has a pivot, and stops
    early once every core point is a pivot's equal. Returns the pivots' positions and, per
    level that adds pivots, its pivot count and each core point's pivot (an index into them).
    Pivots decide only how many rows are settled early, never a row's answer, so rounding here
    does no harm.
    """
    norms = (points**2).sum(axis=1)
    chosen: list[int] = []
    owner = np.zeros(len(points), dtype=np.int64)
    squared = np.full(len(points), np.inf)  # to the nearest pivot of the same group
    levels_chosen: list[tuple[int, np.ndarray]] = []

    def choose(position: int) -> None:
        to_pivot = norms - 2 * points @ points[position] + norms[position]
        closer = (group == group[position]) & (to_pivot < squared)
        owner[closer], squared[closer] = len(chosen), to_pivot[closer]
        chosen.append(position)

    for position in np.unique(group, return_index=True)[1]:
        choose(int(position))
    for count in levels:
        before = len(chosen)
        while len(chosen) < min(count, len(points)) and squared.max() > 0:
            choose(int(squared.argmax()))
        if len(chosen) > before or not levels_chosen:
            levels_chosen.append((len(chosen), owner.copy()))
    return np.asarray(chosen, dtype=np.int64), levels_chosen


def _radii(points: np.ndarray, pivots: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per pivot, the distance to its farthest core point.

    Measured point minus point, so the norm formula's rounding cannot shrink a radius.
    """
    to_pivot = np.sqrt(((points - points[pivots[owner]]) ** 2).sum(axis=1))
    radius = np.zeros(pivots.size)
    np.maximum.at(radius, owner, to_pivot)
    return radius


def knee_eps(points: np.ndarray, min_samples: int) -> float:
    """``eps`` at the knee of the ascending k-distance curve (k = ``min_samples``).

    The knee is the point of the curve furthest below the chord from its first to its last
    point: past it, distances to the k-th neighbour shoot up, which is where points stop
    being in dense regions.
    """
    distances, _ = resolve_backend("cpu").nearest_neighbors(min_samples).fit(points).kneighbors(points)
    curve = np.sort(distances[:, -1])
    if curve[-1] <= curve[0]:
        return float(curve[-1]) or 1e-6
    position = np.linspace(0.0, 1.0, curve.size)
    height = (curve - curve[0]) / (curve[-1] - curve[0])
    return float(curve[np.argmax(position - height)])


def fit_niches(sample, *, eps: float | None = None, min_samples: int | None = None, points: int = 20_000,
               niche_max_share: float = 0.05, max_core_points: int = 5_000, seed: int = 0,
               backend_name: str = "cpu") -> NicheModel:  # fmt: skip
    """DBSCAN on at most ``points`` rows of the prepared sample.

    Parameters
    ----------
    sample : ndarray (rows x dimensions), NumPy or CuPy
    eps : float, optional
        Neighbourhood radius in prepared units; default from :func:`knee_eps`.
    min_samples : int, optional
        Neighbours (the point included) that make a core point; default twice the dimensions.
    """
    host = to_host_array(sample).astype(np.float64)
    rng = np.random.default_rng(seed)
    if host.shape[0] > points:
        host = host[np.sort(rng.choice(host.shape[0], size=points, replace=False))]
    min_samples = min_samples or 2 * host.shape[1]
    min_samples = max(2, min(min_samples, host.shape[0] - 1))
    eps = eps if eps is not None else knee_eps(host, min_samples)
    labels, core = _dbscan(host, eps, min_samples, backend_name)
    groups, sizes = np.unique(labels[labels >= 0], return_counts=True)
    niches = groups[sizes < niche_max_share * host.shape[0]]
    niche_id = np.full(int(labels.max()) + 2 if labels.size else 1, -1, dtype=np.int64)
    # Niches are numbered by size, largest first, so ids read the same on every backend.
    by_size = niches[np.lexsort((niches, -sizes[np.isin(groups, niches)]))]
    niche_id[by_size] = np.arange(by_size.size)
    core_points, core_group = host[core], niche_id[labels[core]]
    if core_points.shape[0] > max_core_points:
        keep = np.linspace(0, core_points.shape[0] - 1, max_core_points).astype(np.int64)
        core_points, core_group = core_points[keep], core_group[keep]
    return NicheModel(
        eps=float(eps), min_samples=int(min_samples), core_points=core_points.tolist(),
        core_group=core_group.astype(int).tolist(),
        niche_sizes=[int((niche_id[labels[labels >= 0]] == niche).sum()) for niche in range(by_size.size)],
        subset_points=int(host.shape[0]), subset_outlier_share=float((labels < 0).mean()),
    )  # fmt: skip


def _dbscan(points: np.ndarray, eps: float, min_samples: int, backend_name: str):
    """Labels (-1 noise) and a boolean core mask, on the backend's DBSCAN."""
    backend = resolve_backend(backend_name)
    model = backend.dbscan(eps=eps, min_samples=min_samples)
    model.fit(backend.xp.asarray(points))
    labels = to_host_array(model.labels_).astype(np.int64)
    core = np.zeros(points.shape[0], dtype=bool)
    core[to_host_array(model.core_sample_indices_).astype(np.int64)] = True
    return labels, core


def place_niches(prepared, model: NicheModel, xp=np):
    """Each row's niche id (-1: none) and outlier flag, in ``xp``.

    A row within ``eps`` of a core point takes the nearest core point's group (a niche id, or
    -1 for the main body); a row within ``eps`` of none is an outlier. The answer is, to the
    last bit, that of measuring every row against every core point in blocks of
    ``_PLACE_ROWS``; but most rows are settled by the pivots, the rest measured against
    every core point, and only the few a rounding could tip measured again in their blocks.
    """
    rows = prepared.shape[0]
    niche = xp.full(rows, -1, dtype=xp.int32)
    outlier = xp.zeros(rows, dtype=bool)
    if model.index.points.shape[0] == 0:
        return niche, ~outlier
    cores = _Cores.on(model.index, xp)
    norms = _squared_norms(prepared, xp)
    slack = _rounding_slack(norms, prepared.shape[1], cores.largest_norm, xp)
    pending = xp.arange(rows)
    for pivots in cores.levels:
        settled = xp.zeros(pending.shape[0], dtype=bool)
        for start in range(0, pending.shape[0], _PLACE_ROWS):
            chosen = pending[start : start + _PLACE_ROWS]
            # A row left pending keeps its pivot's group only until a later level or the full search.
            settled[start : start + _PLACE_ROWS], niche[chosen] = _settle_by_pivots(
                prepared[chosen], norms[chosen], slack[chosen], pivots, cores.several_groups, model.eps, xp
            )
        pending = pending[~settled]
    # The rest against every core point, noting the rows another rounding could tip.
    in_doubt = xp.zeros(rows, dtype=bool)
    for start in range(0, pending.shape[0], _PLACE_ROWS):
        chosen = pending[start : start + _PLACE_ROWS]
        squared = _squared_distances(prepared[chosen], norms[chosen], cores)
        nearest, least = _nearest(squared, xp)
        niche[chosen], outlier[chosen] = _answer(nearest, least, cores, model.eps, xp)
        in_doubt[chosen] = _in_doubt(squared, nearest, least, slack[chosen] ** 2, cores, model.eps, xp)
    # Those measured again in their own blocks, rounded as the whole block rounds them.
    for start in _blocks_in_doubt(in_doubt, xp):
        block = slice(start, start + _PLACE_ROWS)
        nearest, least = _nearest(_squared_distances(prepared[block], norms[block], cores), xp)
        block_niche, block_outlier = _answer(nearest, least, cores, model.eps, xp)
        niche[block] = xp.where(in_doubt[block], block_niche, niche[block])
        outlier[block] = xp.where(in_doubt[block], block_outlier, outlier[block])
    return niche, outlier


@dataclass
class _Pivots:
    """One level of pivots, in the array namespace rows are placed in."""

    points: object
    norms: object
    group: object
    radius: object


@dataclass
class _Cores:
    """A :class:`CoreIndex` in the array namespace rows are placed in."""

    points: object
    norms: object
    group: object
    levels: list[_Pivots]
    largest_norm: float
    several_groups: bool

    @classmethod
    def on(cls, index: CoreIndex, xp) -> _Cores:
        points = xp.asarray(index.points)
        norms = (points**2).sum(axis=1)
        group = xp.asarray(index.group)
        levels = []
        for radius in index.radii:
            pivots = xp.asarray(index.pivots[: radius.size])
            level = _Pivots(points=points[pivots], norms=norms[pivots], group=group[pivots], radius=xp.asarray(radius))
            levels.append(level)
        return cls(points=points, norms=norms, group=group, levels=levels, largest_norm=index.largest_norm,
                   several_groups=bool(np.unique(index.group).size > 1))  # fmt: skip


def _squared_norms(prepared, xp):
    """|x|^2 of each row, summed in blocks of ``_PLACE_ROWS``."""
    norms = xp.zeros(prepared.shape[0], dtype=xp.float64)
    for start in range(0, prepared.shape[0], _PLACE_ROWS):
        norms[start : start + _PLACE_ROWS] = (prepared[start : start + _PLACE_ROWS] ** 2).sum(axis=1)
    return norms


def _rounding_slack(norms, dimensions: int, largest_norm: float, xp):
    """Per row, a bound on how far rounding moves a distance computed by the formula.

    The formula's error in a squared distance is at most about (dimensions + 3) x 2^-53 x
    (|x| + |c|)^2, wherever the matrix product adds its terms in another order; the slack is
    a few times its square root, and the slack squared bounds how far two such roundings of
    one squared distance can disagree.
    """
    rounding = _SLACK_FACTOR * np.sqrt((dimensions + 4) * np.finfo(np.float64).eps)
    return rounding * (xp.sqrt(norms) + largest_norm)


def _settle_by_pivots(rows, norms, slack, pivots: _Pivots, several_groups: bool, eps: float, xp):
    """Which ``rows`` are surely within ``eps``, and the group of each one's nearest pivot.

    A row is settled when its nearest pivot is within ``eps`` less the slack, and no pivot of
    another group comes, less its radius, within that distance plus the slack: then however
    the full search rounds, its nearest core point is within ``eps`` and of the pivot's group.
    """
    # |p|^2 - 2 x.p, built in place: |x|^2 is the same along a row, so it is added to the nearest only.
    partial = (-2 * rows) @ pivots.points.T
    partial += pivots.norms[None, :]
    nearest = partial.argmin(axis=1)
    squared = norms + xp.take_along_axis(partial, nearest[:, None], axis=1)[:, 0]
    distance = xp.sqrt(xp.maximum(squared, 0))
    group = pivots.group[nearest]
    settled = distance <= eps - slack
    if several_groups:
        lower_bound = xp.sqrt(xp.maximum(partial + norms[:, None], 0)) - pivots.radius[None, :]
        rival = (pivots.group[None, :] != group[:, None]) & (lower_bound <= (distance + slack)[:, None])
        settled &= ~rival.any(axis=1)
    return settled, group


def _squared_distances(rows, norms, cores: _Cores):
    """|x|^2 - 2 x.c + |c|^2 from each row to every core point, added in that order.

    Built in place: negating the doubled rows before the product is exact, so every bit is
    as if the product were subtracted.
    """
    squared = (-2 * rows) @ cores.points.T
    squared += norms[:, None]
    squared += cores.norms[None, :]
    return squared


def _nearest(squared, xp):
    """Each row's nearest core point (the first of equals) and its squared distance."""
    nearest = squared.argmin(axis=1)
    return nearest, xp.take_along_axis(squared, nearest[:, None], axis=1)[:, 0]


def _answer(nearest, least, cores: _Cores, eps: float, xp):
    """Niche id and outlier flag from each row's nearest core point and squared distance."""
    within = least <= eps**2
    return xp.where(within, cores.group[nearest], -1), ~within


def _in_doubt(squared, nearest, least, tolerance, cores: _Cores, eps: float, xp):
    """Rows whose answer another rounding of ``squared`` (within ``tolerance``) could change.

    Those whose nearest core point lies within the tolerance of ``eps``, or, within ``eps``,
    has a core point of another group within the tolerance of it.
    """
    doubt = xp.abs(least - eps**2) <= tolerance
    if cores.several_groups:
        other = cores.group[None, :] != cores.group[nearest][:, None]
        rival = xp.where(other, squared, xp.inf).min(axis=1) <= least + tolerance
        doubt |= (least < eps**2) & rival
    return doubt


def _blocks_in_doubt(in_doubt, xp) -> list[int]:
    """The first rows of the blocks of ``_PLACE_ROWS`` that hold a row in doubt."""
    blocks = xp.unique(xp.nonzero(in_doubt)[0] // _PLACE_ROWS)
    return [int(block) * _PLACE_ROWS for block in to_host_array(blocks)]
