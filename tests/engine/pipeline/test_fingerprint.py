"""Fingerprints: what makes a stage's output out of date, and what does not."""

import dataclasses
import os

from engine.config import InputSpec
from engine.pipeline import STAGES, code_version
from engine.pipeline._fingerprint import digest, input_fingerprint, key_check


def _spec(path, **changes):
    return dataclasses.replace(InputSpec(table="transactions", path=str(path), format="csv"), **changes)


def test_an_input_changes_its_fingerprint_when_a_file_is_rewritten_added_or_renamed(tmp_path):
    folder = tmp_path / "orders"
    folder.mkdir()
    (folder / "a.csv").write_text("customer_id,ts,amount\n1,2025-01-01,3\n")
    first = input_fingerprint(_spec(folder))
    assert input_fingerprint(_spec(folder)) == first
    stat = (folder / "a.csv").stat()
    os.utime(folder / "a.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = input_fingerprint(_spec(folder))
    assert touched != first
    (folder / "b.csv").write_text("customer_id,ts,amount\n")
    assert input_fingerprint(_spec(folder)) not in (first, touched)
    assert input_fingerprint(_spec(folder, timezone="Europe/Berlin")) != input_fingerprint(_spec(folder))


def test_a_remote_input_is_fingerprinted_through_fsspec():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/fp-test/orders/a.csv", b"customer_id,ts,amount\n")
    first = input_fingerprint(_spec("memory://fp-test/orders"))
    fs.pipe("/fp-test/orders/a.csv", b"customer_id,ts,amount\n1,2025-01-01,3\n")
    assert input_fingerprint(_spec("memory://fp-test/orders")) != first


def test_the_key_check_follows_the_key_and_is_not_the_key():
    assert key_check(b"key-number-one") == key_check(b"key-number-one") != key_check(b"key-number-two")
    assert "key-number-one" not in key_check(b"key-number-one")


def test_settings_cover_what_each_stage_reads(backtest_world, config_in, tmp_path):
    config = config_in(tmp_path / "run")
    as_of = config.run.as_of
    moved = dataclasses.replace(config, run=dataclasses.replace(config.run, as_of=as_of.replace(day=9)))
    reseeded = dataclasses.replace(config, run=dataclasses.replace(config.run, seed=9))
    elsewhere = dataclasses.replace(config, run=dataclasses.replace(config.run, backend="cpu", workers=3))

    def changed(name, other, other_as_of=as_of):
        return digest(STAGES[name].settings(config, as_of)) != digest(STAGES[name].settings(other, other_as_of))

    assert [name for name in ("ingest", "features", "segments", "propensity", "value")
            if changed(name, moved, moved.run.as_of)] == ["features", "propensity", "value"]  # fmt: skip
    assert [name for name in ("ingest", "features", "segments", "propensity", "value")
            if changed(name, reseeded)] == ["segments", "propensity"]  # fmt: skip
    assert not any(changed(name, elsewhere) for name in ("ingest", "features", "segments", "propensity", "value"))
    rekeyed = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, pseudonym_key="another-key-0"))
    assert changed("ingest", rekeyed)
    assert "another-key-0" not in str(STAGES["ingest"].settings(rekeyed, as_of))


def test_the_code_version_names_the_release_and_the_source():
    version = code_version()
    release, source = version.rsplit("+", 1)
    assert release and len(source) == 16 and code_version() == version
