"""The ``govflow`` command line: a thin layer over the Python API.

Refusals and bad input print one line on stderr and exit with status 2; nothing is written.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

# typer vendors click; its usage errors live here (typer.TyperException is their public base).
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from registry.errors import GovflowError
from registry.identity import acting

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
        "govflow.cli.policy_cmds",
        "govflow.cli.users",
        "govflow.cli.server",
        "govflow.cli.deploy_cmd",
        "govflow.cli.reconcile_cmd",
    ):
        try:
            __import__(optional)
        except ModuleNotFoundError as exc:
            if exc.name != optional:
                raise


def main() -> None:
    """Console entry point: run the app; refusals and usage errors become one line and exit 2."""
    _register_commands()
    try:
        # Registry calls from here arrive on the "cli" channel, which the audit records.
        with acting(channel="cli"):
            code = app(standalone_mode=False)
    except GovflowError as exc:
        _fail(str(exc), 2)
    except NoArgsIsHelpError:
        sys.exit(2)  # the help text is already printed
    except UsageError as exc:
        _fail(_usage_line(exc), 2)
    except typer.TyperException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    # Without standalone mode, --help and typer.Exit come back as an exit code; commands return None.
    sys.exit(code if isinstance(code, int) else 0)


def _usage_line(exc: UsageError) -> str:
    """Click's usage error as one line, naming the command it came from."""
    message = " ".join(exc.format_message().split())
    command = exc.ctx.command_path if exc.ctx is not None else "govflow"
    return f"{command}: {message} (see '{command} --help')"


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {' '.join(message.splitlines())}", file=sys.stderr)
    sys.exit(code)
