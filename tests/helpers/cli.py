"""The command line run in-process (typer's CliRunner), and the check that an error is one line without a traceback."""

from __future__ import annotations

from typing import Tuple

from typer.testing import CliRunner

from anydepth.cli.main import app


def run_cli(*args) -> Tuple[int, str]:
    """``anydepth *args`` (each argument through ``str``): (exit code, output)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def assert_one_line_error(code, output, *needles):
    """A non-zero exit, no traceback, and exactly one ``error:`` line holding every needle."""
    assert code != 0
    assert "Traceback" not in output
    lines = [line for line in output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for n in needles:
        assert n in lines[0], output
