"""The one place where errors become exit codes (DESIGN 6), as ``engine.exceptions.exit_code``
says: 0: success. 1: the work failed. 2: bad usage or bad input (click's own usage errors
included). Messages are one line on stderr; tracebacks only with ``--log-level debug``.
"""

import logging

import typer
from typer.core import TyperGroup

from engine.exceptions import SegscaleError, exit_code, failure_message

from ._console import stderr

logger = logging.getLogger("segscale")

# Newer typer vendors its own click: find ClickException through BadParameter, which derives
# from it in both the vendored and the plain-click versions.
_ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")
_CLICK_CONTROL_FLOW = (_ClickException, typer.Exit, typer.Abort)


def _fail(message: str, code: int):
    stderr.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


class ErrorBoundary(TyperGroup):
    """A typer group whose ``invoke`` maps engine errors to exit codes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _CLICK_CONTROL_FLOW:
            raise
        except KeyboardInterrupt as error:
            _fail(failure_message(error), exit_code(error))
        except SegscaleError as error:
            logger.debug("work failed", exc_info=True)
            _fail(failure_message(error), exit_code(error))
        except Exception as error:
            logger.debug("internal failure", exc_info=True)
            _fail(
                f"{failure_message(error)} (rerun with --log-level debug for the traceback, and please report it)",
                exit_code(error),
            )
