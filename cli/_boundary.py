"""The one place where errors become exit codes (DESIGN 6), as ``engine.exceptions.exit_code``
says: 0: success. 1: the work failed. 2: bad usage or bad input (click's own usage errors
included). Messages are one line on stderr; tracebacks only with ``--log-level debug``. A
command given ``--json`` also prints, on failure, one JSON document on stdout (status,
exit code, error), as it prints one on success: a scheduler parsing stdout always gets one.
"""

import logging

import typer
from typer.core import TyperGroup

from engine.exceptions import SegscaleError, exit_code, failure_message

from . import _console
from ._console import print_json, stderr

logger = logging.getLogger("segscale")

# Newer typer vendors its own click: find ClickException through BadParameter, which derives
# from it in both the vendored and the plain-click versions.
_ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


_JSON, _DOCUMENTS = "segscale.json", "segscale.json-documents"


def _answer_json(ctx, message: str, code: int) -> None:
    """With --json, the failure as the one document on stdout, unless the command wrote its
    own before failing (doctor's report, bench's results)."""
    if ctx.meta.get(_JSON) and _console.json_documents == ctx.meta[_DOCUMENTS]:
        print_json({"status": "failed", "exit_code": code, "error": message})


def _fail(ctx, message: str, code: int):
    stderr.print(f"error: {message}", highlight=False, markup=False)
    _answer_json(ctx, message, code)
    raise typer.Exit(code)


class ErrorBoundary(TyperGroup):
    """A typer group whose ``invoke`` maps engine errors to exit codes."""

    def parse_args(self, ctx, args):
        # The command's own options are parsed later, inside invoke: note --json now.
        ctx.meta[_JSON] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        ctx.meta[_DOCUMENTS] = _console.json_documents
        try:
            return super().invoke(ctx)
        except _ClickException as error:
            _answer_json(ctx, error.format_message(), error.exit_code)
            raise
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as error:
            _fail(ctx, failure_message(error), exit_code(error))
        except SegscaleError as error:
            logger.debug("work failed", exc_info=True)
            _fail(ctx, failure_message(error), exit_code(error))
        except Exception as error:
            logger.debug("internal failure", exc_info=True)
            _fail(
                ctx,
                f"{failure_message(error)} (rerun with --log-level debug for the traceback, and please report it)",
                exit_code(error),
            )
