"""Run the ``govflow`` command line in this process, so thousands of fuzz examples stay fast."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import govflow.cli


@dataclass
class CliResult:
    """Exit status and captured output of one in-process CLI run."""

    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """``govflow ARGS`` through its real entry point (``main``), with sys.argv patched."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["govflow", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            govflow.cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return CliResult(code, out.getvalue(), err.getvalue())
