"""``govflow serve NAME``: serve the production version of a model, following promotions."""

from __future__ import annotations

from typing import Annotated

import typer

from govflow.cli import app
from govflow.cli.common import open_registry
from registry.entities import check_name
from registry.errors import InvalidInput


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="Model name; its production version is served.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 picks a free one).")] = 8080,
    poll: Annotated[
        float, typer.Option("--poll", help="Seconds between registry checks; 0 leaves only POST /reload.")
    ] = 2.0,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Who the server's audit events name (default: GOVFLOW_ACTOR)."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's own log level.")] = "info",
    no_schema: Annotated[
        bool,
        typer.Option(
            "--no-schema",
            help="Serve a version that records no input schema: rows pass through as a DataFrame of their keys.",
        ),
    ] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Load a pickle/joblib version (runs its code; the policy must allow pickle too; audited).",
        ),
    ] = False,
) -> None:
    """Serve NAME@production over HTTP: /predict, /predict_proba, /model, /health, /reload.

    /predict takes our records and MLflow's request shapes (dataframe_records, dataframe_split,
    instances, inputs). Hot-swaps on promotion and rollback; a version that fails to load is
    refused and the old one keeps serving (health: degraded). Refuses to start when nothing is
    in production, and when the version records no input schema unless --no-schema.
    """
    check_name(name)
    if poll < 0:
        raise InvalidInput(f"--poll: {poll} must be 0 or more", field="poll")
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port: {port} is not a TCP port", field="port")
    from deployments.server import serve as run  # fastapi/uvicorn load only for this command

    run(
        name,
        host=host,
        port=port,
        poll=poll,
        registry=open_registry(),
        actor=actor,
        log_level=log_level,
        no_schema=no_schema,
        allow_pickle=allow_pickle,
    )
