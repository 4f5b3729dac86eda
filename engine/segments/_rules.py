"""Rules a marketer can type into a CRM: one short rule per segment, in plain units.

k-means places customers by distance in a scaled space nobody can read. For every segment,
one against the rest, a search over the raw features (days, counts, money) finds the
conjunction of at most three conditions ("3 or more orders in the last 90 days and last
bought less than 30 days ago") that best matches the segment by F1, and reports how well:
recall (the share of the segment the rule catches) and precision (the share of those caught
who belong to it). A segment no short rule isolates still gets its best rule, marked weak.

Each threshold is the roundest number (:func:`_roundest`) among those that split the
customers nearly as well as the best one, and every figure reported is measured by applying
the rule as written, so the rules as written, as saved and as applied to new customers are
the same rules.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from ..backend import to_host
from ..exceptions import UsageError
from ._prepare import Preparation

__all__ = ["FEATURE_PHRASES", "MAX_CONDITIONS", "WEAK_BELOW", "Phrase", "SegmentRules"]

# A CRM filter a person types and checks by eye stays readable up to three conditions.
MAX_CONDITIONS = 3
# A rule is weak when it misses most of its segment or most of those it catches are others.
WEAK_BELOW = 0.5
# A threshold may move to a rounder number while the F1 of its condition stays within this of
# the best threshold's: "spent 400 or more" over "spent 417.35 or more", for at most half a point.
_ROUNDING_SLACK = 0.005
# Partial rules kept at each step of the search. Measured on 50,000 customers x 24 features:
# mean F1 0.786 with 3 against 0.781 greedy (12 segments), 0.95 s against 0.6 s.
_BEAM = 3
# A condition that adds less F1 than this is one more thing to type for nothing.
_MIN_GAIN = 0.01
_EVERY_CUSTOMER = "every customer"


class Phrase(NamedTuple):
    """How a condition on one feature reads; ``{}`` is where the threshold goes.

    ``at_least`` reads ``feature >= value``, ``below`` reads ``feature < value``, ``none``
    (counts only) reads ``feature < 1``, and ``percent`` writes a share as a percentage.
    """

    at_least: str
    below: str
    none: str | None = None
    percent: bool = False


def _count(noun: str) -> Phrase:
    return Phrase(f"{{}} or more {noun}", f"fewer than {{}} {noun}", f"no {noun}")


def _share(of_what: str) -> Phrase:
    return Phrase(f"{{}} or more {of_what}", f"less than {{}} {of_what}", percent=True)


def _days_ago(event: str) -> Phrase:
    return Phrase(f"{event} {{}} or more days ago", f"{event} less than {{}} days ago")


def _spent(when: str) -> Phrase:
    return Phrase(f"spent {{}} or more {when}", f"spent less than {{}} {when}")


def _trend(what: str, days: str) -> Phrase:
    scale = f"last {days} days against the {days} before, -1 stopped, +1 new"
    return Phrase(f"{what} trend of {{}} or more ({scale})", f"{what} trend below {{}} ({scale})")


# The default segment features in the units of docs/features.md. Money is in the store's
# currency, written without a symbol because the features do not say which currency it is.
FEATURE_PHRASES: dict[str, Phrase] = {
    "recency_days": _days_ago("last bought"),
    "frequency": _count("orders in all"),
    "monetary_total": _spent("in all, net of returns"),
    "aov": Phrase("average order of {} or more", "average order under {}"),
    "tenure_days": _days_ago("first bought"),
    "orders_90d": _count("orders in the last 90 days"),
    "spend_90d": _spent("in the last 90 days"),
    "orders_365d": _count("orders in the last year"),
    "spend_365d": _spent("in the last year"),
    "gap_median_days": Phrase("typically {} or more days between orders", "typically less than {} days between orders"),
    "spend_trend_90d": _trend("spend", "90"),
    "order_slope_12m": Phrase(
        "monthly orders changing by {} or more a month over the last year",
        "monthly orders changing by less than {} a month over the last year",
    ),
    "return_rate": _share("of items returned"),
    "discount_share": _share("of items bought on discount"),
    "distinct_categories": Phrase("bought from {} or more categories", "bought from fewer than {} categories"),
    "view_count": _count("product views"),
    "add_to_cart_count": _count("add-to-carts"),
    "email_open_count": _count("emails opened"),
    "email_click_count": _count("email clicks"),
    "support_ticket_count": _count("support tickets"),
    "cart_to_purchase": Phrase("{} or more orders per add-to-cart", "fewer than {} orders per add-to-cart"),
    "email_engagement_rate": Phrase("{} or more clicks per email opened", "fewer than {} clicks per email opened"),
    "days_since_last_event": _days_ago("last seen"),
    "active_weeks": Phrase("active in {} or more of the last 52 weeks", "active in fewer than {} of the last 52 weeks"),
}


def _words(name: str) -> str:
    return name.replace("_", " ")


def _window(days: str) -> str:
    return "the last year" if days == "365" else f"the last {days} days"


# Other columns by the families docs/features.md defines, each pattern's groups in its phrase.
_FAMILY_PHRASES = (
    (r"orders_(\d+)d", lambda days: _count(f"orders in {_window(days)}")),
    (r"spend_(\d+)d", lambda days: _spent(f"in {_window(days)}")),
    (r"(\w+)_trend_(\d+)d", lambda what, days: _trend(_words(what), days)),
    (r"days_since_(\w+)", lambda event: _days_ago(f"last {_words(event)}")),
    (r"(\w+)_count", lambda event: _count(f"{_words(event)} events")),
    (r"category_share_(\w+)", lambda name: _share(f"of spend on {_words(name)}")),
    (r"channel_share_(\w+)", lambda name: _share(f"of spend through {_words(name)}")),
)


def _phrase_for(column: str) -> Phrase:
    """The phrase of a column: its entry in :data:`FEATURE_PHRASES`, else that of its feature
    family (``orders_<w>d``, ``days_since_<event>``, ``category_share_<name>``, ...), else its
    name with spaces for underscores ("r score of 4 or more")."""
    if column in FEATURE_PHRASES:
        return FEATURE_PHRASES[column]
    for pattern, make in _FAMILY_PHRASES:
        match = re.fullmatch(pattern, column)
        if match:
            return make(*match.groups())
    return Phrase(f"{_words(column)} of {{}} or more", f"{_words(column)} below {{}}")


def _roundest(low: float, high: float) -> float:
    """The number with fewest significant digits in (low, high], trying steps of 10^p and
    5 x 10^(p-1) from coarse to fine."""
    p = math.floor(math.log10(max(abs(low), abs(high), 1e-12))) + 1
    while 10.0**p > (high - low) * 1e-6:
        for step, digits in ((10.0**p, -p), (5 * 10.0 ** (p - 1), 1 - p)):
            candidate = round(math.floor(high / step) * step, max(0, digits)) + 0.0
            if low < candidate <= high:
                return candidate
        p -= 1
    return high


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.10g}"


def _plain(value: float) -> int | float:
    """A threshold as JSON writes it best: 3 rather than 3.0."""
    return int(value) if float(value).is_integer() else float(value)


def _condition_text(feature: str, op: str, value: float) -> str:
    """A condition in plain words, e.g. ``("orders_90d", ">=", 3)`` reads "3 or more orders
    in the last 90 days"."""
    phrase = _phrase_for(feature)
    if op == "<" and value == 1 and phrase.none:
        return phrase.none
    shown = f"{_number(round(value * 100, 10))}%" if phrase.percent else _number(value)
    return (phrase.at_least if op == ">=" else phrase.below).format(shown)


def _written(feature: str, op: str, threshold: float) -> dict:
    """A condition as :meth:`SegmentRules.describe` gives it: machine form and plain words."""
    value = _plain(threshold)
    return {"feature": feature, "op": op, "value": value, "text": _condition_text(feature, op, value)}


def _filled(frame, columns, fill) -> np.ndarray:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise UsageError(f"feature table lacks the rule columns {', '.join(absent)}")
    values = to_host(frame[list(columns)])
    raw = values.to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isnan(raw), np.asarray(fill, dtype="float64"), raw)


class _SplitTable:
    """Every distinct value of every column, numbered one after another, so that counting the
    customers a rule covers per value (one ``bincount``) gives the F1 of every threshold of
    every column at once: 50,000 customers x 25 columns in about 10 ms."""

    def __init__(self, values: np.ndarray):
        distinct, codes, counts = zip(
            *(np.unique(column, return_inverse=True, return_counts=True) for column in values.T)
        )
        self.distinct = list(distinct)
        sizes = np.array([len(d) for d in distinct])
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.codes = np.stack(codes, axis=1) + self.starts
        self.customers_per_value = np.concatenate(counts)
        # Per value, where its column's numbers start; the last value of a column splits nothing.
        self.column_start = np.repeat(self.starts, sizes)
        self.column_end = self.column_start + np.repeat(sizes, sizes) - 1

    def f1(self, covered: np.ndarray, members: np.ndarray, min_cover: int) -> dict[str, np.ndarray]:
        """Per op, the F1 against ``members`` of ``covered`` narrowed by a threshold just
        above each value (``<``: up to the value; ``>=``: above it); -1 where that leaves
        fewer than ``min_cover`` customers or no threshold lies above the value."""
        size = len(self.customers_per_value)
        # Every rule's first condition starts from everyone: those counts are made once.
        if covered.all():
            per_value = self.customers_per_value
        else:
            per_value = np.bincount(self.codes[covered].ravel(), minlength=size)
        caught = covered & members
        per_value_caught = np.bincount(self.codes[caught].ravel(), minlength=size)
        below = self._running(per_value)
        below_caught = self._running(per_value_caught)
        n_members, splits = int(members.sum()), np.arange(len(per_value)) < self.column_end
        scores = {}
        for op, kept, kept_caught in (
            ("<", below, below_caught),
            (">=", int(covered.sum()) - below, int(caught.sum()) - below_caught),
        ):
            scores[op] = np.where(splits & (kept >= min_cover), 2 * kept_caught / (kept + n_members), -1.0)
        return scores

    def _running(self, per_value: np.ndarray) -> np.ndarray:
        """Counts at or below each value, restarting at each column."""
        total = np.cumsum(per_value)
        return total - total[self.column_start] + per_value[self.column_start]

    def span(self, column: int) -> slice:
        return slice(self.starts[column], self.starts[column] + len(self.distinct[column]))


class _Partial(NamedTuple):
    """A rule under construction: conditions as (column, op, threshold) and whom it covers."""

    f1: float
    covered: np.ndarray
    conditions: tuple[tuple[int, str, float], ...]


def _covers(values: np.ndarray, column: int, op: str, threshold: float) -> np.ndarray:
    return values[:, column] >= threshold if op == ">=" else values[:, column] < threshold


def _f1(covered: np.ndarray, members: np.ndarray) -> float:
    return 2 * int((covered & members).sum()) / (int(covered.sum()) + int(members.sum()))


def _round_threshold(distinct: np.ndarray, scores: np.ndarray) -> float:
    """The roundest threshold among those around the best whose F1 (``scores``, one per
    value of the column) is within ``_ROUNDING_SLACK`` of it."""
    best = int(np.argmax(scores))
    floor = scores[best] - _ROUNDING_SLACK
    low = high = best
    while low > 0 and scores[low - 1] >= floor:
        low -= 1
    while scores[high + 1] >= floor:  # the last value of a column scores -1: it stops here
        high += 1
    return _roundest(float(distinct[low]), float(distinct[high + 1]))


def _extensions(table, values, partial, members, min_cover) -> list[_Partial]:
    """``partial`` with one more condition, on each of the columns whose best threshold
    raises its F1 most (at most ``_BEAM`` per op); a column and op it already uses are out."""
    used = {(column, op) for column, op, _ in partial.conditions}
    grown = []
    for op, scores in table.f1(partial.covered, members, min_cover).items():
        best_per_column = np.maximum.reduceat(scores, table.starts)
        for column in np.argsort(-best_per_column, kind="stable")[: _BEAM + len(used)]:
            if (column, op) in used or best_per_column[column] < partial.f1 + _MIN_GAIN:
                continue
            threshold = _round_threshold(table.distinct[column], scores[table.span(column)])
            covered = partial.covered & _covers(values, column, op, threshold)
            f1 = _f1(covered, members)
            if f1 >= partial.f1 + _MIN_GAIN:
                grown.append(_Partial(f1, covered, (*partial.conditions, (int(column), op, threshold))))
    return grown


def _diverse_best(partials: list[_Partial]) -> list[_Partial]:
    """The ``_BEAM`` best partial rules, one per set of columns and ops: the same conditions
    found in another order, or with a shade of threshold, would fill the beam with one rule."""
    kept, seen = [], set()
    for partial in sorted(partials, key=lambda p: -p.f1):
        key = frozenset((column, op) for column, op, _ in partial.conditions)
        if key not in seen:
            seen.add(key)
            kept.append(partial)
    return kept[:_BEAM]


def _best_rule(table, values, members, max_conditions, min_cover) -> tuple[tuple[int, str, float], ...]:
    """The conjunction of at most ``max_conditions`` conditions with the highest F1 against
    ``members``, by beam search, adding one condition at a time; fewer when one more does not
    help. At least one condition whenever any column splits the customers."""
    # F1 -1 for the empty rule: "every customer" is no rule to type into a CRM.
    beam, best = [_Partial(-1.0, np.ones(len(values), dtype=bool), ())], None
    for _ in range(max_conditions):
        beam = _diverse_best(
            [child for partial in beam for child in _extensions(table, values, partial, members, min_cover)]
        )
        if not beam:
            break
        if best is None or beam[0].f1 > best.f1:
            best = beam[0]
    return best.conditions if best else ()


class SegmentRules:
    """One rule per segment, of at most three conditions on raw features, found one against
    the rest, with precision and recall of the rule against its segment.

    Parameters
    ----------
    features : sequence of str
        Raw feature columns the rules may use (at least 2).
    max_depth : int, default 3
        At most this many conditions per rule, and never more than 3.
    min_leaf_share : float, default 0.01
        Each condition keeps at least this share of the fitting customers under the rule.
    seed : int, default 0
        Accepted for the estimators' common signature; the search draws nothing at random.

    Attributes (after ``fit``)
    ----------
    columns_ : list of str
    fill_ : list of float
        Value put in place of a missing one per column, chosen by meaning as
        :class:`Preparation` does (the sample maximum for "days since", 0 for trends, else
        the median), so a customer who never bought is not "last bought less than 30 days ago".
    segments_ : list of int
        The segments seen in the labels.
    fidelity_ : float
        Share of the fitting customers :meth:`predict` puts in their own segment.
    report_ : list of dict
        Per segment, as :meth:`describe` returns it; the conditions there are the rules.
    """

    def __init__(self, features, max_depth: int = 3, min_leaf_share: float = 0.01, seed: int = 0):
        self.features = features
        self.max_depth = max_depth
        self.min_leaf_share = min_leaf_share
        self.seed = seed

    def fit(self, frame, segments) -> SegmentRules:
        """Find each segment's rule on a host sample's raw ``features`` against its
        ``segments`` (one integer label per row)."""
        if not 1 <= self.max_depth <= MAX_CONDITIONS:
            raise UsageError(
                f"[segments] rules_depth must be 1 to {MAX_CONDITIONS} conditions (a rule to type into a CRM), "
                f"got {self.max_depth}"
            )
        if not 0 < self.min_leaf_share < 0.5:
            raise UsageError(f"min_leaf_share must be between 0 and 0.5, got {self.min_leaf_share}")
        labels = np.asarray(segments)
        if labels.shape != (len(frame),) or not np.issubdtype(labels.dtype, np.integer):
            raise UsageError(
                f"segments must be one integer label per row ({len(frame)}), got {labels.dtype} {labels.shape}"
            )
        preparation = Preparation(features=tuple(self.features)).fit(frame)
        self.columns_, self.fill_ = list(preparation.columns_), list(preparation.fill_)
        values = _filled(frame, self.columns_, self.fill_)
        table = _SplitTable(values)
        max_conditions = self.max_depth
        min_cover = max(1, math.ceil(self.min_leaf_share * len(frame)))
        self.segments_ = [int(s) for s in np.unique(labels)]
        self.report_ = []
        for segment in self.segments_:
            members = labels == segment
            conditions = _best_rule(table, values, members, max_conditions, min_cover)
            self.report_.append(self._entry(segment, values, members, conditions))
        self.fidelity_ = float((self._placed(values) == labels).mean())
        return self

    def _entry(self, segment, values, members, conditions) -> dict:
        """A segment's rule and how it does, measured by applying the rule as written."""
        written = [_written(self.columns_[column], op, threshold) for column, op, threshold in conditions]
        caught = self._matches(values, written)
        hits = int((caught & members).sum())
        recall, precision = hits / int(members.sum()), hits / int(caught.sum())
        weak = recall < WEAK_BELOW or precision < WEAK_BELOW
        note = None
        if weak:
            note = f"weak rule: catches {recall:.0%} of the segment, {precision:.0%} of those caught belong to it"
        return {
            "segment": segment,
            "customers": int(members.sum()),
            "rule": " and ".join(c["text"] for c in written) or _EVERY_CUSTOMER,
            "conditions": written,
            "recall": recall,
            "precision": precision,
            "strength": "weak" if weak else "strong",
            "note": note,
        }

    def _matches(self, values: np.ndarray, conditions: list[dict]) -> np.ndarray:
        matched = np.ones(len(values), dtype=bool)
        for condition in conditions:
            column = self.columns_.index(condition["feature"])
            matched &= _covers(values, column, condition["op"], condition["value"])
        return matched

    def _placed(self, values: np.ndarray) -> np.ndarray:
        placed = np.full(len(values), -1, dtype=np.int32)
        # The most precise rule first: where rules overlap, it is the likelier segment.
        for entry in sorted(self.report_, key=lambda e: (-e["precision"], e["segment"])):
            placed[(placed < 0) & self._matches(values, entry["conditions"])] = entry["segment"]
        return placed

    def predict(self, frame) -> np.ndarray:
        """The segment of the rule each row of a pandas (or cuDF) frame matches, int32: of
        several, the one whose rule has the highest precision (then the lowest segment); -1
        where none matches."""
        if not hasattr(self, "report_"):
            raise RuntimeError("SegmentRules.predict before fit")
        return self._placed(_filled(frame, self.columns_, self.fill_))

    def describe(self) -> list[dict]:
        """Per segment, on the fitting sample.

        Returns
        -------
        list of dict
            ``segment``; ``customers``; ``rule``, the conditions in plain words joined by
            " and " ("every customer" only when no column splits the sample); ``conditions``,
            each a dict of ``feature``, ``op`` (">=" or "<"), ``value`` and ``text``;
            ``recall`` (share of the segment the rule catches); ``precision`` (share of those
            caught in the segment); ``strength``, "weak" when recall or precision is below
            :data:`WEAK_BELOW`, else "strong"; and ``note``, saying what a weak rule catches,
            else None.
        """
        if not hasattr(self, "report_"):
            raise RuntimeError("SegmentRules.describe before fit")
        return [{**entry, "conditions": [dict(c) for c in entry["conditions"]]} for entry in self.report_]

    def to_dict(self) -> dict:
        """Parameters and learned rules as plain JSON values (no pickles)."""
        return {
            "features": list(self.features),
            "max_depth": self.max_depth,
            "min_leaf_share": self.min_leaf_share,
            "seed": self.seed,
            "columns_": self.columns_,
            "fill_": self.fill_,
            "segments_": self.segments_,
            "fidelity_": self.fidelity_,
            "report_": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SegmentRules:
        """Rules saved by :meth:`to_dict`, ready to ``predict`` and ``describe``."""
        rules = cls(tuple(data["features"]), data["max_depth"], data["min_leaf_share"], data["seed"])
        for name in ("columns_", "fill_", "segments_", "fidelity_", "report_"):
            setattr(rules, name, data[name])
        return rules
