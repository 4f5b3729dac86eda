"""Segment profiles (sizes, value share, means, z-scores), and names and sentences that are
true of them.

Profiles are built from per-partition sums, so every customer counts without bringing any of
them to one place: per segment and feature the count of present values, their sum and sum
of squares. z-scores compare a segment's mean with the population's, in population standard
deviations. Medians come from the fitting sample.

Names are made of the words of a controlled vocabulary (``NAME_WORDS``), each used only where
its conditions on the profile hold; the sentence beside a name says the same in days, money
and counts.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..backend import to_array, to_host_array

__all__ = ["NAME_WORDS", "name_segments", "partition_sums", "profile_table"]


def partition_sums(frame, segment, columns, k: int, xp=np) -> dict:
    """Per segment: customers, revenue, and per feature present count, sum, sum of squares."""
    values = to_array(frame[list(columns)], "float64", na_value=np.nan)
    present = ~xp.isnan(values)
    filled = xp.where(present, values, 0.0)
    one_hot = (segment[:, None] == xp.arange(k)[None, :]).astype("float64")
    revenue = to_array(frame["monetary_total"], "float64", na_value=0.0) if "monetary_total" in frame.columns else None

    return {
        "customers": to_host_array(one_hot.sum(axis=0)),
        "revenue": to_host_array(one_hot.T @ revenue) if revenue is not None else np.zeros(k),
        "present": to_host_array(one_hot.T @ present.astype("float64")),
        "sum": to_host_array(one_hot.T @ filled),
        "squares": to_host_array(one_hot.T @ filled**2),
    }


def _add(total: dict | None, part: dict) -> dict:
    return part if total is None else {key: total[key] + part[key] for key in total}


def profile_table(sums: list[dict], columns, sample=None, sample_segments=None) -> pd.DataFrame:
    """One row per segment: size, shares, and ``mean_``/``z_``/``median_`` per feature.

    ``sample`` (pandas, the features of the fitting sample) and ``sample_segments`` give the
    medians; without them the median columns are left out.
    """
    total = None
    for part in sums:
        total = _add(total, part)
    columns = list(columns)
    customers, revenue = total["customers"], total["revenue"]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total["sum"] / total["present"]
        population_mean = total["sum"].sum(axis=0) / total["present"].sum(axis=0)
        population_var = total["squares"].sum(axis=0) / total["present"].sum(axis=0) - population_mean**2
        population_std = np.sqrt(np.maximum(population_var, 0))
        z = (means - population_mean) / np.where(population_std > 0, population_std, np.nan)
    columns_out = {
        "segment": np.arange(len(customers), dtype="int32"),
        "customers": customers.astype("int64"),
        "share_customers": customers / customers.sum(),
        "share_revenue": revenue / revenue.sum() if revenue.sum() else np.full(len(customers), np.nan),
    }
    for j, name in enumerate(columns):
        columns_out[f"mean_{name}"] = means[:, j]
        columns_out[f"z_{name}"] = z[:, j]
    if sample is not None:
        medians = sample[columns].groupby(np.asarray(sample_segments)).median()
        segments = np.arange(len(customers))
        for name in columns:
            columns_out[f"median_{name}"] = medians[name].reindex(segments).to_numpy()
    table = pd.DataFrame(columns_out)
    return table


# Names. Every word of a name is a claim about the segment's profile row, checked before it is
# used: a word's conditions are bounds on a feature's z-score (the segment mean against the
# population, in population standard deviations) or on its typical value (the sample median,
# or the mean without a sample), in the feature's own units. A condition on a feature the
# profile lacks, or holds NaN for, fails: a word that cannot be checked is not used.


@dataclass(frozen=True)
class Condition:
    """``statistic`` of ``feature`` lies in ``[at_least, below)``.

    ``statistic`` is ``"z"`` or ``"typical"``; ``feature`` may be a glob for the columns whose
    name carries a configured window, such as ``spend_trend_*d``.
    """

    statistic: str
    feature: str
    at_least: float = -math.inf
    below: float = math.inf

    def holds(self, row: Mapping) -> bool:
        # NaN compares false, so a missing value fails the condition.
        return self.at_least <= _statistic(row, self.statistic, _feature(row, self.feature)) < self.below


@dataclass(frozen=True)
class NameWord:
    """A word a name may use, the conditions that make it true, and the words it never meets.

    A name holds at most one word per ``slot``, and never two words of which one ``excludes``
    the other (they would contradict each other, or one would repeat the other).
    """

    word: str
    slot: str
    conditions: tuple[Condition, ...] = ()
    excludes: tuple[str, ...] = ()

    def holds(self, row: Mapping) -> bool:
        """Whether every condition holds on ``row``, a profile row as a mapping of column to value."""
        return all(condition.holds(row) for condition in self.conditions)


def _z(feature: str, *, at_least: float = -math.inf, below: float = math.inf) -> Condition:
    return Condition("z", feature, at_least, below)


def _typical(feature: str, *, at_least: float = -math.inf, below: float = math.inf) -> Condition:
    return Condition("typical", feature, at_least, below)


# Words about purchases, which a segment that has not bought cannot earn.
_PURCHASE_WORDS = (
    "lapsed", "lapsing", "new", "loyal", "active", "declining", "growing", "one-time", "frequent", "occasional",
    "discount-driven", "return-prone", "multi-category",
)  # fmt: skip
# In the order words are chosen. Days are the typical customer's. Spend and order counts are
# skewed (a few heavy buyers stretch the standard deviation, so segments above the mean stand
# out less than those below it sink), hence the uneven z bounds. The spend trend is
# (S1 - S0) / (S1 + S0) of the last t days against the t before: below -0.2 the recent spend is
# under two thirds of the earlier, from +0.2 half as much again.
NAME_WORDS = (
    # lifecycle: no order nor event in 52 weeks; last order a year ago or more; 3 to 12 months
    # ago; first order under 6 months ago and shorter tenure than most; at least two orders,
    # more than most, the last under 3 months ago; last order under a month ago.
    NameWord("dormant", "lifecycle", (_typical("active_weeks", below=0.5),)),
    NameWord("lapsed", "lifecycle", (_typical("recency_days", at_least=365),)),
    NameWord("lapsing", "lifecycle", (_typical("recency_days", at_least=90, below=365),)),
    # A customer who has just arrived has few orders: "occasional" would misread that.
    NameWord("new", "lifecycle", (_typical("tenure_days", below=180), _z("tenure_days", below=-0.5)),
             excludes=("occasional",)),
    NameWord("loyal", "lifecycle",
             (_z("frequency", at_least=0.3), _typical("frequency", at_least=2), _typical("recency_days", below=90)),
             excludes=("one-time", "occasional", "frequent")),
    # Lapsing, lapsed and dormant already say the buying stopped; growth would contradict them,
    # and is no news of a new customer, whose every spend is growth.
    NameWord("declining", "trend", (_typical("spend_trend_*d", below=-0.2),),
             excludes=("lapsing", "lapsed", "dormant")),
    NameWord("growing", "trend", (_typical("spend_trend_*d", at_least=0.2),),
             excludes=("lapsing", "lapsed", "dormant", "new")),
    NameWord("one-time", "frequency", (_typical("frequency", at_least=0.5, below=1.5),)),
    NameWord("discount-driven", "discounts",
             (_typical("discount_share", at_least=0.5), _z("discount_share", at_least=0.5))),
    NameWord("return-prone", "returns", (_z("return_rate", at_least=0.8),)),
    NameWord("frequent", "frequency", (_z("frequency", at_least=0.3), _typical("frequency", at_least=2))),
    NameWord("email-engaged", "email", (_z("email_click_count", at_least=0.8),)),
    NameWord("multi-category", "range", (_z("distinct_categories", at_least=0.8),)),
    NameWord("support-heavy", "support", (_z("support_ticket_count", at_least=1.0),)),
    NameWord("occasional", "frequency", (_z("frequency", below=-0.3), _typical("frequency", at_least=1.5))),
    NameWord("active", "lifecycle", (_typical("recency_days", below=30),)),
    # Nouns: every name ends in one, the first that holds; "customers" always does.
    NameWord("prospects", "noun", (_typical("frequency", below=0.5),), excludes=_PURCHASE_WORDS),
    NameWord("browsers", "noun", (_z("view_count", at_least=0.5), _z("frequency", below=0))),
    NameWord("high-spenders", "noun", (_z("monetary_total", at_least=0.4),)),
    NameWord("low-spenders", "noun", (_z("monetary_total", below=-0.3),)),
    NameWord("buyers", "noun", (_typical("frequency", at_least=0.5),)),
    NameWord("customers", "noun"),
)  # fmt: skip
# Word order in a name.
_SLOT_ORDER = ("rank", "trend", "lifecycle", "frequency", "discounts", "returns", "range", "email", "support", "noun")
# A name is its noun and at most two more words, so that one further word, to tell it from a
# namesake, keeps it within four.
_BASE_WORDS = 3


def _number(row: Mapping, column: str) -> float:
    """The column's value as a float; NaN when absent, missing or not finite."""
    try:
        value = float(row.get(column))
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _feature(row: Mapping, pattern: str) -> str:
    """The feature a condition names: ``pattern`` itself, or its first match in the profile."""
    if "*" not in pattern:
        return pattern
    matches = sorted({column.split("_", 1)[1] for column in fnmatch.filter(row, f"*_{pattern}")})
    return matches[0] if matches else pattern


def _typical_value(row: Mapping, feature: str) -> float:
    """The sample median of the segment, or its mean where there is no median."""
    median = _number(row, f"median_{feature}")
    return median if not math.isnan(median) else _number(row, f"mean_{feature}")


def _statistic(row: Mapping, statistic: str, feature: str) -> float:
    return _number(row, f"z_{feature}") if statistic == "z" else _typical_value(row, feature)


def _compatible(word: NameWord, chosen: list[NameWord]) -> bool:
    return all(
        word.slot != other.slot and word.word not in other.excludes and other.word not in word.excludes
        for other in chosen
    )


def _words(row: Mapping) -> tuple[list[NameWord], list[NameWord]]:
    """A segment's name words (its noun and up to two more, in NAME_WORDS order) and the true
    words left that could join them, to tell it apart from a namesake."""
    true = [word for word in NAME_WORDS if word.holds(row)]
    chosen = [next(word for word in true if word.slot == "noun")]
    spare = []
    for word in true:
        if _compatible(word, chosen):
            (chosen if len(chosen) < _BASE_WORDS else spare).append(word)
    return chosen, spare


def _in_order(words: list[NameWord]) -> list[NameWord]:
    return sorted(words, key=lambda word: _SLOT_ORDER.index(word.slot))


def _render(words: list[NameWord]) -> str:
    text = " ".join(word.word for word in _in_order(words))
    return text[:1].upper() + text[1:]


_ORDINALS = (
    "", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _customers(row: Mapping) -> float:
    customers = _number(row, "customers")
    return 0.0 if math.isnan(customers) else customers


def _rank_word(rank: int) -> NameWord:
    """The rank by customers among namesakes, in words: most-common, second-most-common..."""
    if rank == 1:
        return NameWord("most-common", "rank")
    tens, ones = divmod(rank, 10)
    if rank < 20:
        ordinal = _ORDINALS[rank]
    else:  # twentieth, twenty-first...
        ordinal = f"{_TENS[tens]}-{_ORDINALS[ones]}" if ones else f"{_TENS[tens][:-1]}ieth"
    return NameWord(f"{ordinal}-most-common", "rank")


def _unique(rows: list[Mapping], chosen: list[list[NameWord]], spare: list[list[NameWord]]) -> list[list[NameWord]]:
    """Names told apart: of segments sharing a name, the one with most customers keeps it and
    each other one adds its first spare word that makes a name no segment has, preferring words
    untrue of the keeper. Those no word tells apart get their rank by customers among them."""
    names = [list(words) for words in chosen]
    taken = {_render(words) for words in names}
    by_name: dict[str, list[int]] = {}
    for segment, words in enumerate(names):
        by_name.setdefault(_render(words), []).append(segment)
    for name in sorted(name for name, segments in by_name.items() if len(segments) > 1):
        members = sorted(by_name[name], key=lambda segment: (-_customers(rows[segment]), segment))
        keeper = rows[members[0]]
        for segment in members[1:]:
            for word in sorted(spare[segment], key=lambda word: word.holds(keeper)):
                candidate = _render([*names[segment], word])
                if candidate not in taken:
                    names[segment].append(word)
                    taken.add(candidate)
                    break
        alike = [segment for segment in members if _render(names[segment]) == name]
        if len(alike) > 1:
            for rank, segment in enumerate(alike, start=1):
                names[segment].append(_rank_word(rank))
    return names


def _because(row: Mapping, words: list[NameWord]) -> dict:
    """The z-score of each feature a word of the name was earned on, rounded to 2 decimals."""
    because = {}
    for word in _in_order(words):
        for condition in word.conditions:
            feature = _feature(row, condition.feature)
            z = _number(row, f"z_{feature}")
            if not math.isnan(z):
                because[feature] = round(z, 2)
    return because


# The sentence: plain units from the typical (median, else mean) values, a clause left out
# where its figures are missing.


def _whole(value: float) -> int:
    return math.floor(value + 0.5)


def _counted(value: float, singular: str, plural: str | None = None) -> str:
    count = _whole(value)
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _money(value: float) -> str:
    """Two significant figures, thousands separated, no currency: 418.3 -> "420"."""
    return f"{float(f'{value:.2g}'):,.0f}" if value >= 10 else f"{value:.2g}"


def _percent(share: float) -> str:
    return f"{_whole(100 * share)}%"


def _span(days: float) -> tuple[int, str]:
    """A duration in the unit a person would use: days under two weeks, weeks under two
    months, months under a year and a half, then years."""
    if days < 14:
        return _whole(days), "day"
    if days < 63:
        return _whole(days / 7), "week"
    if days < 548:
        return _whole(days / 30.44), "month"
    return _whole(days / 365.25), "year"


def _every(days: float) -> str:
    if days < 1:
        return "more than once a day"
    count, unit = _span(days)
    return f"about every {unit}" if count == 1 else f"about every {count} {unit}s"


def _ago(days: float) -> str:
    if days < 1:
        return "less than a day ago"
    count, unit = _span(days)
    return f"a {unit} ago" if count == 1 else f"{count} {unit}s ago"


def _period(days: int) -> str:
    """A feature window in words: 365 -> "year", 90 -> "3 months", 14 -> "2 weeks"."""
    for length, unit in ((365, "year"), (30, "month"), (7, "week"), (1, "day")):
        if days % length == 0:
            count = days // length
            return unit if count == 1 else f"{count} {unit}s"


def _windows(row: Mapping, prefix: str) -> list[int]:
    """The windows, in days, of the profile's ``<prefix><w>d`` features, shortest first."""
    pattern = re.compile(rf"(?:mean|median|z)_{prefix}(\d+)d")
    return sorted({int(match[1]) for column in row if (match := pattern.fullmatch(column))})


def _trend_phrase(change: float, period: str) -> str:
    """Spend of the last window against the one before, from (S1 - S0) / (S1 + S0), whose
    ratio S1 / S0 is (1 + change) / (1 - change)."""
    if change <= -0.99:
        return f"no spending in the last {period} after some in the {period} before"
    if change >= 0.99:
        return f"spending in the last {period} after none in the {period} before"
    ratio = (1 + change) / (1 - change)
    if ratio >= 2:
        times = "twice" if _whole(ratio) == 2 else f"{_whole(ratio)} times"
        return f"spending about {times} as much in the last {period} as in the {period} before"
    percent = _whole(100 * abs(ratio - 1))
    if percent < 5:
        return f"spending about the same in the last {period} as in the {period} before"
    return f"spending {percent}% {'more' if ratio > 1 else 'less'} in the last {period} than in the {period} before"


def _spend_clauses(row: Mapping, recency: float) -> list[str]:
    clauses = []
    spends = [(window, _typical_value(row, f"spend_{window}d")) for window in _windows(row, "spend_")]
    spends = [(window, spend) for window, spend in spends if not math.isnan(spend)]
    if spends:
        window, spend = spends[-1]
        clauses.append(f"spent {_money(spend) if spend >= 0.5 else 'nothing'} in the last {_period(window)}")
    for days in _windows(row, "spend_trend_")[:1]:
        change = _typical_value(row, f"spend_trend_{days}d")
        # The median trend is over customers who spent in either window: it speaks for the
        # segment only when its typical customer bought in the last one.
        if not math.isnan(change) and (math.isnan(recency) or recency < days):
            clauses.append(_trend_phrase(change, _period(days)))
    return clauses


def _purchase_clauses(row: Mapping) -> list[str]:
    """How often and how lately the typical customer bought, and what it spent."""
    orders, recency = _typical_value(row, "frequency"), _typical_value(row, "recency_days")
    if orders < 0.5:
        last_event = _typical_value(row, "days_since_last_event")
        return ["has not bought yet"] + ([] if math.isnan(last_event) else [f"last active {_ago(last_event)}"])
    clauses = []
    if orders < 1.5:
        clauses.append("bought once" if math.isnan(recency) else f"bought once, {_ago(recency)}")
    else:
        gap = _typical_value(row, "gap_median_days")
        if not math.isnan(gap):
            # Past tense once two of its usual gaps have gone by without an order.
            clauses.append(f"{'bought' if recency > 2 * gap else 'buys'} {_every(gap)}")
        elif not math.isnan(orders):
            clauses.append(f"bought {_counted(orders, 'time')}")
        if not math.isnan(recency):
            clauses.append(f"last bought {_ago(recency)}")
    return clauses + _spend_clauses(row, recency)


# What the sentence says for a word of the name: its feature, the least typical value worth
# saying (a median of zero would deny the word), and the phrase.
_WORD_CLAUSES = {
    "discount-driven": ("discount_share", 0.005, lambda share: f"bought {_percent(share)} of items on discount"),
    "return-prone": ("return_rate", 0.005, lambda share: f"returned {_percent(share)} of items"),
    "email-engaged": ("email_click_count", 0.5, lambda clicks: f"clicked {_counted(clicks, 'email')}"),
    "multi-category": ("distinct_categories", 0.5, lambda n: f"bought from {_counted(n, 'category', 'categories')}"),
    "support-heavy": ("support_ticket_count", 0.5, lambda tickets: f"raised {_counted(tickets, 'support ticket')}"),
    "browsers": ("view_count", 0.5, lambda views: f"viewed products {_counted(views, 'time')}"),
}


def _sentence(row: Mapping, words: list[NameWord]) -> str:
    clauses = _purchase_clauses(row)
    for word in _in_order(words):
        if word.word in _WORD_CLAUSES:
            feature, least, phrase = _WORD_CLAUSES[word.word]
            value = _typical_value(row, feature)
            if value >= least:
                clauses.append(phrase(value))
    if not clauses:
        return "Its purchase and activity figures are missing."
    text = ", ".join(clauses)
    return f"{text[:1].upper()}{text[1:]}."


def name_segments(profile: pd.DataFrame) -> list[dict]:
    """A unique, true, plain name per segment, what earned it, and a sentence in plain units.

    A name is a noun and up to two more words of ``NAME_WORDS``, the first that hold on the
    segment's row (in that order) and go together, written trend first, then lifecycle,
    frequency and behaviour words, noun last: "Declining loyal high-spenders", "Lapsed one-time
    low-spenders". Segments left with one name are told apart by one more true word, and only
    where none is left by their rank by customers ("second-most-common"); a name never has more
    than four words, a digit or a feature code. Deterministic for a given profile.

    Parameters
    ----------
    profile : pandas.DataFrame
        From :func:`profile_table`: one row per segment, with ``segment``, ``customers`` and per
        feature ``z_``, ``mean_`` and (with a sample) ``median_`` columns. Any feature may be
        missing or NaN.

    Returns
    -------
    list of dict
        One per segment, in profile order: ``segment``; ``name``; ``because``, the z-score
        (2 decimals) of each feature a word of the name was earned on; ``sentence``, the
        typical customer in plain units ("Buys about every 3 weeks, last bought 10 days ago,
        spent 420 in the last year, spending 40% less in the last 3 months than in the 3
        months before.").
    """
    rows = profile.to_dict("records")
    words = [_words(row) for row in rows]
    names = _unique(rows, [chosen for chosen, _ in words], [spare for _, spare in words])
    return [
        {
            "segment": int(row["segment"]),
            "name": _render(name),
            "because": _because(row, name),
            "sentence": _sentence(row, name),
        }
        for row, name in zip(rows, names)
    ]
