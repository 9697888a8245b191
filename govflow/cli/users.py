"""User commands: ``govflow users add | list | revoke | rotate`` (admin only on a server)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from govflow.cli import app
from govflow.cli.common import console, emit_json, err_console, fmt_time, open_registry
from registry.auth.entities import NewToken
from registry.errors import InvalidInput

users_app = typer.Typer(help="API users of the registry server and their tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NameArg = Annotated[str, typer.Argument(help="User name.")]
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"([0-9]{1,6})([mhdw])")


def parse_lifetime(text: str) -> timedelta:
    """``90m``, ``12h``, ``30d``, ``4w``: a positive whole number and a unit (ASCII only)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"--expires-in: {text!r} is not a positive duration like 90m, 12h, 30d or 4w", field="expires_in"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _show_token(new: NewToken, json_out: bool) -> None:
    if json_out:
        emit_json({"name": new.name, "roles": new.roles, "token": new.token})
        return
    err_console.print(f"token for {new.name} ({', '.join(new.roles)}); store it now, it is not shown again:")
    print(new.token)  # plain print: no wrapping or markup around the secret


@users_app.command("add")
def add(
    name: NameArg,
    role: Annotated[
        list[str],
        typer.Option("--role", help="Role: reader, pipeline, approver, operator or admin (repeatable)."),
    ],
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Token lifetime, e.g. 30d, 12h (default: none).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a user and print its token once."""
    lifetime = parse_lifetime(expires_in) if expires_in is not None else None
    reg = open_registry()
    try:
        new = reg.add_user(name, role, expires_in=lifetime)
    finally:
        reg.close()
    _show_token(new, json_out)


@users_app.command("list")
def list_users(json_out: JsonOpt = False) -> None:
    """List users, their roles and whether their token works now."""
    reg = open_registry()
    try:
        found = reg.list_users()
    finally:
        reg.close()
    if json_out:
        emit_json([u.model_dump(mode="json") for u in found])
        return
    table = Table("name", "roles", "active", "created", "by", "rotated", "expires", "revoked")
    for u in found:
        table.add_row(
            u.name,
            ", ".join(u.roles),
            "yes" if u.active else "no",
            fmt_time(u.created_at),
            u.created_by,
            fmt_time(u.rotated_at),
            fmt_time(u.expires_at),
            fmt_time(u.revoked_at),
        )
    console.print(table)


@users_app.command("revoke")
def revoke(name: NameArg) -> None:
    """Revoke a user's token; it is refused from the next request on."""
    reg = open_registry()
    try:
        info = reg.revoke_user(name)
    finally:
        reg.close()
    console.print(f"revoked {info.name} at {fmt_time(info.revoked_at)}", markup=False)


@users_app.command("rotate")
def rotate(name: NameArg, json_out: JsonOpt = False) -> None:
    """Replace a user's token and print the new one once; the old one stops working."""
    reg = open_registry()
    try:
        new = reg.rotate_user(name)
    finally:
        reg.close()
    _show_token(new, json_out)
