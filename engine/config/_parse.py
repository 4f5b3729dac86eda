"""Reading a TOML run config into `RunConfig`, and writing one out as JSON-ready data."""

import codecs
import dataclasses
import difflib
import functools
import json
import os
import re
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path, PurePath
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..contract import TABLES
from ..exceptions import ConfigError
from ._activate import ActivateOptions, Condition
from ._fields import _DERIVED, _KEYS, _MINIMUM, _SECRET, REDACTED
from ._run import InputSpec, RunConfig

__all__ = ["config_to_dict", "load_config", "parse_config"]


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


_AUDIENCE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _finish_condition(values: dict, ctx: _Context, loc: tuple[str, ...]) -> None:
    bounds = values["min"] is not None or values["max"] is not None
    if values["values"] and bounds:
        raise ctx.error(loc, None, "give either values or min/max, not both")
    if not values["values"] and not bounds:
        raise ctx.error(loc, None, "give values = [...] or min/max")
    if bounds and None not in (values["min"], values["max"]) and values["min"] > values["max"]:
        raise ctx.error(loc, None, f"min {values['min']} is above max {values['max']}")


def _finish_activate(values: dict, ctx: _Context, loc: tuple[str, ...]) -> None:
    seen = set()
    for number, audience in enumerate(values["audiences"]):
        where = loc + (f"audiences[{number}]",)
        if not _AUDIENCE_NAME.fullmatch(audience.name):
            raise ctx.error(where, "name", f"{_quote(audience.name)} must be letters, digits, - and _ (it names files)")
        if audience.name in seen:
            raise ctx.error(where, "name", f"audience {_quote(audience.name)} is declared twice")
        seen.add(audience.name)
    names = set()
    for number, action in enumerate(values["actions"]):
        where = loc + (f"actions[{number}]",)
        if action.audience not in seen:
            raise ctx.error(where, "audience", f"no audience is named {_quote(action.audience)} "
                            f"(declared: {', '.join(sorted(seen)) or 'none'})")  # fmt: skip
        if action.name in names:
            raise ctx.error(where, "name", f"action {_quote(action.name)} is declared twice")
        names.add(action.name)
    if values["holdout_share"] >= 1:
        raise ctx.error(loc, "holdout_share", f"must be below 1, got {values['holdout_share']}")


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
    try:
        codecs.lookup(values["encoding"])
    except LookupError:
        named = _quote(values["encoding"])
        raise ctx.error(loc, "encoding", f"unknown text encoding {named} (e.g. utf-8, latin-1, cp1252)") from None
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


def suffix_format(path: str) -> str | None:
    """The format a path's suffix names ("parquet" or "csv"), or None when it names none."""
    lowered = str(path).lower()
    if lowered.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if lowered.endswith(_CSV_SUFFIXES):
        return "csv"
    return None


def _infer_format(path: str, ctx: _Context, loc: tuple[str, ...]) -> str:
    named = suffix_format(path)
    if named is not None:
        return named
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
    Condition: _finish_condition,
    ActivateOptions: _finish_activate,
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
