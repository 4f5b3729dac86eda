"""``segscale``: thin typer commands, one module per group; each parses options and calls one
engine function.

Errors become exit codes in ``cli/_boundary.py`` only.
"""

import signal
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
from ._stages import features, ingest, segments, value

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
                run, report, demo):  # fmt: skip
    app.command()(command)


def _terminate(signum, frame):
    # Once: a second SIGTERM while cleaning up must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def main() -> None:
    """The ``segscale`` command: private files (``apply_umask``), SIGTERM handled as an
    interrupt (staging removed, manifest written, lock released, exit 143), then the app."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        apply_umask()
    except UsageError as error:
        stderr.print(f"error: {error}", highlight=False, markup=False)
        raise SystemExit(2) from None
    app()
