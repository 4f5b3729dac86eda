"""Two segment runs compared: which segment became which, who moved, how sizes drifted, and
which segments look like they split or merged (DESIGN 2, "transitions between runs").

Matching, transitions, the adjusted Rand index, movers and suggestions are computed on the
customers present in both runs; size drift compares each run's whole population, since the
common customers' shares are already the transition matrix's margins. Everything works on
one contingency table (A segments x B segments), built with one ``bincount`` over the
customers: no Python loop ever runs per customer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

from .._tasks import staged_output
from ..exceptions import InputDataError, UsageError
from ..layout import CompareLayout, RunLayout, SegmentsLayout, part_files

__all__ = ["SegmentComparison", "compare_runs"]

# A share of zero makes PSI infinite; this floor is the usual convention for empty bins.
PSI_FLOOR = 1e-4


@dataclass
class _Run:
    """One run's assignments as positions into its segment list (0..k-1)."""

    directory: Path
    keys: pa.ChunkedArray
    codes: np.ndarray
    segments: np.ndarray
    names: list[str]
    profile: pd.DataFrame


def _segments_dir(path: Path) -> SegmentsLayout:
    """The segment output itself, or the ``segments/`` directory of a run."""
    for candidate in (SegmentsLayout(path), RunLayout(path).segments):
        if candidate.assignments.is_dir() and candidate.profile_table.is_file():
            return candidate
    raise InputDataError(
        f"{path}: not a segscale segment output (no assignments/ and profiles.parquet, here or in segments/); "
        "run segscale segments first"
    )


def _read_run(path: str | Path) -> _Run:
    directory = _segments_dir(Path(path))
    files = part_files(directory.assignments)
    if not files:
        raise InputDataError(f"{directory.assignments}: no part-*.parquet files; run segscale segments again")
    profile = pq.read_table(directory.profile_table).to_pandas()
    if not {"segment", "segment_name"} <= set(profile.columns):
        raise InputDataError(f"{directory.profile_table}: lacks the segment and segment_name columns")
    profile = profile.sort_values("segment").reset_index(drop=True)
    segments = profile["segment"].to_numpy()
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=["customer_key", "segment"])
    labels = table.column("segment").to_numpy()
    codes = np.searchsorted(segments, labels)
    known = codes < len(segments)
    known[known] = segments[codes[known]] == labels[known]
    if not known.all():
        unknown = np.unique(labels[~known])[:5].tolist()
        raise InputDataError(f"{directory.root}: assignments name segments {unknown} that profiles.parquet does not list")
    keys = table.column("customer_key")
    # Arrow's hashing of strings is several times faster than pandas' here (5M keys: ~1.5 s).
    distinct = pc.count_distinct(keys).as_py()
    if distinct != len(keys):
        raise InputDataError(
            f"{directory.root}: customer_key is not unique in the assignments ({len(keys) - distinct:,} repeated or missing)"
        )
    names = [str(name) for name in profile["segment_name"]]
    return _Run(directory.root, keys, codes.astype(np.int64), segments, names, profile)


def adjusted_rand_from_counts(counts: np.ndarray) -> float:
    """The adjusted Rand index of two labelings from their contingency table (Hubert and Arabie)."""

    def pairs(n):
        n = np.asarray(n, dtype=np.float64)
        return float((n * (n - 1) / 2).sum())

    total = pairs(counts.sum())
    index, rows, columns = pairs(counts), pairs(counts.sum(axis=1)), pairs(counts.sum(axis=0))
    expected = rows * columns / total if total else 0.0
    maximum = (rows + columns) / 2
    if maximum == expected:
        # One cluster on both sides, or every customer alone on both: the labelings agree.
        return 1.0
    return (index - expected) / (maximum - expected)


def _psi_term(share_a: float, share_b: float) -> float:
    a, b = max(share_a, PSI_FLOOR), max(share_b, PSI_FLOOR)
    return (b - a) * math.log(b / a)


@dataclass
class SegmentComparison:
    """What ``compare_runs`` found; see its docstring. Shares are fractions (0..1)."""

    run_a: Path
    run_b: Path
    customers_a: int
    customers_b: int
    common: int
    adjusted_rand: float
    matches: list[dict]
    unmatched_a: list[dict]
    unmatched_b: list[dict]
    transitions: pd.DataFrame
    segments_a: list[dict]
    segments_b: list[dict]
    moves: list[dict]
    movers: int
    drift: list[dict]
    psi: float
    suggestions: list[dict]
    thresholds: dict
    movers_path: Path | None = None
    out_dir: Path | None = None

    @property
    def gone(self) -> int:
        """Customers only in run A."""
        return self.customers_a - self.common

    @property
    def new(self) -> int:
        """Customers only in run B."""
        return self.customers_b - self.common

    def to_dict(self) -> dict:
        counts = self.transitions.to_numpy()
        totals = counts.sum(axis=1, keepdims=True)
        row_shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        return {
            "run_a": str(self.run_a),
            "run_b": str(self.run_b),
            "customers_a": self.customers_a,
            "customers_b": self.customers_b,
            "common": self.common,
            "gone": self.gone,
            "new": self.new,
            "adjusted_rand": round(self.adjusted_rand, 4),
            "matches": self.matches,
            "unmatched_a": self.unmatched_a,
            "unmatched_b": self.unmatched_b,
            "transitions": {
                "segments_a": self.segments_a,
                "segments_b": self.segments_b,
                "counts": counts.tolist(),
                "row_shares": np.round(row_shares, 4).tolist(),
            },
            "moves": self.moves,
            "movers": self.movers,
            "movers_path": str(self.movers_path) if self.movers_path else None,
            "drift": self.drift,
            "psi": round(self.psi, 4),
            "suggestions": self.suggestions,
            "thresholds": self.thresholds,
            "out_dir": str(self.out_dir) if self.out_dir else None,
        }


def _named(run: _Run, position: int, suffix: str = "") -> dict:
    """A segment's id and name, keys suffixed (``segment_a``, ``name_a``) when ``suffix`` is given."""
    tail = f"_{suffix}" if suffix else ""
    return {f"segment{tail}": int(run.segments[position]), f"name{tail}": run.names[position]}


def _drift(first: _Run, second: _Run, matched, alone_a, alone_b) -> tuple[list[dict], float]:
    """Each matched segment's share of its whole run in A and in B, and PSI over those shares."""
    share_a = np.bincount(first.codes, minlength=len(first.names)) / len(first.codes)
    share_b = np.bincount(second.codes, minlength=len(second.names)) / len(second.codes)
    drift = [
        {
            **_named(first, i, "a"),
            **_named(second, j, "b"),
            "share_a": round(float(share_a[i]), 4),
            "share_b": round(float(share_b[j]), 4),
            "difference": round(float(share_b[j] - share_a[i]), 4),
            "psi": round(_psi_term(share_a[i], share_b[j]), 4),
        }
        for i, j, _ in matched
    ]
    # Unmatched segments are bins too: a segment that vanished or appeared is drift.
    psi = sum(_psi_term(share_a[i], share_b[j]) for i, j, _ in matched)
    psi += sum(_psi_term(share_a[i], 0.0) for i in alone_a) + sum(_psi_term(0.0, share_b[j]) for j in alone_b)
    return drift, psi


def _moves(counts: np.ndarray, match_of: np.ndarray, first: _Run, second: _Run) -> list[dict]:
    """Every flow from an A segment to a B segment other than its match, largest first."""
    sizes = counts.sum(axis=1)
    moves = [
        {
            **_named(first, i, "a"),
            **_named(second, j, "b"),
            "customers": int(counts[i, j]),
            "share_of_a": round(float(counts[i, j] / sizes[i]), 4),
        }
        for i, j in zip(*np.nonzero(counts))
        if match_of[i] != j
    ]
    return sorted(moves, key=lambda move: (-move["customers"], move["segment_a"], move["segment_b"]))


def _match(counts: np.ndarray) -> list[tuple[int, int, float]]:
    """Pairs (A position, B position, Jaccard) maximising total Jaccard; no-overlap pairs dropped."""
    sizes_a, sizes_b = counts.sum(axis=1), counts.sum(axis=0)
    union = sizes_a[:, None] + sizes_b[None, :] - counts
    jaccard = np.divide(counts, union, out=np.zeros(counts.shape), where=union > 0)
    rows, columns = linear_sum_assignment(jaccard, maximize=True)
    return [(int(i), int(j), float(jaccard[i, j])) for i, j in zip(rows, columns) if counts[i, j] > 0]


def _suggest(counts, run_a: _Run, run_b: _Run, matched, split_share, merge_share, converge_ratio) -> list[dict]:
    """Splits and merges, each with the numbers behind it in plain words."""
    sizes = counts.sum(axis=1)
    shares = np.divide(counts, sizes[:, None], out=np.zeros(counts.shape), where=sizes[:, None] > 0)
    suggestions = []
    for i in range(len(run_a.names)):
        targets = np.flatnonzero(shares[i] >= split_share)
        if len(targets) >= 2:
            targets = targets[np.argsort(-shares[i, targets], kind="stable")]
            parts = ", ".join(f"{shares[i, j]:.0%} to '{run_b.names[j]}'" for j in targets)
            suggestions.append({
                "kind": "split", "basis": "members",
                "segments_a": [int(run_a.segments[i])], "segments_b": [int(run_b.segments[j]) for j in targets],
                "message": f"'{run_a.names[i]}' of A looks split in B: of its {sizes[i]:,} customers in both runs, {parts}",
            })  # fmt: skip
    for j in range(len(run_b.names)):
        sources = np.flatnonzero(shares[:, j] >= merge_share)
        if len(sources) >= 2:
            parts = " and ".join(f"'{run_a.names[i]}' ({shares[i, j]:.0%} of its {sizes[i]:,})" for i in sources)
            suggestions.append({
                "kind": "merge", "basis": "members",
                "segments_a": [int(run_a.segments[i]) for i in sources], "segments_b": [int(run_b.segments[j])],
                "message": f"{parts} of A went to the same B segment '{run_b.names[j]}'",
            })  # fmt: skip
    features = [c for c in run_a.profile.columns if c.startswith("z_") and c in run_b.profile.columns]
    z_a, z_b = run_a.profile[features].to_numpy(float), run_b.profile[features].to_numpy(float)
    for (i, j, _), (k, m, _) in combinations(matched, 2):
        present = np.isfinite(z_a[i]) & np.isfinite(z_a[k]) & np.isfinite(z_b[j]) & np.isfinite(z_b[m])
        distance_a = float(np.linalg.norm(z_a[i, present] - z_a[k, present]))
        distance_b = float(np.linalg.norm(z_b[j, present] - z_b[m, present]))
        if present.any() and distance_a > 0 and distance_b / distance_a < converge_ratio:
            suggestions.append({
                "kind": "merge", "basis": "profiles",
                "segments_a": [int(run_a.segments[i]), int(run_a.segments[k])],
                "segments_b": [int(run_b.segments[j]), int(run_b.segments[m])],
                "message": (
                    f"'{run_a.names[i]}' and '{run_a.names[k]}' drew together: their z-profiles are {distance_a:.2f} "
                    f"apart in A and their matches '{run_b.names[j]}' and '{run_b.names[m]}' {distance_b:.2f} apart in B "
                    f"({distance_b / distance_a:.0%} of the distance, over {int(present.sum())} features)"
                ),
            })  # fmt: skip
    return suggestions


def _check_thresholds(split_share: float, merge_share: float, converge_ratio: float) -> None:
    if not 0 < split_share <= 0.5:
        raise UsageError(
            f"compare: split share must be in (0, 0.5] so two segments can each take it; got {split_share}"
        )
    if not 0 < merge_share <= 1:
        raise UsageError(f"compare: merge share must be in (0, 1]; got {merge_share}")
    if not 0 < converge_ratio < 1:
        raise UsageError(f"compare: converge ratio must be in (0, 1); got {converge_ratio}")


def _check_out(out: Path, runs: tuple[_Run, _Run]) -> None:
    """The output directory is replaced whole, so it must not hold either input."""
    target = out.resolve()
    for run in runs:
        source = run.directory.resolve()
        if target == source or target in source.parents:
            raise UsageError(f"compare: --out {out} would replace the input {run.directory}; choose another directory")


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    out: str | Path | None = None,
    split_share: float = 0.25,
    merge_share: float = 0.5,
    converge_ratio: float = 0.5,
) -> SegmentComparison:
    """Compare two segment runs (``build_segments`` outputs, or run directories holding one).

    Parameters
    ----------
    run_a, run_b : path
        The earlier and the later run.
    out : path, optional
        Directory (replaced whole) for ``movers.parquet`` (customer_key, segment_a, name_a,
        segment_b, name_b: customers whose B segment is not their A segment's match) and
        ``comparison.json``.
    split_share : float, default 0.25
        A segment of A is suggested as split when at least this share of its common customers
        went to each of two or more B segments.
    merge_share : float, default 0.5
        Segments of A are suggested as merged when each sent at least this share of its common
        customers to the same B segment.
    converge_ratio : float, default 0.5
        Two matched segments are suggested as merged when the distance between their
        z-profiles (common ``z_`` features) in B is below this fraction of that in A.

    Raises
    ------
    InputDataError
        A path is not a segment output, or the runs share no customer.
    UsageError
        Thresholds out of range, or ``out`` would replace an input.
    """
    _check_thresholds(split_share, merge_share, converge_ratio)
    first, second = _read_run(run_a), _read_run(run_b)
    if out is not None:
        _check_out(Path(out), (first, second))
    positions = pc.fill_null(pc.index_in(second.keys, value_set=first.keys), -1).to_numpy()
    in_both = positions >= 0
    codes_a, codes_b = first.codes[positions[in_both]], second.codes[in_both]
    if not len(codes_a):
        raise InputDataError(f"{first.directory} and {second.directory} share no customer_key; nothing to compare")
    k_a, k_b = len(first.names), len(second.names)
    counts = np.bincount(codes_a * k_b + codes_b, minlength=k_a * k_b).reshape(k_a, k_b)
    matched = _match(counts)
    match_of = np.full(k_a, -1)
    for i, j, _ in matched:
        match_of[i] = j
    moved = match_of[codes_a] != codes_b
    alone_a = [i for i in range(k_a) if match_of[i] < 0]
    alone_b = sorted(set(range(k_b)) - {j for _, j, _ in matched})
    drift, psi = _drift(first, second, matched, alone_a, alone_b)
    comparison = SegmentComparison(
        run_a=first.directory, run_b=second.directory, customers_a=len(first.codes), customers_b=len(second.codes),
        common=int(in_both.sum()), adjusted_rand=adjusted_rand_from_counts(counts),
        matches=[
            {**_named(first, i, "a"), **_named(second, j, "b"), "jaccard": round(jaccard, 4), "shared": int(counts[i, j])}
            for i, j, jaccard in matched
        ],
        unmatched_a=[_named(first, i) for i in alone_a], unmatched_b=[_named(second, j) for j in alone_b],
        transitions=pd.DataFrame(counts, index=pd.Index(first.names, name="a"), columns=pd.Index(second.names, name="b")),
        segments_a=[_named(first, i) for i in range(k_a)], segments_b=[_named(second, j) for j in range(k_b)],
        moves=_moves(counts, match_of, first, second), movers=int(moved.sum()), drift=drift, psi=psi,
        suggestions=_suggest(counts, first, second, matched, split_share, merge_share, converge_ratio),
        thresholds={"split_share": split_share, "merge_share": merge_share, "converge_ratio": converge_ratio},
    )  # fmt: skip
    if out is not None:
        out = Path(out)
        comparison.out_dir, comparison.movers_path = out, CompareLayout(out).movers
        with staged_output(out) as staging_dir:
            staging = CompareLayout(staging_dir)
            rows_b = np.flatnonzero(in_both)[moved]
            pq.write_table(_movers_table(rows_b, codes_a[moved], first, second), staging.movers)
            staging.summary.write_text(json.dumps(comparison.to_dict(), indent=2) + "\n")
    return comparison


def _movers_table(rows_b: np.ndarray, codes_a: np.ndarray, first: _Run, second: _Run) -> pa.Table:
    """The movers (rows of B's assignments) with both segments; names as dictionary columns,
    a handful of strings however many movers."""
    codes_b = second.codes[rows_b]

    def names(codes, run):
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(run.names))

    return pa.table({
        "customer_key": second.keys.take(pa.array(rows_b)),
        "segment_a": pa.array(first.segments[codes_a].astype(np.int32)),
        "name_a": names(codes_a, first),
        "segment_b": pa.array(second.segments[codes_b].astype(np.int32)),
        "name_b": names(codes_b, second),
    })  # fmt: skip
