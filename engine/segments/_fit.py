"""Everything the segment stage learns from its sample, and how it places any customer after.

Fitted once on a sample of customers (fit small): the preparation, k-means with k chosen by
stability and usefulness, the micro-segments and their Ward tree, DBSCAN niches and outliers, bootstrap
stability, and one rule per segment (at most three conditions) in the units people know.
:meth:`SegmentFit.place` then places any frame of customers (score big), on the array
namespace the frame lives in, and :meth:`SegmentFit.to_dict` is the model in CPU form (plain
JSON), so placing works later without a GPU or a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import SegmentOptions
from ._hierarchy import MicroSegments, assign_micro, fit_micro_segments
from ._kmeans import SegmentModel, assign, choose_k
from ._niches import NicheModel, fit_niches, place_niches
from ._prepare import Preparation
from ._rules import SegmentRules
from ._stability import bootstrap_stability

__all__ = ["SegmentFit", "fit_segments"]

# Fewer sample rows per micro-segment than this would make micro centres noise.
_MIN_ROWS_PER_MICRO = 20


@dataclass
class SegmentFit:
    """The fitted segment model; ``micro`` and ``niches`` are None when switched off."""

    preparation: Preparation
    kmeans: SegmentModel
    k_scores: list[dict]
    k_chosen_by: str = "silhouette"
    micro: MicroSegments | None = None
    niches: NicheModel | None = None
    stability: list[dict] = field(default_factory=list)
    rules: SegmentRules | None = None

    def place(self, frame, xp=np) -> dict:
        """Prepare ``frame`` and place every row.

        Returns a dict of arrays in ``xp``: ``segment`` (int32), ``distance`` (float32, to
        the segment centre), ``micro_segment`` (int32, -1 without micro-segments), ``niche``
        (int32, -1 for none) and ``outlier`` (bool).
        """
        prepared = self.preparation.transform(frame, xp)
        segment, distance = assign(prepared, self.kmeans.centres, xp)
        rows = prepared.shape[0]
        placed = {"segment": segment, "distance": distance}
        if self.micro is not None:
            placed["micro_segment"] = assign_micro(prepared, segment, self.micro.centres, self.micro.parent, xp)
        else:
            placed["micro_segment"] = xp.full(rows, -1, dtype=xp.int32)
        if self.niches is not None:
            placed["niche"], placed["outlier"] = place_niches(prepared, self.niches, xp)
        else:
            placed["niche"], placed["outlier"] = xp.full(rows, -1, dtype=xp.int32), xp.zeros(rows, dtype=bool)
        return placed

    def to_dict(self) -> dict:
        return {
            "preparation": self.preparation.to_dict(),
            "kmeans": self.kmeans.to_dict(),
            "k_scores": self.k_scores,
            "k_chosen_by": self.k_chosen_by,
            "micro": self.micro.to_dict() if self.micro else None,
            "niches": self.niches.to_dict() if self.niches else None,
            "stability": self.stability,
            "rules": self.rules.to_dict() if self.rules else None,
        }

    @classmethod
    def from_dict(cls, document: dict) -> SegmentFit:
        return cls(
            preparation=Preparation.from_dict(document["preparation"]),
            kmeans=SegmentModel(**document["kmeans"]),
            k_scores=document["k_scores"],
            k_chosen_by=document.get("k_chosen_by", "silhouette"),
            micro=MicroSegments.from_dict(document["micro"]) if document.get("micro") else None,
            niches=NicheModel.from_dict(document["niches"]) if document.get("niches") else None,
            stability=document.get("stability", []),
            rules=SegmentRules.from_dict(document["rules"]) if document.get("rules") else None,
        )


def fit_segments(sample, options: SegmentOptions, *, seed: int, backend, refit=None) -> tuple[SegmentFit, np.ndarray]:
    """Fit every part of the segment model on a host (pandas) sample of feature rows.

    ``refit(preparation, k)``, when given, returns the k-means model to use instead of the
    sample's, once k is chosen: :func:`build_segments` fits every customer with it. The
    rest of the model is then fitted to those centres.

    Returns the fit and the sample's segments (host int32), from which the sample profile
    and names are made.
    """
    ks = [options.k] if options.k is not None else list(range(options.k_min, options.k_max + 1))
    preparation = Preparation(features=options.features, scaler=options.scaler, pca_components=options.pca_components)
    prepared = preparation.fit(sample).transform(sample)
    fitted_on = backend.xp.asarray(prepared)
    rows = prepared.shape[0]
    refitted = prepared[_even_subset(rows, options.stability_points)]

    def stability(k: int, centres) -> list[dict]:
        labels, _ = assign(refitted, centres)
        return bootstrap_stability(
            refitted, labels, k, resamples=options.stability_resamples, seed=seed,
            backend_name=backend.name, n_init=options.n_init,
        )  # fmt: skip

    measured = options.stability_resamples > 0
    by_stability = measured and options.k_by == "stability" and len(ks) > 1
    choice, kmeans = choose_k(
        fitted_on, ks, seed=seed, backend_name=backend.name, n_init=options.n_init,
        stability=stability if by_stability else None, min_share=options.min_segment_share,
    )  # fmt: skip
    if refit is not None:
        kmeans = refit(preparation, kmeans.k)
    segments, _ = assign(prepared, kmeans.centres)
    chosen_by = "configuration" if options.k is not None else choice.by
    model = SegmentFit(preparation=preparation, kmeans=kmeans, k_scores=choice.scores, k_chosen_by=chosen_by)
    micro_k = min(options.micro_k or 0, rows // _MIN_ROWS_PER_MICRO)
    if micro_k > kmeans.k:
        model.micro = fit_micro_segments(
            fitted_on, segments, kmeans.k, micro_k, seed=seed, backend_name=backend.name, n_init=options.n_init
        )
    if options.niches:
        model.niches = fit_niches(
            fitted_on, eps=options.niche_eps, min_samples=options.niche_min_samples, points=options.niche_points,
            niche_max_share=options.niche_max_share, seed=seed, backend_name=backend.name,
        )  # fmt: skip
    if measured:
        # Measured already while choosing k, unless the centres were refitted on everyone.
        reuse = by_stability and refit is None
        model.stability = choice.stability[kmeans.k] if reuse else stability(kmeans.k, kmeans.centres)
    # Rules read in the units people know (days, orders, money), so they see raw features.
    model.rules = SegmentRules(preparation.columns_, max_depth=options.rules_depth, seed=seed).fit(sample, segments)
    return model, segments


def _even_subset(rows: int, count: int) -> np.ndarray:
    return np.arange(rows) if rows <= count else np.linspace(0, rows - 1, count).astype(np.int64)
