"""``govflow reconcile``: settle versions whose wait for approval ended without a decision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from govflow.cli import app
from govflow.cli.common import console, emit_json


@app.command()
def reconcile(
    name: Annotated[str | None, typer.Argument(help="Model name; default every model.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Pipeline config: its registry and deploy target.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the actions as JSON.")] = False,
) -> None:
    """Settle staged versions whose approval wait ended (timed out, cancelled, crashed).

    Promotes a version when the registry holds the approvals the policy needs, else rejects it
    (audited). With PREFECT_API_URL set it also reads each waiting run's state, renames a
    timed-out run TimedOut, and resumes runs the registry decided while they waited.
    """
    from flows.config import PipelineConfig
    from flows.reconcile import reconcile_waiting
    from flows.steps import open_registry
    from registry import Registry

    cfg = PipelineConfig.load(config) if config is not None else None
    reg = open_registry(cfg) if cfg is not None else Registry()
    try:
        actions = reconcile_waiting(reg, name, cfg)
    finally:
        reg.close()
    if json_out:
        emit_json([a.model_dump() for a in actions])
        return
    if not actions:
        console.print("nothing waits for approval")
        return
    table = Table(title="reconcile")
    for col in ("model", "version", "action", "run", "reason"):
        table.add_column(col)
    for a in actions:
        table.add_row(a.model, str(a.version), a.action, (a.run_id or "-")[:8], a.reason)
    console.print(table)
