"""``govflow evidence NAME/V --out DIR``: write a version's evidence pack.

``govflow evidence`` also holds ``add``; a first argument that is not a subcommand (a reference
such as ``churn/3`` or ``churn@production``) is read as a pack request, so both live on one group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from govflow.cli.audit_cmds import evidence_app
from govflow.cli.common import open_registry

PACK_COMMAND = "pack"


class EvidenceGroup(TyperGroup):
    """The ``evidence`` group: subcommands, or a reference that asks for a pack."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Anything but a subcommand or --help is a pack request, so a bare name gets the
        # reference error (one line) rather than "no such command".
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [PACK_COMMAND, *args]
        return super().parse_args(ctx, args)


evidence_app.info.cls = EvidenceGroup
evidence_app.info.help = (
    "Gate results kept on versions, and evidence packs: govflow evidence NAME/V --out DIR."
)


@evidence_app.command(PACK_COMMAND)
def evidence_pack(
    ref: Annotated[str, typer.Argument(help="Version: NAME/VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the pack into.")],
    fmt: Annotated[str, typer.Option("--format", help="html, md or json.")] = "html",
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint", help="Signed checkpoint to prove the events against: a path or s3://bucket/key."
        ),
    ] = None,
    pubkey: Annotated[
        Path | None, typer.Option("--pubkey", help="Public key that signed the checkpoint.")
    ] = None,
) -> None:
    """Write the evidence pack of a version (also: govflow evidence NAME/V --out DIR).

    Reads only what a reader may read, so it works against a server with a reader token.
    """
    # The report templates (jinja2) load only when a pack is written.
    from registry.reports import build_pack, write_pack
    from registry.reports.render import parse_format

    kind = parse_format(fmt)  # refuse a bad format before reading anything
    pack = build_pack(open_registry(), ref, checkpoint=checkpoint, pubkey=pubkey)
    path = write_pack(pack, out, kind)
    print(path)
