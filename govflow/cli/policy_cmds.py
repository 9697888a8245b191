"""``govflow policy``: the policy kept in the registry: show it, set it (admin), list its history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from govflow.cli import app
from govflow.cli.common import console, emit_json, fmt_time, open_registry
from govflow.cli.registry_cmds import ActorOpt, JsonOpt
from registry.entities import PolicyInfo
from registry.errors import PolicyError

policy_app = typer.Typer(help="The policy in force, kept in the registry.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


def _info(p: PolicyInfo) -> dict[str, object]:
    return p.model_dump(mode="json")


def _warn(p: PolicyInfo) -> None:
    """Warnings go to stderr, so they reach a reader even when stdout is piped or is JSON."""
    for line in p.warnings:
        typer.echo(line, err=True)


@policy_app.command("show")
def policy_show(json_out: JsonOpt = False) -> None:
    """The stored policy in force: its sha256, who set it and when, and the document (warnings
    such as typed names counting on a server go to stderr)."""
    p = open_registry().policy_info()
    _warn(p)
    if json_out:
        emit_json(_info(p))
        return
    print(f"sha256  {p.sha256}")
    print(f"set by  {p.set_by} at {fmt_time(p.set_at)}" + (f": {p.reason}" if p.reason else ""))
    print()
    # Plain print: the document is meant to be read or copied into a policy file.
    print(yaml.safe_dump(p.document, sort_keys=True, default_flow_style=False).rstrip())


@policy_app.command("set")
def policy_set(
    file: Annotated[Path, typer.Argument(help="Policy file (TOML or YAML).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why the policy changes.")] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Replace the policy in force with FILE (admin only; audited with the new sha256).

    Against a server, keys FILE leaves out take the server's defaults, and turning
    authenticated_approvals off needs --reason.
    """
    try:
        readable = file.is_file()
    except OSError:  # e.g. a name too long for the file system
        readable = False
    if not readable:
        raise PolicyError(f"policy: {file} is not a readable file", field="policy")
    p = open_registry().set_policy(file, reason=reason, actor=actor)
    _warn(p)
    if json_out:
        emit_json(_info(p))
    else:
        print(f"policy set by {p.set_by}: sha256 {p.sha256}")


@policy_app.command("history")
def policy_history(json_out: JsonOpt = False) -> None:
    """Every policy set in this registry, oldest first."""
    rows = open_registry().policy_history()
    if json_out:
        emit_json([_info(p) for p in rows])
        return
    table = Table(title="policy history")
    for col in ("set at (UTC)", "sha256", "set by", "reason"):
        table.add_column(col)
    for p in rows:
        table.add_row(fmt_time(p.set_at), p.sha256[:12], p.set_by, p.reason or "")
    console.print(table)
