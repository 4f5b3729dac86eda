"""The run config: a TOML file parsed into typed, frozen dataclasses.

The parser is generic: it walks the fields and annotations of `RunConfig` and its nested
dataclasses, so a later stage adds its section by adding a dataclass field to `RunConfig`
(plus, where it needs checks that annotations cannot express, an entry in ``_FINISHERS``).
Every problem raises a one-line `ConfigError` naming the config file, the TOML location,
the problem and what to do.
"""

import dataclasses
import difflib
import functools
import json
import os
import re
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path, PurePath
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .contract import TABLES
from .exceptions import ConfigError

__all__ = [
    # sections
    "RunConfig",
    "RunSection",
    "InputSpec",
    "IngestOptions",
    "FeatureOptions",
    "SegmentOptions",
    "PropensityOptions",
    # reading and writing
    "load_config",
    "parse_config",
    "config_to_dict",
]

# Field metadata keys. A derived field is filled by the parser, never read from the TOML,
# so it is not a user-facing key; a minimum bounds a number; keys restricts a mapping's keys.
_DERIVED = "segscale.derived"
_MINIMUM = "segscale.minimum"
_KEYS = "segscale.keys"
# A secret is never written out: config_to_dict says only whether it is set.
_SECRET = "segscale.secret"
REDACTED = "(set; not shown)"


@dataclass(frozen=True)
class _Keys:
    """The allowed and required keys of a ``dict[str, ...]`` field, and what to call them."""

    noun: str
    allowed: tuple[str, ...]
    required: tuple[str, ...] = ()


_INPUT_TABLES = _Keys(
    "table",
    allowed=tuple(TABLES),
    required=tuple(name for name, table in TABLES.items() if not table.optional_table),
)


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
    """

    output_dir: Path = Path("run")
    backend: Literal["auto", "cpu", "gpu"] = "auto"
    seed: int = field(default=0, metadata={_MINIMUM: 0})
    as_of: date | None = None
    scheduler: str | None = None
    workers: int | None = field(default=None, metadata={_MINIMUM: 1})
    previous_run: Path | None = None


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
    """

    table: str = field(metadata={_DERIVED: True})
    path: str
    format: Literal["parquet", "csv"] | None = None
    timestamp_format: str | None = None
    timezone: str = "UTC"
    columns: dict[str, str] = field(default_factory=dict)
    derive: dict[str, str] = field(default_factory=dict)
    return_prefix: str | None = None

    def source_column(self, canonical: str) -> str:
        """Return the source column name that holds canonical column `canonical`."""
        try:
            return self.columns[canonical]
        except KeyError:
            raise KeyError(f"{canonical!r} is not a column of table {self.table!r}") from None


@dataclass(frozen=True)
class IngestOptions:
    """The ``[ingest]`` section: validation, identity resolution, privacy and the store.

    Attributes
    ----------
    partitions : int or None, default None
        Partitions of the customer-clustered store; None chooses from the data size.
    pseudonym_key : str or None, default None
        Key of the keyed hash that pseudonymises customer keys. None reads the environment
        variable ``SEGSCALE_PSEUDONYM_KEY``. Never written to any output.
    extracted_at : date or None, default None
        When the data was extracted: rows stamped later are clock skew
        (``future_timestamp``). None means the day ingest runs.
    identifier_cap : int, default 5
        An identifier value shared by more customers than this never links them.
    identifier_caps : dict of str to int
        Per identifier type overrides of ``identifier_cap``.
    blocked_identifiers : tuple of str
        Values that never link, on top of the built-in junk list ("", "null", "unknown", ...).
    identity_graph_memory_mib : float, default 1024
        While the shared identifiers, coded as a graph (about 210 bytes a link), fit in this
        many MiB, identity components are solved in one process at once; above it, by label
        propagation on the cluster. 0 always propagates.
    direct_identifiers : tuple of str
        Profile columns that identify a person directly; dropped at ingest.
    sensitive : tuple of str
        Profile columns kept apart for fairness audits only, never model inputs.
    """

    partitions: int | None = field(default=None, metadata={_MINIMUM: 1})
    pseudonym_key: str | None = field(default=None, metadata={_SECRET: True})
    extracted_at: date | None = None
    identifier_cap: int = field(default=5, metadata={_MINIMUM: 1})
    identifier_caps: dict[str, int] = field(default_factory=dict)
    blocked_identifiers: tuple[str, ...] = ()
    identity_graph_memory_mib: float = field(default=1024.0, metadata={_MINIMUM: 0})
    direct_identifiers: tuple[str, ...] = (
        "email", "phone", "full_name", "name", "first_name", "last_name", "address", "street", "postcode",
    )  # fmt: skip
    sensitive: tuple[str, ...] = ("gender", "age_band")


@dataclass(frozen=True)
class FeatureOptions:
    """The ``[features]`` section: which behavioural features, over which windows.

    The as-of date is ``[run] as_of``. ``docs/features.md`` defines every feature.

    Attributes
    ----------
    groups : tuple of str
        Feature groups to compute (default: all of them; see ``engine.features.FEATURE_GROUPS``).
    windows : tuple of int, default (30, 90, 365)
        Trailing windows in days for orders_<w>d and spend_<w>d.
    trend_days : int, default 90
        The trend features compare the last ``trend_days`` with the ``trend_days`` before.
    top_categories, top_channels : int, default 5
        How many of the globally most frequent categories / channels get a share column.
    """

    groups: tuple[str, ...] = (
        "rfm", "windows", "gaps", "trend", "basket", "categories", "channels", "events", "activity", "profile",
    )  # fmt: skip
    windows: tuple[int, ...] = (30, 90, 365)
    trend_days: int = field(default=90, metadata={_MINIMUM: 1})
    top_categories: int = field(default=5, metadata={_MINIMUM: 0})
    top_channels: int = field(default=5, metadata={_MINIMUM: 0})


@dataclass(frozen=True)
class SegmentOptions:
    """The ``[segments]`` section: how customers are grouped.

    Attributes
    ----------
    features : tuple of str or None
        Feature columns to cluster on; None uses ``engine.segments.DEFAULT_FEATURES``.
    k : int or None
        A fixed number of segments; None chooses k in ``k_min..k_max`` by silhouette.
    k_min, k_max : int, default 3 and 10
    scaler : {"robust", "standard"}, default "robust"
    pca_components : int or None
    sample : int, default 50000
        Customers the preparation and k-means are fitted on.
    kmeans_fit : {"sample", "all"}, default "sample"
        Where the k-means centres come from: the sample, or every customer, by a k-means
        distributed over the feature parts (k is still chosen on the sample).
    n_init : int, default 4
        k-means restarts per candidate k.
    micro_k : int or None, default 40
        Micro-segments under the segments (a Ward tree joins them); None for none.
    niches : bool, default True
        Look for niche groups and outliers with DBSCAN.
    niche_points : int, default 20000
        Sample customers DBSCAN runs on (its cost is quadratic in them).
    niche_eps : float or None
        DBSCAN radius in prepared units; None takes the knee of the k-distance curve.
    niche_min_samples : int or None
        DBSCAN core-point neighbours; None uses twice the number of prepared dimensions.
    niche_max_share : float, default 0.05
        A dense group smaller than this share of the DBSCAN subset is a niche.
    stability_resamples : int, default 10
        Bootstrap refits behind each segment's stability (0 skips it).
    stability_points : int, default 10000
        Sample customers each refit sees.
    rules_depth : int, default 4
        Depth of the decision tree whose rules describe the segments.
    outcome_days : int, default 90
        Days after as-of in which the segments and the classic RFM grid are compared on what
        customers did next (next-period spend, churn), when the store holds those days.
    outcome_customers : int, default 500000
        Customers that comparison is made on at most: those whose key is below a bound (keys
        are keyed hashes, so a uniform sample), so it never gathers every customer.
    """

    features: tuple[str, ...] | None = None
    k: int | None = field(default=None, metadata={_MINIMUM: 2})
    k_min: int = field(default=3, metadata={_MINIMUM: 2})
    k_max: int = field(default=10, metadata={_MINIMUM: 2})
    scaler: Literal["robust", "standard"] = "robust"
    pca_components: int | None = field(default=None, metadata={_MINIMUM: 1})
    sample: int = field(default=50_000, metadata={_MINIMUM: 100})
    kmeans_fit: Literal["sample", "all"] = "sample"
    n_init: int = field(default=4, metadata={_MINIMUM: 1})
    micro_k: int | None = field(default=40, metadata={_MINIMUM: 2})
    niches: bool = True
    niche_points: int = field(default=20_000, metadata={_MINIMUM: 100})
    niche_eps: float | None = field(default=None, metadata={_MINIMUM: 0})
    niche_min_samples: int | None = field(default=None, metadata={_MINIMUM: 2})
    niche_max_share: float = field(default=0.05, metadata={_MINIMUM: 0})
    stability_resamples: int = field(default=10, metadata={_MINIMUM: 0})
    stability_points: int = field(default=10_000, metadata={_MINIMUM: 100})
    rules_depth: int = field(default=4, metadata={_MINIMUM: 1})
    outcome_days: int = field(default=90, metadata={_MINIMUM: 1})
    outcome_customers: int = field(default=500_000, metadata={_MINIMUM: 1000})


@dataclass(frozen=True)
class ValueOptions:
    """The ``[value]`` section: customer lifetime value from purchase and spend models.

    Attributes
    ----------
    horizon_days : int, default 365
        Days after as-of the predictions (purchases, CLV) cover; when the store holds them, the
        same days are the holdout the predictions are checked against.
    discount_rate_yearly : float, default 0.1
        CLV discounts each 30-day slice of the horizon at this yearly rate.
    model : {"bgnbd", "mbgnbd"}, default "bgnbd"
        Purchase model: BG/NBD, or MBG/NBD where customers may also drop out right after their
        first purchase.
    grain : {"day", "order"}, default "day"
        A purchase is a calendar day with purchases (the BTYD convention), or each order at its
        own time.
    min_repeat_customers : int, default 100
        Fitting refuses with fewer customers who bought again before as-of.
    """

    horizon_days: int = field(default=365, metadata={_MINIMUM: 1})
    discount_rate_yearly: float = field(default=0.1, metadata={_MINIMUM: 0})
    model: Literal["bgnbd", "mbgnbd"] = "bgnbd"
    grain: Literal["day", "order"] = "day"
    min_repeat_customers: int = field(default=100, metadata={_MINIMUM: 1})


@dataclass(frozen=True)
class PropensityOptions:
    """The ``[propensity]`` section: what to predict, with which model, scored how.

    The model trains on features as of T = ``[run] as_of`` - ``horizon_days`` with labels from
    [T, T + horizon_days), the latest window the store holds; the seed is ``[run] seed``.

    Attributes
    ----------
    target : {"purchase", "churn", "event", "response"}, default "purchase"
        purchase: at least one order in the horizon. churn: no order in the horizon, among
        customers with an order in the ``churn_lookback_days`` before T. event: at least one
        event of type ``event_type`` in the horizon. response: converted, among the
        customers treated in ``campaign`` (the outcomes table); set as_of so that T is when
        the campaign went out.
    event_type : str or None
        The event type an ``event`` target looks for.
    campaign : str or None
        The outcomes table's campaign a ``response`` target models.
    horizon_days : int, default 90
    churn_lookback_days : int, default 90
    origins : int, default 1
        Training origins: T, T - ``origin_step_days``, ... Every origin adds a row per
        customer (features as of it, labels of its horizon), so the model sees more windows;
        calibration and the test metrics use the latest origin only, the one scores resemble.
    origin_step_days : int or None
        Days between origins; None means ``horizon_days`` (label windows end to end).
    out_of_time_test : bool, default False
        With two or more origins: fit and calibrate on the earlier origins only, and measure
        on the latest window's test customers, later than anything the model learned from.
    model : {"auto", "gradient_boosting", "random_forest", "logistic"}, default "auto"
        ``auto``: scikit-learn's histogram gradient boosting on the CPU (10x faster to fit
        than the forest at the same AUC, measured), cuML's random forest on the GPU; either
        is fitted beside a logistic regression, and the one with the higher validation AUC
        is kept.
    n_estimators : int, default 100
        Trees (random forest) or boosting rounds (gradient boosting). scikit-learn's and
        cuML's default too: on a 100k world 300 trees took 2.5x the time for +0.0003 AUC.
    max_depth : int or None, default 12
    max_features : float, default 0.33
        Share of input columns considered at each split.
    min_samples_leaf : int, default 20
    calibration : {"isotonic", "sigmoid"}, default "isotonic"
        Fitted on the validation split.
    band_by : {"quantile", "probability"}, default "quantile"
    bands : tuple of two floats, default (0.6, 0.9)
        Where medium and high start: shares of the scored reference population (quantile), or
        calibrated probabilities (probability).
    min_class_count : int, default 100
        Training refuses with fewer positives or negatives than this in its training split.
    validation_share, test_share : float, default 0.2 each
        Customers (by a salted hash of the key) held out to calibrate and to measure.
    sample : int, default 1000000
        Most training rows (customers, times origins), a deterministic subset of customers
        above that.
    features : tuple of str or None
        Input feature columns; None uses every feature column.
    """

    target: Literal["purchase", "churn", "event", "response"] = "purchase"
    event_type: str | None = None
    campaign: str | None = None
    horizon_days: int = field(default=90, metadata={_MINIMUM: 1})
    churn_lookback_days: int = field(default=90, metadata={_MINIMUM: 1})
    origins: int = field(default=1, metadata={_MINIMUM: 1})
    origin_step_days: int | None = field(default=None, metadata={_MINIMUM: 1})
    out_of_time_test: bool = False
    model: Literal["auto", "gradient_boosting", "random_forest", "logistic"] = "auto"
    n_estimators: int = field(default=100, metadata={_MINIMUM: 1})
    max_depth: int | None = field(default=12, metadata={_MINIMUM: 1})
    max_features: float = field(default=0.33, metadata={_MINIMUM: 0})
    min_samples_leaf: int = field(default=20, metadata={_MINIMUM: 1})
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    band_by: Literal["quantile", "probability"] = "quantile"
    bands: tuple[float, ...] = (0.6, 0.9)
    min_class_count: int = field(default=100, metadata={_MINIMUM: 1})
    validation_share: float = field(default=0.2, metadata={_MINIMUM: 0})
    test_share: float = field(default=0.2, metadata={_MINIMUM: 0})
    sample: int = field(default=1_000_000, metadata={_MINIMUM: 100})
    features: tuple[str, ...] | None = None


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


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate the TOML run config at `path`.

    Parameters
    ----------
    path : str or os.PathLike
        The config file; messages start with it as given.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        The file is missing, unreadable, not TOML, or does not fit the schema.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise _error(name, "no such config file") from None
    except IsADirectoryError:
        raise _error(name, "is a directory, not a config file") from None
    except OSError as err:
        raise _error(name, f"cannot read config file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise _error(name, f"invalid TOML: not UTF-8 text ({err.reason})") from None
    except tomllib.TOMLDecodeError as err:
        raise _error(name, f"invalid TOML: {err}") from None
    return parse_config(document, source=path)


def parse_config(document: Mapping[str, Any], *, source: str | os.PathLike[str]) -> RunConfig:
    """Validate an already-parsed TOML `document` into a `RunConfig`.

    Parameters
    ----------
    document : Mapping
        The TOML document, as ``tomllib`` returns it.
    source : str or os.PathLike
        The config file's path: relative paths in `document` resolve against its
        directory, and messages start with it as given. It need not exist.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        `document` does not fit the schema.
    """
    return _parse_table(RunConfig, document, _Context(os.fspath(source)), ())


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Return `config` as JSON-ready data (for ``--json`` output and manifests).

    Parameters
    ----------
    config : RunConfig

    Returns
    -------
    dict
        Nested dicts mirroring the dataclasses; paths and dates become strings, and secrets
        (``[ingest] pseudonym_key``) are replaced by a note that they are set.
    """
    return _jsonable(config)


# -- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """The config file being parsed, named as the user gave it (messages quote it so)."""

    name: str

    @property
    def source(self) -> Path:
        return Path(os.path.abspath(self.name))

    def resolve(self, path: str | PurePath) -> Path:
        # abspath, not resolve(): normalise ".." but keep the user's symlinks in messages.
        return Path(os.path.abspath(self.source.parent / Path(path).expanduser()))

    def error(self, loc: tuple[str, ...], key: str | None, problem: str) -> ConfigError:
        where = f"[{'.'.join(loc)}]" if loc else "top level:"
        return _error(self.name, f"{where} {key}: {problem}" if key else f"{where} {problem}")


def _error(name: str, problem: str) -> ConfigError:
    # The CLI prints messages as one line; a stray newline from a value must not break that.
    return ConfigError(f"{name}: {problem}".replace("\n", "\\n"))


def _parse_table(cls: type, raw: Any, ctx: _Context, loc: tuple[str, ...]) -> Any:
    """Build dataclass `cls` from the TOML table `raw` found at `loc`."""
    if not isinstance(raw, Mapping):
        raise ctx.error(loc, None, f"expected a table, got {_describe(raw)}")
    hints = get_type_hints(cls)
    user_fields = [f for f in dataclasses.fields(cls) if not f.metadata.get(_DERIVED)]
    noun = "key" if loc else "section"
    _check_keys(raw, [f.name for f in user_fields], noun, ctx, loc)
    values = {}
    for f in user_fields:
        if f.name in raw:
            value = raw[f.name]
        elif dataclasses.is_dataclass(hints[f.name]):
            value = {}  # an absent section is an empty one, so its own defaults get resolved
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ctx.error(loc, None, f"missing required {noun} '{f.name}'")
        values[f.name] = _convert(value, hints[f.name], f.metadata, ctx, loc, f.name)
    finisher = _FINISHERS.get(cls)
    if finisher is not None:
        finisher(values, ctx, loc)
    return cls(**values)


def _check_keys(
    raw: Mapping, allowed: Collection[str], noun: str, ctx: _Context, loc: tuple[str, ...]
) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            valid = ", ".join(sorted(allowed))
            hint = f"did you mean '{close[0]}'?" if close else f"valid {noun}s: {valid}"
            raise ctx.error(loc, None, f"unknown {noun} '{key}' ({hint})")


def _convert(
    value: Any, tp: Any, meta: Mapping, ctx: _Context, loc: tuple[str, ...], key: str
) -> Any:
    """Check and convert one TOML `value` at ``loc``/`key` to the annotation `tp`."""
    origin, args = get_origin(tp), get_args(tp)
    fail = functools.partial(ctx.error, loc, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (tp,) = [arg for arg in args if arg is not type(None)]
        return _convert(value, tp, meta, ctx, loc, key)
    if origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in args):
            return value
        got = _quote(value) if isinstance(value, str) else _describe(value)
        raise fail(f"must be one of {', '.join(map(str, args))}, got {got}")
    if dataclasses.is_dataclass(tp):
        return _parse_table(tp, value, ctx, loc + (key,))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ctx.error(loc + (key,), None, f"expected a table, got {_describe(value)}")
        keys = meta.get(_KEYS)
        if keys is not None:
            _check_keys(value, keys.allowed, keys.noun, ctx, loc + (key,))
            for name in keys.required:
                if name not in value:
                    raise ctx.error(loc + (key,), None, f"missing required {keys.noun} '{name}'")
        return {k: _convert(v, args[1], {}, ctx, loc + (key,), k) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(f"expected an array, got {_describe(value)}")
        items = enumerate(value)
        return tuple(_convert(v, args[0], {}, ctx, loc, f"{key}[{i}]") for i, v in items)
    if tp is date:
        return _to_date(value, fail)
    if tp is Path:
        if isinstance(value, PurePath):  # a field default
            return ctx.resolve(value)
        return ctx.resolve(_convert(value, str, meta, ctx, loc, key))
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected a boolean (true or false), got {_describe(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"expected a string, got {_describe(value)}")
        if not value:
            raise fail("must not be empty")
        return value
    if tp in (int, float):
        # bool is an int subclass in Python, but `true` is never a number in a config.
        if isinstance(value, bool) or not isinstance(value, (int, float) if tp is float else int):
            kind = "an integer" if tp is int else "a number"
            raise fail(f"expected {kind}, got {_describe(value)}")
        minimum = meta.get(_MINIMUM)
        if minimum is not None and value < minimum:
            raise fail(f"must be >= {minimum}, got {value}")
        return tp(value)
    raise TypeError(f"config field {key!r}: unsupported annotation {tp!r}")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _to_date(value: Any, fail: Callable[[str], ConfigError]) -> date:
    if isinstance(value, datetime):  # a datetime is a date subclass: check it first
        raise fail(f"expected a date, got {_describe(value)} (use a date, YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise fail(f"expected a date (YYYY-MM-DD), got {_describe(value)}")
    # The pattern first: fromisoformat also takes forms such as "20260101" or "2026-W01-1".
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise fail(f"not a valid date: {_quote(value)} (use YYYY-MM-DD)")


# What a TOML value is, for messages; datetime before date, bool before int (subclasses).
_KINDS = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (datetime, "a datetime"),
    (date, "a date"),
    (time, "a time"),
    (Mapping, "a table"),
    (list, "an array"),
)


def _describe(value: Any) -> str:
    kind = next((noun for kind, noun in _KINDS if isinstance(value, kind)), type(value).__name__)
    if isinstance(value, (Mapping, list)):
        return kind
    if isinstance(value, str):
        return f"{kind} ({_quote(value)})"
    if isinstance(value, bool):
        return f"{kind} ({str(value).lower()})"
    return f"{kind} ({value})"


def _quote(text: str, limit: int = 60) -> str:
    # json.dumps escapes newlines and quotes, so the message stays one unambiguous line.
    return json.dumps(text if len(text) <= limit else text[:limit] + "...", ensure_ascii=False)


# -- section checks that annotations cannot express ------------------------------------


def _finish_config(values: dict, ctx: _Context, loc: tuple[str, ...]) -> None:
    values["source"] = ctx.source


def _finish_input(values: dict, ctx: _Context, loc: tuple[str, ...]) -> None:
    table = values["table"] = loc[-1]
    path = values["path"]
    if "://" not in path:  # a URL is the reader's business: it may need credentials to check
        local = ctx.resolve(path)
        if not local.exists():
            raise ctx.error(
                loc,
                "path",
                f"no such file or directory: {local} "
                "(relative paths are resolved against the config file's directory)",
            )
        values["path"] = path = str(local)
    if values["format"] is None:
        values["format"] = _infer_format(path, ctx, loc)
    try:
        ZoneInfo(values["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ctx.error(
            loc,
            "timezone",
            f"unknown time zone {_quote(values['timezone'])} "
            '(use an IANA name such as "UTC" or "Europe/Berlin")',
        ) from None
    canonical = TABLES[table].columns
    given = values["columns"]
    _check_keys(given, canonical, "column", ctx, loc + ("columns",))
    derive = values["derive"]
    _check_keys(derive, canonical, "column", ctx, loc + ("derive",))
    for column, expression in derive.items():
        if column in given:
            raise ctx.error(
                loc, None, f"'{column}' is both mapped in columns and derived; keep one of them"
            )
        if not _EXPRESSION.fullmatch(expression):
            raise ctx.error(
                loc + ("derive",),
                column,
                f"cannot read expression {_quote(expression)} "
                '(use a source column, or the product of two: "Quantity * UnitPrice")',
            )
    if values["return_prefix"] is not None and table != "transactions":
        raise ctx.error(loc, "return_prefix", "only transactions have returns")
    seen: dict[str, str] = {}
    for column, source_column in given.items():
        if source_column in seen:
            raise ctx.error(
                loc + ("columns",),
                None,
                f"'{seen[source_column]}' and '{column}' both map to {_quote(source_column)}; "
                "map each source column once",
            )
        seen[source_column] = column
    values["columns"] = {column: given.get(column, column) for column in canonical if column not in derive}


# A source column, or the product of two; names as pandas would read them from a header.
_EXPRESSION = re.compile(r"\s*[^*\s][^*]*?\s*(\*\s*[^*\s][^*]*?\s*)?")

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _infer_format(path: str, ctx: _Context, loc: tuple[str, ...]) -> str:
    lowered = path.lower()
    if lowered.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if lowered.endswith(_CSV_SUFFIXES):
        return "csv"
    if "://" not in path and os.path.isdir(path):
        # Writers leave markers such as _SUCCESS or .crc files next to the data: skip them.
        entries = [e for e in Path(path).iterdir() if not e.name.startswith(("_", "."))]
        only_csv = bool(entries) and all(
            e.is_file() and e.name.lower().endswith((".csv", ".csv.gz")) for e in entries
        )
        return "csv" if only_csv else "parquet"
    raise ctx.error(
        loc, "format", f'cannot infer the format of {path}; set format = "parquet" or "csv"'
    )


_FINISHERS: dict[type, Callable[[dict, _Context, tuple[str, ...]], None]] = {
    RunConfig: _finish_config,
    InputSpec: _finish_input,
}


# -- writing -----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.name: REDACTED if f.metadata.get(_SECRET) and getattr(value, f.name) is not None else _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
