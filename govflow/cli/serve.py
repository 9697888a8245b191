"""``govflow serve NAME``: serve the production version of a model, following promotions."""

from __future__ import annotations

from pathlib import Path
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
        float,
        typer.Option(
            "--poll",
            help="Seconds between registry checks; 0 leaves only POST /reload (needs a reload token).",
        ),
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
    reload_token_file: Annotated[
        Path | None,
        typer.Option(
            "--reload-token-file",
            help=(
                "File holding the token POST /reload must send as 'Authorization: Bearer TOKEN' "
                "(default: GOVFLOW_SERVE_TOKEN, else the file GOVFLOW_SERVE_TOKEN_FILE names). "
                "Without a token /reload is off and the poll alone follows the registry."
            ),
        ),
    ] = None,
) -> None:
    """Serve NAME@production over HTTP: /predict, /predict_proba, /model, /health, /reload.

    /predict takes our records and MLflow's request shapes (dataframe_records, dataframe_split,
    instances, inputs). Hot-swaps on promotion and rollback; a version that fails to load is
    refused and the old one keeps serving (health: degraded). Refuses to start when nothing is
    in production, when the version records no input schema unless --no-schema, and with
    --poll 0 but no reload token. POST /reload needs the reload token (it is off without one).
    """
    check_name(name)
    if poll < 0:
        raise InvalidInput(f"--poll: {poll} must be 0 or more", field="poll")
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port: {port} is not a TCP port", field="port")
    from deployments.reload_token import configured_token
    from deployments.server import serve as run  # fastapi/uvicorn load only for this command

    token = configured_token(reload_token_file)  # a bad token file is refused before anything starts

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
        reload_token=token,
    )
