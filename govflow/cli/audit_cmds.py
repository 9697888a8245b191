"""Audit, alias, evidence and database commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from govflow.cli import app
from govflow.cli.common import console, emit_json, fmt_time, open_registry
from govflow.cli.registry_cmds import ActorOpt, JsonOpt, VersionArg
from registry.errors import IntegrityError, InvalidInput

if TYPE_CHECKING:
    from registry.entities import AuditEvent

audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
alias_app = typer.Typer(help="Named pointers to versions.", no_args_is_help=True)
evidence_app = typer.Typer(help="Gate results kept on versions.", no_args_is_help=True)
db_app = typer.Typer(help="The registry database.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(alias_app, name="alias")
app.add_typer(evidence_app, name="evidence")
app.add_typer(db_app, name="db")


@audit_app.command("log")
def audit_log(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's events.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the last N events.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print audit events in chain order."""
    events = open_registry().audit_log(model=model, limit=limit)
    if json_out:
        emit_json(events)
        return
    console.print(_audit_table(events, console.width))


WIDE = 110  # columns from which the hash and a separate version column fit beside the action


def _audit_table(events: list[AuditEvent], width: int) -> Table:
    """The audit events as a table that fits ``width`` columns without cutting an action name.

    Narrow terminals drop the hash (``audit verify`` checks it) and show ``model/version`` in one
    column; the time wraps after the date, actors and models wrap, and the action never does.
    """
    wide = width >= WIDE
    longest = max((len(e.action) for e in events), default=6)
    table = Table(title="audit trail", box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, pad_edge=wide)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time (UTC)", min_width=10)
    table.add_column("actor", min_width=5, overflow="fold")
    # An action longer than half the screen (only custom ones are) folds rather than ends in "…".
    fits = longest <= width // 2
    table.add_column("action", no_wrap=fits, min_width=min(longest, width // 2), overflow="fold")
    if wide:
        table.add_column("model", overflow="fold")
        table.add_column("version", justify="right")
        table.add_column("hash", no_wrap=True)
    else:
        table.add_column("version", overflow="fold")
    for e in events:
        cells = [str(e.seq), fmt_time(e.at), e.actor, e.action]
        if wide:
            cells += [e.model or "-", str(e.version or "-"), e.hash[:12]]
        else:
            cells.append(f"{e.model}/{e.version}" if e.model and e.version else e.model or "-")
        table.add_row(*cells)
    return table


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="Signed checkpoint to check too: a path or s3://bucket/key."),
    ] = None,
    pubkey: Annotated[
        Path | None, typer.Option("--pubkey", help="The .pub file of the checkpoint's key.")
    ] = None,
    origin: Annotated[str | None, typer.Option("--origin", help="Require this checkpoint origin.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute the hash chain (and check a signed checkpoint). Exit 0 when intact, 1 when not."""
    from registry.checkpoint import load_verifier, read_note, verify_note

    if checkpoint is not None and pubkey is None:
        raise InvalidInput("pubkey: --checkpoint needs --pubkey (the .pub file of its key)", field="pubkey")
    if pubkey is not None and checkpoint is None:
        raise InvalidInput("checkpoint: --pubkey needs --checkpoint", field="checkpoint")
    # Bad key files and unreadable checkpoints fail (exit 2) before any work is done.
    verifier = load_verifier(pubkey) if pubkey is not None else None
    note = read_note(checkpoint)[0] if checkpoint is not None else None
    registry = open_registry()
    report = registry.verify_audit()
    check = None
    if report.ok and note is not None and verifier is not None and checkpoint is not None:
        try:
            check = verify_note(registry, note, verifier, checkpoint, origin=origin)
        except IntegrityError as exc:
            print(exc, file=sys.stderr)
            raise typer.Exit(1) from None
    if json_out:
        emit_json({"audit": report, "checkpoint": check} if check is not None else report)
    elif not report.ok:
        print(report.message, file=sys.stderr)
    else:
        console.print(report.message, highlight=False)
        if check is not None:
            console.print(
                f"checkpoint {check.source} OK: the {check.count} events signed by {check.key} are intact",
                highlight=False,
                soft_wrap=True,
            )
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("keygen")
def audit_keygen(
    out: Annotated[str, typer.Option("--out", help="Writes OUT.key (mode 0600) and OUT.pub.")],
    name: Annotated[str, typer.Option("--name", help="Key name in signature lines.")] = "govflow",
) -> None:
    """Make an Ed25519 key pair for signing checkpoints."""
    from registry.checkpoint import keygen

    key, pub = keygen(out, name)
    console.print(f"wrote {key} (private, mode 0600) and {pub} (public)", highlight=False, soft_wrap=True)


@audit_app.command("checkpoint")
def audit_checkpoint(
    key: Annotated[Path, typer.Option("--key", help="The .key file from audit keygen.")],
    out: Annotated[str, typer.Option("--out", help="Where to write: a path or s3://bucket/key.")],
    origin: Annotated[
        str | None, typer.Option("--origin", help="Origin line (default from the URL).")
    ] = None,
) -> None:
    """Sign the audit chain's current head and write the checkpoint."""
    from registry.checkpoint import load_signing_key, save_checkpoint

    signer = load_signing_key(key)
    signed, where = save_checkpoint(open_registry(), signer, out, origin=origin)
    console.print(
        f"checkpoint of {signed.count} events (head {signed.head_hash[:12]}) written to {where}",
        highlight=False,
        soft_wrap=True,
    )


@audit_app.command("export")
def audit_export(path: Annotated[Path, typer.Argument(help="JSONL file to write.")]) -> None:
    """Write the whole chain as JSONL."""
    count = open_registry().export_audit(path)
    console.print(f"wrote {count} events to {path}")


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: VersionArg,
    actor: ActorOpt = None,
) -> None:
    """Point NAME@ALIAS at VERSION (production is managed by stages)."""
    open_registry().set_alias(name, alias, version, actor=actor)
    console.print(f"{name}@{alias} -> {version}")


@alias_app.command("rm")
def alias_rm(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
    actor: ActorOpt = None,
) -> None:
    """Remove NAME@ALIAS."""
    open_registry().remove_alias(name, alias, actor=actor)
    console.print(f"{name}@{alias} removed")


@evidence_app.command("add")
def evidence_add(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg,
    gate: Annotated[str, typer.Option("--gate", help="Gate name.")],
    passed: Annotated[bool, typer.Option("--passed/--failed", help="Outcome.")],
    value: Annotated[float | None, typer.Option("--value")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold")] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Attach a gate result to a version."""
    ev = open_registry().add_evidence(
        name, version, gate=gate, passed=passed, value=value, threshold=threshold, actor=actor
    )
    if json_out:
        emit_json(ev)
    else:
        console.print(f"{name}/{version}: gate {gate} {'passed' if passed else 'failed'}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations to the registry database."""
    from registry.config import Settings
    from registry.db import Database
    from registry.db.migrate import upgrade as upgrade_schema

    db = Database(Settings.from_env().url)
    before, after = upgrade_schema(db)
    console.print(f"registry {db.safe_url}: schema {before or 'empty'} -> {after}")
