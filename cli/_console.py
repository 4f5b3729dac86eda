"""Where output goes: data to stdout, messages and progress to stderr.

On a terminal, progress is a rich bar and logs are rich lines; otherwise (a scheduler
capturing output) both are plain timestamped log lines.
"""

import contextlib
import json
import logging
import sys
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


def print_json(document) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def progress(description: str):
    """Yield ``update(done, total)``: a bar on a terminal, a log line per ~10% otherwise."""
    if stderr.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=stderr, transient=False) as bar:
            task = bar.add_task(description, total=None)

            def update(done, total):
                bar.update(task, completed=done, total=total)

            yield update
        return
    last_logged = [-1]

    def update(done, total):
        decile = done * 10 // total
        if decile != last_logged[0] or done == total:
            last_logged[0] = decile
            logger.info("%s: %d of %d", description, done, total)

    yield update
