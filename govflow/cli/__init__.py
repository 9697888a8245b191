"""The ``govflow`` command line: a thin layer over the Python API.

Refusals and bad input print one line on stderr and exit with status 2; nothing is written.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer

# typer vendors click; its usage errors live here (typer.TyperException is their public base).
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from registry.errors import GovflowError, GovflowWarning

app = typer.Typer(
    name="govflow",
    help="Model governance: registry, approvals, audit trail and rollback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Which module defines each top-level command. A call imports only its command's modules, so
# `govflow show` never pays for the flows, the server or the reports; a name missing here (or
# --help, completion) imports them all, so the map can only make a call slower, never wrong.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "register",
            "versions",
            "show",
            "transition",
            "rollback",
            "production-at",
            "impact",
            "models",
        ),
        ("govflow.cli.registry_cmds",),
    ),
    **dict.fromkeys(("approve", "waive", "reject"), ("govflow.cli.decision_cmds",)),
    "audit": ("govflow.cli.audit_cmds",),
    "alias": ("govflow.cli.audit_cmds",),
    "evidence": ("govflow.cli.audit_cmds", "govflow.cli.evidence_pack"),
    "db": ("govflow.cli.audit_cmds", "govflow.cli.harden"),
    "artifacts": ("govflow.cli.artifacts",),
    "run": ("govflow.cli.flows",),
    "serve": ("govflow.cli.serve",),
    "server": ("govflow.cli.server",),
    "policy": ("govflow.cli.policy_cmds",),
    "users": ("govflow.cli.users",),
    "deploy": ("govflow.cli.deploy_cmd",),
    "reconcile": ("govflow.cli.reconcile_cmd",),
    "config": ("govflow.cli.config_cmds",),
}

_CORE = ("govflow.cli.registry_cmds", "govflow.cli.decision_cmds", "govflow.cli.audit_cmds")
# Modules that may be absent from a trimmed install; the core ones must import.
_OPTIONAL = (
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
    "govflow.cli.config_cmds",
)


def package_version() -> str:
    """The installed govflow package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("govflow")
    except PackageNotFoundError:
        return "0+unknown"  # run from a source tree that was never installed


def _print_version(value: bool) -> None:
    if value:
        print(f"govflow {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Model governance: registry, approvals, audit trail and rollback."""


def _register_commands(command: str | None = None) -> None:
    """Attach the commands to ``app``: those of ``command`` only when it is known, else all."""
    modules = COMMAND_MODULES.get(command or "")
    for name in modules or (*_CORE, *_OPTIONAL):
        try:
            __import__(name)
        except ModuleNotFoundError as exc:
            if exc.name != name or name in _CORE:
                raise


def _command_named(args: list[str]) -> str | None:
    """The top-level command a call names: its first word, when no root option comes first."""
    if not args or args[0].startswith("-"):
        return None  # --help, --version, completion options: they need every command
    return args[0]


def main() -> None:
    """Console entry point: run the app; refusals and usage errors become one line and exit 2."""
    args = sys.argv[1:]
    if "_GOVFLOW_COMPLETE" in os.environ:
        _register_commands()  # completion offers every command
    elif args[:1] != ["--version"]:  # the version is printed before any command is looked up
        _register_commands(_command_named(args))
    from registry.identity import acting  # pydantic: not needed to print the version

    try:
        # Registry calls from here arrive on the "cli" channel, which the audit records.
        with acting(channel="cli"), printed_warnings():
            # One program name however it is started (script, python -m govflow): usage lines and
            # the completion variable (_GOVFLOW_COMPLETE) stay the same.
            code = app(standalone_mode=False, prog_name="govflow")
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


@contextmanager
def printed_warnings() -> Iterator[None]:
    """Print each govflow warning raised inside as one ``warning: …`` line on stderr, every time.

    Python's own form is two lines naming a source file; other warnings keep it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always", GovflowWarning)
        python_form = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, GovflowWarning):
                print(f"warning: {' '.join(str(message).splitlines())}", file=sys.stderr, flush=True)
            else:
                python_form(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def _fail(message: str, code: int) -> NoReturn:
    print(f"error: {' '.join(message.splitlines())}", file=sys.stderr)
    sys.exit(code)
