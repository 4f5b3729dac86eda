"""Where a run keeps what it writes: every path of a run directory, named here and nowhere else.

A run directory holds one directory per stage output, each published whole: the stage writes
into a staging directory beside it (`staging_path`) and renames it into place. A staging
directory is laid out like the output it becomes, so the same layout object names the files
of both: ``SegmentsLayout(staging).profiles`` while writing, ``run.segments.profiles`` after.

Row data is split into numbered parts (`part_name`): part N of every per-customer output
holds the same customers, those of the store's partition N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CompareLayout",
    "FeaturesLayout",
    "IngestLayout",
    "ModelLayout",
    "RunLayout",
    "ScoresLayout",
    "SegmentsLayout",
    "StoreLayout",
    "UpdateLayout",
    "ValueLayout",
    "part_name",
    "part_files",
    "staging_path",
    "staging_pattern",
]


def part_name(number: int) -> str:
    """The file name of part ``number`` of a partitioned output."""
    return f"part-{number:05d}.parquet"


def part_files(directory: str | os.PathLike) -> list[Path]:
    """The parts in ``directory``, in order; none when it does not exist."""
    directory = Path(directory)
    return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []


def staging_path(out: Path, pid: int) -> Path:
    """The staging directory process ``pid`` fills before publishing it as ``out``."""
    return out.with_name(f".{out.name}-staging-{pid}")


def staging_pattern(pid: int) -> str:
    """A glob for every staging directory of process ``pid``."""
    return f".*-staging-{pid}"


@dataclass(frozen=True)
class _Layout:
    """A directory, and the names of what it holds."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def part(self, number: int) -> Path:
        return self.root / part_name(number)


class StoreLayout(_Layout):
    """The customer-clustered store: one directory of parts per table, and its metadata."""

    @property
    def meta(self) -> Path:
        return self.root / "_store.json"

    def table(self, name: str) -> Path:
        return self.root / name

    def table_part(self, name: str, number: int) -> Path:
        return self.root / name / part_name(number)


class IngestLayout(_Layout):
    """Ingest's output: the store, the sensitive columns kept apart from it, the quarantine,
    the private identity mapping, the merged accounts (which ``segscale update`` keys new rows
    with) and the accounting; ``buckets`` and ``identity_work`` live only while it runs."""

    @property
    def store(self) -> StoreLayout:
        return StoreLayout(self.root / "store")

    @property
    def sensitive(self) -> StoreLayout:
        return StoreLayout(self.root / "sensitive")

    def quarantine(self, table: str) -> Path:
        return self.root / "quarantine" / table

    @property
    def identity_report(self) -> Path:
        return self.root / "identity" / "report.json"

    @property
    def identity_mapping(self) -> Path:
        return self.root / "identity" / "mapping"

    @property
    def summary(self) -> Path:
        return self.root / "ingest.json"

    def buckets(self, table: str) -> Path:
        return self.root / "buckets" / table

    @property
    def merged_accounts(self) -> Path:
        return self.root / "merged-accounts"

    @property
    def identity_work(self) -> Path:
        return self.root / "identity-work"

    @property
    def transient(self) -> tuple[Path, ...]:
        return self.root / "buckets", self.identity_work


# Where a table of parts keeps a drift sample (``engine.measure``): in a directory of its own,
# so that a glob of the table's *.parquet finds its parts only.
KEPT_SAMPLE_FILE = "_drift/sample.parquet"


class FeaturesLayout(_Layout):
    """The feature table: one part per store partition, and its metadata."""

    @property
    def meta(self) -> Path:
        return self.root / "_features.json"

    @property
    def event_summaries(self) -> Path:
        """Each part's event summary (``features._events``), for the next as-of to start from."""
        return self.root / "_events"

    @property
    def drift_sample(self) -> Path:
        """The even sample of the numeric columns that drift reads instead of every part."""
        return self.root / KEPT_SAMPLE_FILE


class SegmentsLayout(_Layout):
    """The segments stage's output."""

    @property
    def meta(self) -> Path:
        return self.root / "_segments.json"

    @property
    def assignments(self) -> Path:
        return self.root / "assignments"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles.json"

    @property
    def profile_table(self) -> Path:
        return self.root / "profiles.parquet"

    @property
    def model(self) -> Path:
        return self.root / "model.json"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def hierarchy(self) -> Path:
        return self.root / "hierarchy.parquet"


class ModelLayout(_Layout):
    """A saved propensity model (the fitted estimator and the document describing it), its
    test metrics and its test-split scores."""

    @property
    def estimator(self) -> Path:
        return self.root / "model.joblib"

    @property
    def leaf_tables(self) -> Path:
        """A boosted estimator's leaf tables, which score without scikit-learn (present only for one)."""
        return self.root / "leaf_tables.pickle"

    @property
    def model(self) -> Path:
        return self.root / "model.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def test_scores(self) -> Path:
        return self.root / "test_scores.parquet"


class ScoresLayout(_Layout):
    """Propensity scores: one part per feature part, and their metadata."""

    @property
    def meta(self) -> Path:
        return self.root / "_scores.json"


class ValueLayout(_Layout):
    """The value stage's output: the fitted models and holdout (``summary``), per-customer parts."""

    @property
    def summary(self) -> Path:
        return self.root / "value.json"

    @property
    def customers(self) -> Path:
        return self.root / "customers"


class ActivateLayout(_Layout):
    """The activate stage's output: each audience as Parquet parts and one CSV, the next best
    actions, and ``summary`` (``activation.json``)."""

    @property
    def summary(self) -> Path:
        return self.root / "activation.json"

    @property
    def audiences(self) -> Path:
        return self.root / "audiences"

    def audience(self, name: str) -> Path:
        """The directory of audience ``name``'s parts."""
        return self.audiences / name

    def audience_csv(self, name: str) -> Path:
        return self.audiences / f"{name}.csv"

    @property
    def next_best_action(self) -> Path:
        return self.root / "next_best_action"


class CompareLayout(_Layout):
    """A comparison of two segment runs."""

    @property
    def summary(self) -> Path:
        return self.root / "comparison.json"

    @property
    def movers(self) -> Path:
        return self.root / "movers.parquet"


class UpdateLayout(_Layout):
    """One ``segscale update`` of a run: its progress, the store files it staged and the
    journal that commits them (``engine.ingest._append``), the quarantine of its new rows,
    what the outputs were before it, and the deltas. Under it, ``store/``, ``identity/`` and
    ``buckets/`` are ingest's own layout, live only until the commit."""

    @property
    def ingest(self) -> IngestLayout:
        return IngestLayout(self.root)

    @property
    def progress(self) -> Path:
        return self.root / "progress.json"

    @property
    def summary(self) -> Path:
        return self.root / "update.json"

    @property
    def before(self) -> Path:
        return self.root / "before"

    @property
    def customers_with_rows(self) -> Path:
        """The keys of the customers the new rows belong to, a file per table and partition."""
        return self.root / "customers-with-rows"

    @property
    def moves(self) -> Path:
        """Customers merged into another by the update's identity rows: ``old_key``, ``new_key``."""
        return self.root / "moves.parquet"

    @property
    def moved(self) -> Path:
        """Stored rows of merged customers, re-keyed, a directory per table."""
        return self.root / "moved"

    @property
    def value_summaries(self) -> Path:
        """Each partition's value summaries at the new as-of, made from the feature stage's read
        of its transactions for the value step (removed once it has scored them)."""
        return self.root / "value-summaries"

    @property
    def deltas(self) -> Path:
        return self.root / "deltas"

    @property
    def deltas_csv(self) -> Path:
        return self.root / "deltas.csv"


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run directory."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock(self) -> Path:
        return self.root / ".segscale.lock"

    def record(self, stage: str) -> Path:
        """Where a finished stage records what it ran with (``engine.pipeline``)."""
        return self.root / "_stages" / f"{stage}.json"

    def stage_dir(self, stage: str) -> Path:
        """The directory every output of ``stage`` is under."""
        return self.root / stage

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def report_images(self) -> Path:
        return self.root / "report"

    @property
    def ingest(self) -> IngestLayout:
        return IngestLayout(self.stage_dir("ingest"))

    @property
    def store(self) -> StoreLayout:
        return self.ingest.store

    @property
    def features(self) -> FeaturesLayout:
        return FeaturesLayout(self.stage_dir("features"))

    @property
    def segments(self) -> SegmentsLayout:
        return SegmentsLayout(self.stage_dir("segments"))

    @property
    def propensity_model(self) -> ModelLayout:
        return ModelLayout(self.stage_dir("propensity") / "model")

    @property
    def propensity_scores(self) -> ScoresLayout:
        return ScoresLayout(self.stage_dir("propensity") / "scores")

    @property
    def value(self) -> ValueLayout:
        return ValueLayout(self.stage_dir("value"))

    @property
    def activate(self) -> ActivateLayout:
        return ActivateLayout(self.stage_dir("activate"))

    @property
    def compare(self) -> CompareLayout:
        return CompareLayout(self.stage_dir("compare"))

    def update(self, update_id: str) -> UpdateLayout:
        return UpdateLayout(self.root / "updates" / update_id)
