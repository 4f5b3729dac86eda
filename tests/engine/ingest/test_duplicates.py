"""``[inputs.<table>] duplicates``: exact duplicates dropped and counted, or every row kept."""

import logging

import pyarrow.parquet as pq
import pytest

from engine.config import load_config
from engine.ingest import ingest

# Lines without an order id, as a purchase log writes them: the second A line is a real
# repeat purchase of the first, or a copy; ingest cannot tell. The blank-id line is
# quarantined, twice over.
_LINES = (
    "customer_id,ts,amount\n"
    "A,2024-01-01 10:00:00,3.5\n"
    "A,2024-01-01 10:00:00,3.5\n"
    "B,2024-01-02 11:00:00,4\n"
    ",2024-01-03 12:00:00,5\n"
    ",2024-01-03 12:00:00,5\n"
)


def _config(tmp_path, text, duplicates=None, identities=None):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "tx.csv").write_text(text)
    option = "" if duplicates is None else f'duplicates = "{duplicates}"\n'
    extra = ""
    if identities is not None:
        (tmp_path / "ids.csv").write_text(identities)
        extra = f'[inputs.identities]\npath = "ids.csv"\n{option}'
    (tmp_path / "run.toml").write_text(
        f'[inputs.transactions]\npath = "tx.csv"\n{option}{extra}[ingest]\npseudonym_key = "k-for-tests"\n'
    )
    return load_config(tmp_path / "run.toml")


def _stored(tmp_path):
    return pq.read_table(tmp_path / "run" / "ingest" / "store" / "transactions").to_pandas()


def _reconciles(counts):
    return counts["read"] == counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]


def test_exact_is_the_default_and_drops_and_counts_duplicates(tmp_path):
    config = _config(tmp_path, _LINES)
    assert config.inputs["transactions"].duplicates == "exact"
    counts = ingest(config).tables["transactions"]
    assert counts == {"read": 5, "kept": 2, "quarantined": {"blank_customer_id": 1}, "duplicates": 2}
    assert _reconciles(counts)
    assert len(_stored(tmp_path)) == 2


def test_none_keeps_every_row_and_counts_no_duplicate(tmp_path):
    counts = ingest(_config(tmp_path, _LINES, duplicates="none")).tables["transactions"]
    assert counts == {"read": 5, "kept": 3, "quarantined": {"blank_customer_id": 2}, "duplicates": 0}
    assert _reconciles(counts)
    stored = _stored(tmp_path)
    assert len(stored) == 3 and stored["amount"].tolist().count(3.5) == 2
    quarantined = pq.read_table(tmp_path / "run" / "ingest" / "quarantine" / "transactions").to_pandas()
    assert len(quarantined) == 2


def test_identities_honour_their_own_setting(tmp_path):
    identities = "customer_id,id_type,id_value\nA,email,a@x.org\nA,email,a@x.org\nB,email,b@x.org\n"
    dropped = ingest(_config(tmp_path / "exact", _LINES, identities=identities)).tables["identities"]
    assert dropped["duplicates"] == 1 and _reconciles(dropped)
    kept = ingest(_config(tmp_path / "none", _LINES, duplicates="none", identities=identities)).tables["identities"]
    assert kept["duplicates"] == 0 and kept["kept"] == 3 and _reconciles(kept)


def _log(copies, rows=1_000):
    """``rows`` distinct purchase lines, the first ``copies`` of them written twice."""
    lines = [f"C{i},2024-01-01 10:00:00,{i + 1}\n" for i in range(rows - copies)]
    return "customer_id,ts,amount\n" + "".join(lines) + "".join(lines[:copies])


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "duplicate" in r.getMessage()]


@pytest.mark.parametrize(("copies", "warned"), [(4, False), (5, False), (6, True)])
def test_a_warning_names_the_table_count_and_share_above_half_a_percent(tmp_path, caplog, copies, warned):
    caplog.set_level(logging.WARNING)
    counts = ingest(_config(tmp_path, _log(copies))).tables["transactions"]
    assert counts["duplicates"] == copies and counts["read"] == 1_000
    if not warned:
        assert _warnings(caplog) == []
        return
    (message,) = _warnings(caplog)
    assert "transactions" in message and f"{copies} exact duplicate" in message and "0.6%" in message
    assert "without an order id" in message and 'duplicates = "none"' in message


def test_no_warning_when_duplicates_are_kept(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    counts = ingest(_config(tmp_path, _log(50), duplicates="none")).tables["transactions"]
    assert counts["duplicates"] == 0 and counts["kept"] == 1_000
    assert _warnings(caplog) == []
