"""Artifact commands: ``govflow artifacts gc``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from govflow.cli import app
from govflow.cli.common import console, emit_json, err_console, fmt_time, open_registry
from registry.gc import collect_garbage, parse_duration

artifacts_app = typer.Typer(help="Artifact store maintenance.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")


@artifacts_app.command("gc")
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Grace period: keep blobs younger than this (90s, 30m, 1h, 7d)."),
    ] = "1h",
    actor: Annotated[str | None, typer.Option("--actor", help="Who is acting (for the audit event).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Delete blobs that no version references (never a referenced one, never a young one)."""
    grace = parse_duration(older_than)
    reg = open_registry()
    try:
        # A bar only for a person watching; scripts and --json get clean output.
        show = err_console.is_terminal and not json_out
        with Progress(
            SpinnerColumn(),
            TextColumn("listing {task.fields[root]}"),
            BarColumn(),
            TextColumn("{task.completed} blobs"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not show,
        ) as bar:
            task = bar.add_task("list", total=None, root=reg.artifact_root)
            report = collect_garbage(
                reg,
                older_than=grace,
                dry_run=dry_run,
                actor=actor,
                progress=lambda n: bar.advance(task, n),
            )
    finally:
        reg.close()
    if json_out:
        emit_json(report)
        return
    verb = "would delete" if dry_run else "deleted"
    for blob in report.orphans:
        if dry_run or blob.sha256 in report.deleted:
            console.print(f"{verb} {blob.sha256}  {blob.size} bytes  written {fmt_time(blob.modified)}")
    count = len(report.orphans) if dry_run else len(report.deleted)
    size = sum(b.size for b in report.orphans) if dry_run else report.deleted_bytes
    console.print(
        f"{report.root}: {report.scanned} blobs, {report.referenced} referenced, "
        f"{report.young} younger than {older_than}; {verb} {count} ({size} bytes)"
        + (f", {report.temp_removed} partial uploads removed" if report.temp_removed else "")
    )
