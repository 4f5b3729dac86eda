"""Typed errors raised by the engine.

The CLI maps them to exit codes in one place (``cli/_boundary.py``, through `exit_code`):
a ``UsageError`` (bad config, bad input, a backend that is not available, a run directory
in use) exits with 2, any other exception with 1.
"""

__all__ = [
    "one_line",
    "SegscaleError",
    "UsageError",
    "ConfigError",
    "InputDataError",
    "BackendUnavailableError",
    "RunLockedError",
    "Terminated",
    "exit_code",
    "failure_message",
]


def one_line(error: BaseException) -> str:
    """An exception's text with its whitespace collapsed: third-party errors (CuPy, pyarrow)
    often span lines, and our messages are one line."""
    return " ".join(str(error).split())


class SegscaleError(Exception):
    """Base class: the work failed (exit code 1)."""


class UsageError(SegscaleError):
    """The user asked for something that cannot be done as asked (exit code 2).

    Messages are one line, name the file, section, row or column at fault and,
    where it helps, what to do instead.
    """


class ConfigError(UsageError):
    """A run config is unreadable or invalid."""


class InputDataError(UsageError):
    """An input file is missing, unreadable or lacks a required column."""


class BackendUnavailableError(UsageError):
    """``backend="gpu"`` was asked for but cuDF, cuML or a CUDA device is missing."""

    def __init__(self, missing):
        self.missing = tuple(missing)
        super().__init__(
            "GPU backend requested but not available: "
            + "; ".join(self.missing)
            + " (install the gpu-cu12 or gpu-cu13 extra on a CUDA node, or use --backend cpu)"
        )


class RunLockedError(UsageError):
    """Another run holds the run directory's lock."""


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM (a scheduler stopping the job, a time limit): handled as an
    interrupt (staging removed, manifest ``interrupted``, lock released), exit code 143."""


def exit_code(error: BaseException) -> int:
    """The exit status an error ends a command with: 2 for bad usage or input, 130 for an
    interrupt (143 for SIGTERM, as the shell reports a process it ends), else 1.

    Run manifests record it, so a scheduler reading the manifest sees what the shell saw.
    """
    if isinstance(error, Terminated):
        return 143
    if isinstance(error, KeyboardInterrupt):
        return 130
    return 2 if isinstance(error, UsageError) else 1


def failure_message(error: BaseException) -> str:
    """The one line an error is reported with, on stderr and in run manifests."""
    if isinstance(error, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, SegscaleError):
        return one_line(error)
    return f"internal failure: {type(error).__name__}: {one_line(error)}"
