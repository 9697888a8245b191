"""The server's app built from the environment: what each ``govflow server --workers N`` process runs."""

from __future__ import annotations

from fastapi import FastAPI

from registry.errors import InvalidInput


def open_server_registry() -> object:
    """The embedded registry the server serves: GOVFLOW_REGISTRY_URL must name a database.

    A new registry gets the server-mode default policy (only authenticated approvals count).
    """
    import os

    from registry import Registry
    from registry.policy import Policy

    db_url = os.environ.get("GOVFLOW_REGISTRY_URL", "")
    if db_url.startswith(("http://", "https://")):
        raise InvalidInput(
            "GOVFLOW_REGISTRY_URL: the server needs a database URL (sqlite:///… or postgresql+psycopg://…), "
            f"not the server address {db_url}",
            field="GOVFLOW_REGISTRY_URL",
        )
    return Registry(url=db_url or None, default_policy=Policy(authenticated_approvals=True))


def app_from_env() -> FastAPI:
    """A complete app: the registry from the environment, tokens and (if configured) OIDC."""
    from registry.auth.authenticate import Authenticator, OIDCConfig
    from registry.service.app import create_app

    registry = open_server_registry()
    return create_app(registry, Authenticator(registry.db, OIDCConfig.from_env()))  # type: ignore[attr-defined]
