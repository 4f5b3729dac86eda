"""Progress under a scheduler: log lines with rate and time left, and a heartbeat."""

import logging
import time

import pytest

from cli import _console


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="segscale")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "segscale"]


def test_a_line_per_tenth_with_rate_and_time_left(lines):
    with _console.progress("ingest tasks", heartbeat_s=60) as update:
        for done in range(1, 21):
            update(done, 20)
    logged = lines()
    # The first task (no rate yet: the phase's start is not known), then every tenth.
    assert len(logged) == 11 and logged[0] == "ingest tasks: 1 of 20"
    second = logged[1]
    assert second.startswith("ingest tasks: 2 of 20, ") and "/s, about " in second and second.endswith(" s left")
    assert logged[-1].startswith("ingest tasks: 20 of 20, ") and "left" not in logged[-1]


def test_the_rate_counts_from_the_phase_s_first_update(lines, monkeypatch):
    clock = iter([0.0, 100.0, 100.0, 110.0, 110.0, 120.0, 120.0])
    monkeypatch.setattr(_console.time, "monotonic", lambda: next(clock, 120.0))
    tally = _console._Tally()
    tally.update(5, 100)
    assert tally.line("t") == "t: 5 of 100"
    tally.update(10, 100)
    # 5 tasks in the 10 s since the first update: 0.50/s, 90 left.
    assert tally.line("t") == "t: 10 of 100, 0.50/s, about 3 min 00 s left"


def test_a_new_phase_logs_from_its_start(lines):
    with _console.progress("tasks", heartbeat_s=60) as update:
        update(1, 1)
        update(0, 5)
        update(1, 5)
    assert lines()[:2] == ["tasks: 1 of 1", "tasks: 0 of 5"]


def test_silence_is_broken_by_a_heartbeat(lines):
    with _console.progress("segment tasks", heartbeat_s=0.2):
        time.sleep(0.5)
    assert any(line.startswith("segment tasks: working, ") for line in lines())
    with _console.progress("score tasks", heartbeat_s=0.2) as update:
        update(3, 30)
        update(4, 30)
        time.sleep(0.5)
    beats = [line for line in lines() if line.startswith("score tasks: 4 of 30, ")]
    assert len(beats) >= 2 and all(" left" in line for line in beats)


def test_the_heartbeat_stops_with_the_work(lines):
    with _console.progress("tasks", heartbeat_s=0.1) as update:
        update(1, 2)
    count = len(lines())
    time.sleep(0.3)
    assert len(lines()) == count
