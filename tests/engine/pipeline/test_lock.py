"""RunLock: one run per directory, a dead holder's lock taken over, nesting in one process."""

import json
import subprocess
import sys

import pytest

from engine.exceptions import RunLockedError
from engine.pipeline import LOCK_NAME, RunLock

HOLD = "import sys, time; from engine.pipeline import RunLock\nwith RunLock(sys.argv[1], 'run'):\n    print('held', flush=True); time.sleep(60)"


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / 'run'``."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_run_is_refused_with_the_holders_pid_and_start(tmp_path, holder):
    lock = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
    with pytest.raises(RunLockedError) as refused:
        with RunLock(tmp_path / "run"):
            pass
    message = str(refused.value)
    assert f"pid {holder.pid}" in message and lock["started_at"] in message and "another segscale run" in message
    assert (tmp_path / "run" / LOCK_NAME).exists()  # still the holder's


def test_the_lock_is_released_on_success_and_on_failure(tmp_path):
    with RunLock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["command"] == "run"
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with pytest.raises(ValueError), RunLock(tmp_path / "run"):
        raise ValueError("boom")
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_the_lock_nests_within_one_process(tmp_path):
    with RunLock(tmp_path / "run", "run"):
        with RunLock(tmp_path / "run", "run"):
            pass
        assert (tmp_path / "run" / LOCK_NAME).exists()  # the outer holder still has it
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_dead_holders_lock_and_staging_are_taken_over(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = tmp_path / "run"
    (run / "segments").mkdir(parents=True)
    leftover = run / f".segments-staging-{gone.pid}"
    leftover.mkdir()
    (leftover / "part-00000.parquet").write_bytes(b"half written")
    other = run / ".segments-staging-1"  # not the dead holder's: left alone
    other.mkdir()
    import socket

    holder = {"pid": gone.pid, "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00", "command": "run"}
    (run / LOCK_NAME).write_text(json.dumps(holder))
    with caplog.at_level("WARNING"), RunLock(run):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] != gone.pid
    assert f"run pid {gone.pid}" in caplog.text and "no longer running" in caplog.text
    assert not leftover.exists() and other.exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = {"pid": 1, "host": "another-node", "started_at": "2026-01-01T00:00:00+00:00", "command": "run"}
    (run / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(RunLockedError, match="pid 1 on another-node, started 2026-01-01"):
        with RunLock(run):
            pass


def test_an_unreadable_lock_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("{not json")
    with pytest.raises(RunLockedError, match="cannot be read; if no segscale run uses"):
        with RunLock(run):
            pass


def test_a_holder_we_may_not_inspect_counts_as_running(tmp_path, monkeypatch):
    import socket

    import psutil

    import engine.pipeline._lock as lock_module

    def denied(pid):
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(lock_module.psutil, "Process", denied)
    run = tmp_path / "run"
    run.mkdir()
    holder = {"pid": 4242, "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00", "command": "run"}
    (run / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(RunLockedError, match="pid 4242"):
        with RunLock(run):
            pass
