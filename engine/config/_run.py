"""The ``[run]`` and ``[inputs.<table>]`` sections, and `RunConfig`, which holds every section."""

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from ._activate import ActivateOptions
from ._features import FeatureOptions
from ._fields import _DERIVED, _INPUT_TABLES, _KEYS, _MINIMUM
from ._ingest import IngestOptions
from ._propensity import PropensityOptions
from ._segments import SegmentOptions
from ._update import UpdateOptions
from ._value import ValueOptions


@dataclass(frozen=True)
class RunSection:
    """The ``[run]`` section: where results go and how the work runs.

    Attributes
    ----------
    output_dir : Path, default ``"run"``
        Absolute; a relative path in the TOML is resolved against the config file's directory.
    backend : {"auto", "cpu", "gpu"}, default "auto"
    seed : int, default 0
        Non-negative; the one seed every stage and worker derives its randomness from.
    as_of : date or None, default None
        The reference ("as of") date of the analysis.
    scheduler : str or None, default None
        Address of an existing Dask scheduler; None starts a local cluster.
    workers : int or None, default None
        Local cluster size (>= 1); None sizes it to the machine.
    previous_run : Path or None, default None
        An earlier run directory (relative paths resolve like ``output_dir``): ``segscale run``
        then compares this run's segments with its (transitions, movers, drift) and the
        report shows them.
    memory_limit : str or None, default None
        Memory limit of each local worker ("4GB", "6GiB"); workers spill past 60% of it and
        pause at 80%. None shares 85% of the machine's (or container's) memory between them.
    stall_minutes : float, default 10
        A stage whose tasks wait with none running (no workers, every worker paused for
        memory) for this long fails with the cause; 0 waits for ever.
    """

    output_dir: Path = Path("run")
    backend: Literal["auto", "cpu", "gpu"] = "auto"
    seed: int = field(default=0, metadata={_MINIMUM: 0})
    as_of: date | None = None
    scheduler: str | None = None
    workers: int | None = field(default=None, metadata={_MINIMUM: 1})
    previous_run: Path | None = None
    memory_limit: str | None = None
    stall_minutes: float = field(default=10.0, metadata={_MINIMUM: 0})


@dataclass(frozen=True)
class InputSpec:
    """One ``[inputs.<table>]`` section: where a canonical table comes from.

    Attributes
    ----------
    table : str
        The canonical table name (a key of `engine.contract.TABLES`), from the section name.
    path : str
        Absolute local path (file or directory), or a URL such as ``s3://bucket/x`` unchanged.
    format : {"parquet", "csv"}
        Never None once parsed: inferred from `path` when the TOML leaves it out.
    timestamp_format : str or None, default None
        ``strptime`` format of the timestamp columns; None parses ISO 8601.
    timezone : str, default "UTC"
        IANA time zone of the source's timestamps.
    columns : dict of str to str
        Canonical column -> source column, for every canonical column of the table that is
        not derived; columns the TOML does not map map to themselves.
    derive : dict of str to str
        Canonical column -> expression over source columns: one column, or the product of
        two (``"Quantity * UnitPrice"``).
    return_prefix : str or None, default None
        Transactions: a line whose order id starts with this is a return (a negative
        quantity marks one too).
    encoding : str, default "utf-8"
        CSV: the text encoding of the file (``latin-1``, ``cp1252`` ...). A byte that is not
        text in it is an error naming the byte offset and line, before any work.
    duplicates : {"exact", "none"}, default "exact"
        "exact" drops a row identical to an earlier one in every source column; "none" keeps
        every row, for sources where identical lines are real repeats (purchase lines without
        an order id: the same item bought twice on one day).
    """

    table: str = field(metadata={_DERIVED: True})
    path: str
    format: Literal["parquet", "csv"] | None = None
    timestamp_format: str | None = None
    timezone: str = "UTC"
    columns: dict[str, str] = field(default_factory=dict)
    derive: dict[str, str] = field(default_factory=dict)
    return_prefix: str | None = None
    encoding: str = "utf-8"
    duplicates: Literal["exact", "none"] = "exact"

    def source_column(self, canonical: str) -> str:
        """Return the source column name that holds canonical column `canonical`."""
        try:
            return self.columns[canonical]
        except KeyError:
            raise KeyError(f"{canonical!r} is not a column of table {self.table!r}") from None


@dataclass(frozen=True)
class RunConfig:
    """A parsed run config.

    Attributes
    ----------
    source : Path
        Absolute path of the config file.
    run : RunSection
    inputs : dict of str to InputSpec
        Keyed by canonical table name; always holds the tables the contract requires.
    ingest : IngestOptions
    features : FeatureOptions
    segments : SegmentOptions
    propensity : PropensityOptions
    value : ValueOptions
    activate : ActivateOptions
    update : UpdateOptions
    """

    source: Path = field(metadata={_DERIVED: True})
    # No default needed: the parser reads an absent section as an empty table.
    run: RunSection
    inputs: dict[str, InputSpec] = field(metadata={_KEYS: _INPUT_TABLES})
    ingest: IngestOptions
    features: FeatureOptions
    segments: SegmentOptions
    propensity: PropensityOptions
    value: ValueOptions
    activate: ActivateOptions
    update: UpdateOptions
