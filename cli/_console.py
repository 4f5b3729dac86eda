"""Where output goes: data to stdout, messages and progress to stderr.

On a terminal, progress is a rich bar and logs are rich lines; otherwise (a scheduler
capturing output) both are plain timestamped log lines.
"""

import contextlib
import json
import logging
import os
import sys
import threading
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.exceptions import UsageError

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
logger = logging.getLogger("segscale")
LOG_LEVELS = ("debug", "info", "warning", "error")


_OWN_LOGGERS = ("segscale", "engine", "cli", "benchmarks")


# distributed announces every shuffle starting and stopping as a warning: routine, not news.
_ROUTINE_WARNINGS = ("distributed.shuffle",)


class _OwnOrWarning(logging.Filter):
    """Our messages at the chosen level; third-party ones (distributed is chatty) only as warnings."""

    def filter(self, record):
        if record.name.split(".")[0] in _OWN_LOGGERS:
            return True
        if record.name.startswith(_ROUTINE_WARNINGS):
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING


def configure_logging(level: str) -> None:
    if stderr.is_terminal:
        handler = RichHandler(console=stderr, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    handler.addFilter(_OwnOrWarning())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


# Documents print_json wrote in this process: a command that fails after writing its document
# gets no second one from the error boundary.
json_documents = 0


def print_json(document) -> None:
    """Exactly one JSON document on stdout."""
    global json_documents
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()
    json_documents += 1


def show_stage(stage: dict, as_json: bool, show) -> None:
    """A stage's manifest entry: its summary as JSON, or shown by ``show``; a stage that was
    up to date says so first."""
    summary = stage["summary"]
    if as_json:
        print_json(summary)
        return
    if stage["status"] == "skipped":
        stdout.print(f"up to date (finished {stage['finished_at']}), not run again; --force runs it", highlight=False)
    show(summary)


# Under a scheduler, the longest a command stays silent: a phase without tasks (resolving
# identities, fitting a model) logs that it is still working at this interval.
HEARTBEAT_S = 30.0


def against_rfm_grid(summary: dict) -> str | None:
    """The segment stage's comparison with the RFM grid at equal group count, in one line
    (None outside a backtest)."""
    from engine.segments import MEASURES, VERDICTS

    against = summary.get("against_rfm_grid")
    if not against:
        return None
    measures = "; ".join(
        f"{label} {against[key]['segments']:.3f} vs {against[key]['rfm_grid']:.3f}, {VERDICTS[against[key]['segments_win']]}"
        for key, label in MEASURES.items()
    )
    return f"against the RFM grid in {against['groups']} groups, on what {against['customers']:,} customers did next: {measures}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class _Tally:
    """Tasks done of a total, with their rate and the time left at that rate.

    The rate counts from the phase's first update (its start is not known here), so the
    first line of a phase has none.
    """

    def __init__(self):
        self.started = self.since = time.monotonic()
        self.done = self.done_since = 0
        self.total = None

    def update(self, done, total):
        if total != self.total:  # a new phase: its own rate
            self.since, self.done_since = time.monotonic(), done
        self.done, self.total = done, total

    def line(self, description: str) -> str:
        if not self.total:
            return f"{description}: working, {_duration(time.monotonic() - self.started)} in"
        text = f"{description}: {self.done} of {self.total}"
        elapsed, counted = time.monotonic() - self.since, self.done - self.done_since
        if counted > 0 and elapsed > 0:
            rate = counted / elapsed
            text += f", {rate:.2f}/s" if rate < 10 else f", {rate:.0f}/s"
            if self.done < self.total:
                text += f", about {_duration((self.total - self.done) / rate)} left"
        return text


@contextlib.contextmanager
def progress(description: str, *, heartbeat_s: float = HEARTBEAT_S):
    """Yield ``update(done, total)``: a bar with its rate and time left on a terminal; otherwise
    a log line per ~10% with the rate and time left, and one at least every ``heartbeat_s``
    seconds while work goes on between updates (a phase with no tasks, a long task)."""
    if stderr.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("left"), TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=stderr, transient=False) as bar:
            task = bar.add_task(description, total=None)

            def update(done, total):
                bar.update(task, completed=done, total=total)

            yield update
        return
    tally, last_logged, lock = _Tally(), [-1, time.monotonic()], threading.Lock()
    stop = threading.Event()

    def log():
        logger.info("%s", tally.line(description))
        last_logged[1] = time.monotonic()

    def update(done, total):
        with lock:
            if total != tally.total:
                last_logged[0] = -1
            tally.update(done, total)
            decile = done * 10 // total
            if decile != last_logged[0] or done == total:
                last_logged[0] = decile
                log()

    def beat():
        while not stop.wait(heartbeat_s / 4):
            with lock:
                if time.monotonic() - last_logged[1] >= heartbeat_s:
                    log()

    beating = threading.Thread(target=beat, name="segscale-heartbeat", daemon=True)
    beating.start()
    try:
        yield update
    finally:
        stop.set()
        beating.join()


UMASK_ENV_VAR = "SEGSCALE_UMASK"


def apply_umask() -> None:
    """Files this process and its workers create are private by default (0600, directories
    0700): outputs hold customer keys, scores and, in the identity mapping, original ids.
    ``SEGSCALE_UMASK`` (octal, such as ``027`` to share with the group) says otherwise."""
    text = os.environ.get(UMASK_ENV_VAR, "077")
    try:
        mask = int(text, 8)
    except ValueError:
        raise UsageError(f"{UMASK_ENV_VAR}={text!r} is not an octal umask such as 077 or 027") from None
    if not 0 <= mask <= 0o777:
        raise UsageError(f"{UMASK_ENV_VAR}={text!r} is not an octal umask such as 077 or 027")
    os.umask(mask)
