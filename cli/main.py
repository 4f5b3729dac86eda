"""``segscale``: thin typer commands, one module per group; each parses options and calls one
engine function.

Errors become exit codes in ``cli/_boundary.py`` only.
"""

import _thread
import os
import signal
import sys
import threading
from typing import Annotated

import typer

import engine
from engine.exceptions import Terminated, UsageError

from ._bench import bench
from ._boundary import ErrorBoundary
from ._compare import compare
from ._console import apply_umask, configure_logging, stderr, stdout
from ._options import LogLevel
from ._propensity import monitor, propensity, score
from ._run import demo, report, run
from ._setup import check, doctor, generate
from ._stages import activate, features, ingest, lookalike, measure, segments, update, value

app = typer.Typer(
    cls=ErrorBoundary,
    name="segscale",
    help="Customer segments, propensity scores and lifetime value for millions of customers, on GPU or CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _version(value: bool):
    if value:
        stdout.print(f"segscale {engine.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    log_level: Annotated[LogLevel, typer.Option("--log-level", help="Verbosity of messages on stderr.")] = LogLevel.info,
):
    configure_logging(log_level.value)


# In the order `segscale --help` lists them.
for command in (generate, doctor, check, ingest, features, segments, compare, bench, value, propensity, score, monitor,
                activate, measure, lookalike, update, run, report, demo):  # fmt: skip
    app.command()(command)


def _terminate(signum, frame):
    # Once: a second SIGTERM while cleaning up must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def _redeliver_swallowed_interrupts(unraisable, previous_hook=sys.unraisablehook):
    """A signal's exception raised where Python cannot propagate it (a garbage-collector
    callback such as distributed's GC diagnosis, a ``__del__``) is only printed, and the run
    would go on as if never stopped: deliver it again, from a thread so that it lands in the
    main thread's ordinary code rather than in the same callback. Not printed: the interrupt is
    reported once, where it ends the command."""
    if issubclass(unraisable.exc_type, Terminated):
        signal.signal(signal.SIGTERM, _terminate)
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
    elif issubclass(unraisable.exc_type, KeyboardInterrupt):
        threading.Timer(0.05, _thread.interrupt_main).start()
    else:
        previous_hook(unraisable)


def handle_termination() -> None:
    """SIGTERM handled as an interrupt (staging removed, manifest written, lock released, exit
    143), and an interrupt swallowed in a callback delivered again."""
    signal.signal(signal.SIGTERM, _terminate)
    sys.unraisablehook = _redeliver_swallowed_interrupts


def main() -> None:
    """The ``segscale`` command: private files (``apply_umask``), SIGTERM handled as an
    interrupt (`handle_termination`), then the app."""
    handle_termination()
    try:
        apply_umask()
    except UsageError as error:
        stderr.print(f"error: {error}", highlight=False, markup=False)
        raise SystemExit(2) from None
    app()
