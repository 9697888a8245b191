"""The server's app built from the environment: what each ``govflow server --workers N`` process runs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from registry.errors import InvalidInput


def open_server_registry() -> object:
    """The embedded registry the server serves: GOVFLOW_REGISTRY_URL must name a database.

    Opened in server mode: a new registry gets the server's default policy (only authenticated
    approvals count), and so do the keys a ``GOVFLOW_POLICY`` seed leaves out.
    """
    import os

    from registry import Registry

    db_url = os.environ.get("GOVFLOW_REGISTRY_URL", "")
    if db_url.startswith(("http://", "https://")):
        raise InvalidInput(
            "GOVFLOW_REGISTRY_URL: the server needs a database URL (sqlite:///… or postgresql+psycopg://…), "
            f"not the server address {db_url}",
            field="GOVFLOW_REGISTRY_URL",
        )
    return Registry(url=db_url or None, server=True)


def app_from_env() -> FastAPI:
    """A complete app: the registry from the environment, held to the server's policy rule,
    tokens and (if configured) OIDC."""
    import logging

    from registry.auth.authenticate import Authenticator, OIDCConfig
    from registry.service.app import create_app
    from registry.service.strict import hold_to_server_rules

    registry: Any = open_server_registry()
    for warning in hold_to_server_rules(registry).warnings:
        logging.getLogger("govflow.server").warning(warning)
    return create_app(registry, Authenticator(registry.db, OIDCConfig.from_env()))  # type: ignore[attr-defined]
