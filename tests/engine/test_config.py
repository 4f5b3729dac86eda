"""Tests for engine.config: the TOML run config."""

import dataclasses
import json
from datetime import date
from pathlib import Path

import pytest

from engine import config
from engine.config import _parse
from engine.config import (
    InputSpec,
    RunConfig,
    RunSection,
    config_to_dict,
    load_config,
    parse_config,
)
from engine.contract import TABLES
from engine.exceptions import ConfigError, UsageError

TX = '[inputs.transactions]\npath = "tx.csv"\n'


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory holding tx.csv and tx.json, made the current directory."""
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\n")
    (tmp_path / "tx.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_text(text: str) -> RunConfig:
    return load_config(write(Path("cfg.toml"), text).name)


# -- valid configs -------------------------------------------------------------------------

FULL = """
[run]
output_dir = "out/run1"
backend = "cpu"
seed = 7
as_of = {as_of}
scheduler = "tcp://10.0.0.5:8786"
workers = 2

[inputs.transactions]
path = "../data/tx.csv.gz"
timestamp_format = "%Y-%m-%d %H:%M:%S"
timezone = "Europe/Berlin"

[inputs.transactions.columns]
customer_id = "CustomerID"
amount = "Total"

[inputs.events]
path = "../data/events"

[inputs.customers]
path = "../data/customers"
format = "parquet"

[inputs.outcomes]
path = "s3://bucket/outcomes/"
format = "csv"
"""


@pytest.mark.parametrize("as_of", ["2026-01-01", '"2026-01-01"'], ids=["toml-date", "string"])
def test_full_config_round_trip(tmp_path, as_of):
    data = tmp_path / "data"
    write(data / "tx.csv.gz", "")
    write(data / "events" / "part.0.parquet", "")
    write(data / "events" / "_SUCCESS", "")
    write(data / "customers" / "part.0.csv", "")  # explicit format wins over inference
    source = write(tmp_path / "conf" / "cfg.toml", FULL.format(as_of=as_of))

    cfg = load_config(source)

    assert cfg.source == source
    assert cfg.run == RunSection(
        output_dir=tmp_path / "conf" / "out" / "run1",
        backend="cpu",
        seed=7,
        as_of=date(2026, 1, 1),
        scheduler="tcp://10.0.0.5:8786",
        workers=2,
    )
    assert list(cfg.inputs) == ["transactions", "events", "customers", "outcomes"]
    tx = cfg.inputs["transactions"]
    assert tx.table == "transactions"
    assert tx.path == str(data / "tx.csv.gz")
    assert tx.format == "csv"
    assert (tx.timestamp_format, tx.timezone) == ("%Y-%m-%d %H:%M:%S", "Europe/Berlin")
    assert list(tx.columns) == list(TABLES["transactions"].columns)
    assert tx.columns["customer_id"] == tx.source_column("customer_id") == "CustomerID"
    assert tx.source_column("amount") == "Total"
    assert tx.source_column("ts") == "ts"
    events = cfg.inputs["events"]
    assert (events.path, events.format) == (str(data / "events"), "parquet")
    assert events.columns == {c: c for c in TABLES["events"].columns}
    assert cfg.inputs["customers"].format == "parquet"
    assert (cfg.inputs["outcomes"].path, cfg.inputs["outcomes"].format) == (
        "s3://bucket/outcomes/",
        "csv",
    )

    as_dict = json.loads(json.dumps(config_to_dict(cfg)))
    assert as_dict["source"] == str(source)
    assert as_dict["run"]["output_dir"] == str(tmp_path / "conf" / "out" / "run1")
    assert as_dict["run"]["as_of"] == "2026-01-01"
    assert as_dict["inputs"]["transactions"]["columns"]["customer_id"] == "CustomerID"
    assert as_dict["inputs"]["events"]["table"] == "events"


def test_a_configured_key_is_never_written_out(workdir):
    cfg = load_text(TX + '[ingest]\npseudonym_key = "a-secret-value"\n')
    assert cfg.ingest.pseudonym_key == "a-secret-value"
    written = json.dumps(config_to_dict(cfg))
    assert "a-secret-value" not in written and config_to_dict(cfg)["ingest"]["pseudonym_key"] == "(set; not shown)"
    assert config_to_dict(load_text(TX))["ingest"]["pseudonym_key"] is None


def test_defaults(workdir):
    cfg = load_text(TX)

    assert cfg.run == RunSection(output_dir=workdir / "run")
    assert (cfg.run.backend, cfg.run.seed, cfg.run.as_of) == ("auto", 0, None)
    assert (cfg.run.scheduler, cfg.run.workers) == (None, None)
    assert list(cfg.inputs) == ["transactions"]
    tx = cfg.inputs["transactions"]
    assert (tx.path, tx.format, tx.timezone) == (str(workdir / "tx.csv"), "csv", "UTC")
    assert tx.timestamp_format is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        tx.path = "elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["a.csv", "b.csv.gz", "_SUCCESS", ".a.csv.crc"], "csv"),
        (["a.parquet", "b.csv"], "parquet"),
        ([], "parquet"),
    ],
)
def test_directory_format(workdir, files, expected):
    (workdir / "tx").mkdir()
    for name in files:
        (workdir / "tx" / name).write_text("")
    cfg = load_text('[inputs.transactions]\npath = "tx"\n')
    assert cfg.inputs["transactions"].format == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("s3://bucket/tx.parquet", "parquet"),
        ("gs://bucket/tx.PQ", "parquet"),
        ("s3://bucket/tx.tsv", "csv"),
    ],
)
def test_url_is_kept_and_not_checked(workdir, path, expected):
    cfg = load_text(f'[inputs.transactions]\npath = "{path}"\n')
    assert (cfg.inputs["transactions"].path, cfg.inputs["transactions"].format) == (path, expected)


def test_parse_config_takes_a_mapping(workdir):
    cfg = parse_config(
        {"run": {"seed": 3}, "inputs": {"transactions": {"path": "tx.csv"}}},
        source=workdir / "cfg.toml",
    )
    assert cfg.run.seed == 3
    assert cfg.source == workdir / "cfg.toml"


def test_source_column_rejects_unknown_canonical(workdir):
    with pytest.raises(KeyError, match="not a column of table 'transactions'"):
        load_text(TX).inputs["transactions"].source_column("nope")


# -- errors ----------------------------------------------------------------------------------

ERRORS = {
    "invalid-toml": ("[run\n", ["cfg.toml: invalid TOML: ", "line 1"]),
    "unknown-key-close": (
        "[run]\nsed = 1\n" + TX,
        ["cfg.toml: [run] unknown key 'sed' (did you mean 'seed'?)"],
    ),
    "unknown-key-far": (
        "[run]\nzzz = 1\n" + TX,
        [
            "cfg.toml: [run] unknown key 'zzz' "
            "(valid keys: as_of, backend, memory_limit, output_dir, previous_run, scheduler, seed, stall_minutes, workers)"
        ],
    ),
    "unknown-section-close": (
        "[input]\n" + TX,
        ["cfg.toml: top level: unknown section 'input' (did you mean 'inputs'?)"],
    ),
    "unknown-section-far": (
        "[zzz]\n" + TX,
        ["cfg.toml: top level: unknown section 'zzz' (valid sections: activate, features, ingest, inputs, propensity, run, segments, update, value)"],
    ),
    "unknown-section-typo": (
        "[ingset]\n" + TX,
        ["cfg.toml: top level: unknown section 'ingset' (did you mean 'ingest'?)"],
    ),
    "derive-bad-expression": (
        TX + '[inputs.transactions.derive]\namount = "Quantity * UnitPrice * 2"\n',
        ['cfg.toml: [inputs.transactions.derive] amount: cannot read expression "Quantity * UnitPrice * 2"'],
    ),
    "derive-and-map-one-column": (
        TX + '[inputs.transactions.columns]\namount = "Total"\n[inputs.transactions.derive]\namount = "Q * P"\n',
        ["cfg.toml: [inputs.transactions] 'amount' is both mapped in columns and derived"],
    ),
    "derive-unknown-column": (
        TX + '[inputs.transactions.derive]\namont = "Q * P"\n',
        ["cfg.toml: [inputs.transactions.derive] unknown column 'amont' (did you mean 'amount'?)"],
    ),
    "return-prefix-outside-transactions": (
        TX + '[inputs.events]\npath = "tx.csv"\nreturn_prefix = "C"\n',
        ["cfg.toml: [inputs.events] return_prefix: only transactions have returns"],
    ),
    "ingest-cap-too-small": (
        TX + "[ingest]\nidentifier_cap = 0\n",
        ["cfg.toml: [ingest] identifier_cap: must be >= 1, got 0"],
    ),
    "ingest-caps-wrong-type": (
        TX + '[ingest]\nidentifier_caps = { email = "five" }\n',
        ['cfg.toml: [ingest.identifier_caps] email: expected an integer, got a string ("five")'],
    ),
    "ingest-extracted-at-bad-date": (
        TX + '[ingest]\nextracted_at = "2025-02-30"\n',
        ['cfg.toml: [ingest] extracted_at: not a valid date: "2025-02-30" (use YYYY-MM-DD)'],
    ),
    "unknown-table": (
        TX + '[inputs.transaction]\npath = "tx.csv"\n',
        ["cfg.toml: [inputs] unknown table 'transaction' (did you mean 'transactions'?)"],
    ),
    "unknown-column": (
        TX + '[inputs.events]\npath = "tx.csv"\n[inputs.events.columns]\nevent = "kind"\n',
        ["cfg.toml: [inputs.events.columns] unknown column 'event' (did you mean 'event_type'?)"],
    ),
    "unknown-contacts-column": (
        TX + '[inputs.contacts]\npath = "tx.csv"\n[inputs.contacts.columns]\nchanel = "medium"\n',
        ["cfg.toml: [inputs.contacts.columns] unknown column 'chanel' (did you mean 'channel'?)"],
    ),
    "unknown-suppressions-column": (
        TX + '[inputs.suppressions]\npath = "tx.csv"\n[inputs.suppressions.columns]\nwhy = "cause"\n',
        ["cfg.toml: [inputs.suppressions.columns] unknown column 'why'"],
    ),
    "int-got-string": (
        '[run]\nseed = "abc"\n' + TX,
        ['cfg.toml: [run] seed: expected an integer, got a string ("abc")'],
    ),
    "int-got-bool": (
        "[run]\nseed = true\n" + TX,
        ["cfg.toml: [run] seed: expected an integer, got a boolean (true)"],
    ),
    "str-got-int": (
        "[run]\nscheduler = 5\n" + TX,
        ["cfg.toml: [run] scheduler: expected a string, got an integer (5)"],
    ),
    "empty-string": (
        '[run]\noutput_dir = ""\n' + TX,
        ["cfg.toml: [run] output_dir: must not be empty"],
    ),
    "section-not-table": (
        "run = 3\n" + TX,
        ["cfg.toml: [run] expected a table, got an integer (3)"],
    ),
    "input-not-table": (
        "[inputs]\ntransactions = 3\n",
        ["cfg.toml: [inputs.transactions] expected a table, got an integer (3)"],
    ),
    "columns-not-table": (
        TX + 'columns = "x"\n',
        ['cfg.toml: [inputs.transactions.columns] expected a table, got a string ("x")'],
    ),
    "missing-key": (
        '[inputs.transactions]\nformat = "csv"\n',
        ["cfg.toml: [inputs.transactions] missing required key 'path'"],
    ),
    "missing-table": (
        '[inputs.events]\npath = "tx.csv"\n',
        ["cfg.toml: [inputs] missing required table 'transactions'"],
    ),
    "missing-section": ("[run]\n", ["cfg.toml: top level: missing required section 'inputs'"]),
    "bad-choice": (
        '[run]\nbackend = "gpux"\n' + TX,
        ['cfg.toml: [run] backend: must be one of auto, cpu, gpu, got "gpux"'],
    ),
    "bad-format": (
        TX + 'format = "json"\n',
        ['cfg.toml: [inputs.transactions] format: must be one of parquet, csv, got "json"'],
    ),
    "bad-duplicates": (
        TX + 'duplicates = "some"\n',
        ['cfg.toml: [inputs.transactions] duplicates: must be one of exact, none, got "some"'],
    ),
    "bad-date": (
        '[run]\nas_of = "2025-13-01"\n' + TX,
        ['cfg.toml: [run] as_of: not a valid date: "2025-13-01" (use YYYY-MM-DD)'],
    ),
    "date-wrong-form": (
        '[run]\nas_of = "20260101"\n' + TX,
        ['cfg.toml: [run] as_of: not a valid date: "20260101" (use YYYY-MM-DD)'],
    ),
    "datetime": (
        "[run]\nas_of = 2026-01-01T10:00:00\n" + TX,
        ["cfg.toml: [run] as_of: expected a date, got a datetime", "use a date, YYYY-MM-DD"],
    ),
    "missing-input": (
        '[inputs.transactions]\npath = "data/nope.csv"\n',
        [
            "cfg.toml: [inputs.transactions] path: no such file or directory: "
            "{dir}/data/nope.csv "
            "(relative paths are resolved against the config file's directory)"
        ],
    ),
    "cannot-infer-format": (
        '[inputs.transactions]\npath = "tx.json"\n',
        [
            "cfg.toml: [inputs.transactions] format: cannot infer the format of {dir}/tx.json",
            'set format = "parquet" or "csv"',
        ],
    ),
    "url-cannot-infer-format": (
        '[inputs.transactions]\npath = "s3://bucket/tx/"\n',
        ["[inputs.transactions] format: cannot infer the format of s3://bucket/tx/"],
    ),
    "bad-timezone": (
        TX + 'timezone = "Mars/Base"\n',
        ['cfg.toml: [inputs.transactions] timezone: unknown time zone "Mars/Base"', "IANA"],
    ),
    "negative-seed": (
        "[run]\nseed = -1\n" + TX,
        ["cfg.toml: [run] seed: must be >= 0, got -1"],
    ),
    "zero-workers": (
        "[run]\nworkers = 0\n" + TX,
        ["cfg.toml: [run] workers: must be >= 1, got 0"],
    ),
    "column-not-string": (
        TX + "[inputs.transactions.columns]\ncustomer_id = 3\n",
        ["cfg.toml: [inputs.transactions.columns] customer_id: expected a string, got an int"],
    ),
    "column-empty": (
        TX + '[inputs.transactions.columns]\ncustomer_id = ""\n',
        ["cfg.toml: [inputs.transactions.columns] customer_id: must not be empty"],
    ),
    "column-mapped-twice": (
        TX + '[inputs.transactions.columns]\ncustomer_id = "id"\norder_id = "id"\n',
        ["[inputs.transactions.columns] 'customer_id' and 'order_id' both map to \"id\""],
    ),
    "multiline-value": (
        '[run]\nbackend = """gpu\nx"""\n' + TX,
        [r'cfg.toml: [run] backend: must be one of auto, cpu, gpu, got "gpu\nx"'],
    ),
}


def check_one_line(err: pytest.ExceptionInfo, fragments: list[str]) -> None:
    message = str(err.value)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, UsageError)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(("text", "fragments"), list(ERRORS.values()), ids=list(ERRORS))
def test_config_errors(workdir, text, fragments):
    with pytest.raises(ConfigError) as err:
        load_text(text)
    check_one_line(err, [f.replace("{dir}", str(workdir)) for f in fragments])


def test_missing_config_file(workdir):
    with pytest.raises(ConfigError) as err:
        load_config("nope.toml")
    check_one_line(err, ["nope.toml: no such config file"])


def test_config_file_is_a_directory(workdir):
    (workdir / "cfg.toml").mkdir()
    with pytest.raises(ConfigError) as err:
        load_config("cfg.toml")
    check_one_line(err, ["cfg.toml: is a directory"])


def test_config_file_not_utf8(workdir):
    (workdir / "cfg.toml").write_bytes(b"[run]\nscheduler = '\xff'\n")
    with pytest.raises(ConfigError) as err:
        load_config("cfg.toml")
    check_one_line(err, ["cfg.toml: invalid TOML: not UTF-8"])


# -- the generic parser, on annotations RunConfig does not use yet --------------------------


@dataclasses.dataclass(frozen=True)
class Extra:
    names: tuple[str, ...] = ()
    ratio: float = 0.5
    flag: bool = False
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


def parse_extra(raw):
    return _parse._parse_table(Extra, raw, _parse._Context("cfg.toml"), ("extra",))


def test_generic_types():
    got = parse_extra({"names": ["a", "b"], "ratio": 1, "flag": True, "labels": {"x": "y"}})
    assert got == Extra(names=("a", "b"), ratio=1.0, flag=True, labels={"x": "y"})
    assert isinstance(got.ratio, float)
    assert parse_extra({}) == Extra()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"names": "a"}, '[extra] names: expected an array, got a string ("a")'),
        ({"names": ["a", 1]}, "[extra] names[1]: expected a string, got an integer (1)"),
        ({"ratio": "x"}, '[extra] ratio: expected a number, got a string ("x")'),
        ({"ratio": False}, "[extra] ratio: expected a number, got a boolean (false)"),
        ({"flag": 1}, "[extra] flag: expected a boolean (true or false), got an integer (1)"),
        ({"labels": {"x": 2}}, "[extra.labels] x: expected a string, got an integer (2)"),
    ],
)
def test_generic_type_errors(raw, fragment):
    with pytest.raises(ConfigError) as err:
        parse_extra(raw)
    check_one_line(err, [fragment])


def test_public_surface():
    assert set(config.__all__) == {
        "RunConfig",
        "RunSection",
        "InputSpec",
        "IngestOptions",
        "FeatureOptions",
        "SegmentOptions",
        "PropensityOptions",
        "ValueOptions",
        "ActivateOptions",
        "UpdateOptions",
        "Action",
        "Audience",
        "Cap",
        "Condition",
        "load_config",
        "parse_config",
        "config_to_dict",
        "suffix_format",
    }
    assert all(dataclasses.is_dataclass(c) for c in (RunConfig, RunSection, InputSpec))


def test_derived_columns_and_ingest_options(workdir):
    config = load_text(
        TX
        + '[inputs.transactions.columns]\norder_id = "InvoiceNo"\n'
        + '[inputs.transactions.derive]\namount = "Quantity * UnitPrice"\n'
        + '[ingest]\npartitions = 8\nextracted_at = 2026-01-01\nidentifier_caps = { email = 3 }\n'
        + 'blocked_identifiers = ["guest@shop.example"]\n'
    )
    spec = config.inputs["transactions"]
    assert spec.derive == {"amount": "Quantity * UnitPrice"}
    assert "amount" not in spec.columns and spec.columns["order_id"] == "InvoiceNo"
    assert spec.return_prefix is None and spec.duplicates == "exact"
    assert config.ingest.partitions == 8 and config.ingest.extracted_at == date(2026, 1, 1)
    assert config.ingest.identifier_caps == {"email": 3} and config.ingest.identifier_cap == 5
    assert config.ingest.blocked_identifiers == ("guest@shop.example",)
    assert "email" in config.ingest.direct_identifiers and config.ingest.sensitive == ("gender", "age_band")


def test_activation_inputs_are_optional_tables_with_column_mappings(workdir):
    config = load_text(
        TX
        + '[inputs.contacts]\npath = "tx.csv"\ntimezone = "Europe/Berlin"\n'
        + '[inputs.contacts.columns]\nts = "sent_at"\nchannel = "medium"\n'
        + '[inputs.suppressions]\npath = "tx.csv"\n[inputs.suppressions.columns]\nreason = "cause"\n'
    )
    contacts, suppressions = config.inputs["contacts"], config.inputs["suppressions"]
    assert contacts.columns == {"customer_id": "customer_id", "ts": "sent_at", "channel": "medium", "campaign": "campaign"}
    assert contacts.timezone == "Europe/Berlin"
    assert suppressions.columns == {"customer_id": "customer_id", "reason": "cause", "channel": "channel", "ts": "ts"}
    assert TABLES["contacts"].optional_table and TABLES["suppressions"].optional_table
