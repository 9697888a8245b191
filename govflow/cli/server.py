"""``govflow server``: the registry server. It alone holds the database URL and the artifact root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from govflow.cli import app
from registry.errors import InvalidInput


@app.command("server")
def server_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 5000,
    init_admin: Annotated[
        str | None, typer.Option("--init-admin", help="Create the first admin (empty users table only).")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Where --init-admin writes the admin token (mode 0600)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Server processes (each with its own pool).")] = 1,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's own log level.")] = "info",
) -> None:
    """Serve the registry API over HTTP; every request but /health needs a token or an OIDC JWT.

    Reads GOVFLOW_REGISTRY_URL (a database URL), GOVFLOW_ARTIFACT_ROOT, GOVFLOW_POLICY (seeds an
    empty registry only) and GOVFLOW_OIDC_*. Only authenticated approvals count: keys a seed
    leaves out take that default, and a stored policy counting typed names is tightened at start
    unless an admin set it so on the server (`govflow policy set --reason`), which prints a
    warning.
    """
    if not 0 < port <= 65535:
        raise InvalidInput(f"--port: {port} is not a TCP port", field="port")
    if (init_admin is None) != (token_file is None):
        raise InvalidInput("--init-admin and --token-file go together", field="init_admin")
    if workers < 1:
        raise InvalidInput(f"--workers: {workers} must be at least 1", field="workers")
    import uvicorn  # loaded only for this command

    from registry import identity
    from registry.auth.admin import init_admin as make_admin
    from registry.auth.authenticate import Authenticator, OIDCConfig
    from registry.service import create_app
    from registry.service.factory import open_server_registry
    from registry.service.strict import hold_to_server_rules

    oidc = OIDCConfig.from_env()  # a bad OIDC setting is refused before anything starts
    registry: Any = open_server_registry()
    try:
        rules = hold_to_server_rules(registry)  # before the first admin: the policy is recorded first
        for line in rules.lines:
            typer.echo(line)
        for warning in rules.warnings:
            typer.echo(warning, err=True)
        if init_admin is not None and token_file is not None:
            with identity.acting(channel="server"):
                made = make_admin(registry, init_admin, token_file)
            typer.echo(f"admin {made.name}: token written to {token_file} (mode 0600)")
        typer.echo(f"govflow server on http://{host}:{port} (API under /api/v1, OpenAPI at /openapi.json)")
        options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": False}
        if workers > 1:  # each worker process opens its own registry from the environment
            registry.close()
            uvicorn.run("registry.service.factory:app_from_env", factory=True, workers=workers, **options)
            return
        uvicorn.run(create_app(registry, Authenticator(registry.db, oidc)), lifespan="off", **options)
    finally:
        registry.close()
