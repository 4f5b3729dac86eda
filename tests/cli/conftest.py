"""What the CLI tests share: invoking the app in-process, and reading its one-line errors."""

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def invoke(*args):
    """Run ``segscale ARGS...`` in this process; arguments are turned into strings."""
    return runner.invoke(app, [str(arg) for arg in args])


def one_line_error(result, *fragments, after_progress: bool = False):
    """Nothing on stdout, and the error as one line on stderr holding every fragment.

    With ``after_progress``, log lines of the work done before the error may precede it
    (commands that start stages log their progress); the error is still the last line and
    the only one.
    """
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == (lines[-1:] if after_progress else lines) and len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
