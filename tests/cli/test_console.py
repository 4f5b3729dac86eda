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
    # The first task, then every tenth of them.
    assert len(logged) == 11 and logged[-1].startswith("ingest tasks: 20 of 20, ")
    assert "left" not in logged[-1]
    first = logged[0]
    assert first.startswith("ingest tasks: 1 of 20, ") and "/s, about " in first and first.endswith(" s left")


def test_a_new_phase_logs_from_its_start(lines):
    with _console.progress("tasks", heartbeat_s=60) as update:
        update(1, 1)
        update(0, 5)
        update(1, 5)
    logged = lines()
    assert logged[0].startswith("tasks: 1 of 1, ") and logged[1] == "tasks: 0 of 5"


def test_silence_is_broken_by_a_heartbeat(lines):
    with _console.progress("segment tasks", heartbeat_s=0.2):
        time.sleep(0.5)
    assert any(line.startswith("segment tasks: working, ") for line in lines())
    with _console.progress("score tasks", heartbeat_s=0.2) as update:
        update(3, 30)
        time.sleep(0.5)
    beats = [line for line in lines() if line.startswith("score tasks: 3 of 30, ")]
    assert len(beats) >= 2 and all(" left" in line for line in beats)


def test_the_heartbeat_stops_with_the_work(lines):
    with _console.progress("tasks", heartbeat_s=0.1) as update:
        update(1, 2)
    count = len(lines())
    time.sleep(0.3)
    assert len(lines()) == count
