"""The ``govflow`` command line: a thin layer over the Python API.

Refusals and bad input print one line on stderr and exit with status 2; nothing is written.
"""

from __future__ import annotations

import sys

import typer

from registry.errors import GovflowError

app = typer.Typer(
    name="govflow",
    help="Model governance: registry, approvals, audit trail and rollback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands() -> None:
    from govflow.cli import audit_cmds, registry_cmds  # noqa: F401  (commands attach to app)

    for optional in (
        "govflow.cli.artifacts",
        "govflow.cli.flows",
        "govflow.cli.serve",
        "govflow.cli.harden",
        "govflow.cli.evidence_pack",
    ):
        try:
            __import__(optional)
        except ModuleNotFoundError as exc:
            if exc.name != optional:
                raise


def main() -> None:
    """Console entry point: run the app and turn govflow errors into one line and exit 2."""
    _register_commands()
    try:
        app()
    except GovflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
