"""Who is calling: authenticate the request, then run the registry call as that principal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

from fastapi import Request

from registry import identity
from registry.errors import Forbidden
from registry.validate import check_actor

T = TypeVar("T")

CHANNEL_HEADER = "x-govflow-channel"
ON_BEHALF_HEADER = "x-govflow-on-behalf-of"


class Principal(Protocol):
    name: str
    roles: frozenset[str]


class Authenticator(Protocol):
    def authenticate(self, header: str | None) -> Principal: ...


class Call:
    """One request's credentials; ``run`` authenticates and calls the registry as the principal.

    Authentication happens in ``run``, on the worker thread that does the registry call, so a
    request costs one thread hop.
    """

    __slots__ = ("authorization", "channel", "on_behalf_of", "authenticator", "registry")

    def __init__(self, request: Request) -> None:
        headers = request.headers
        self.authorization = headers.get("authorization")
        self.channel = headers.get(CHANNEL_HEADER) or "api"
        self.on_behalf_of = headers.get(ON_BEHALF_HEADER)
        self.authenticator: Authenticator = request.app.state.authenticator
        self.registry: Any = request.app.state.registry

    def caller(self) -> identity.Caller:
        """The authenticated caller; refuses a non-admin's on-behalf-of header."""
        principal = self.authenticator.authenticate(self.authorization)
        on_behalf = None
        if self.on_behalf_of is not None:
            if "admin" not in principal.roles:
                raise Forbidden(
                    f"on_behalf_of: {principal.name} may not act on behalf of someone; only an admin may",
                    field="on_behalf_of",
                )
            on_behalf = check_actor(unquote(self.on_behalf_of))  # the actor the admin acts as
        return identity.Caller(
            channel=self.channel,
            principal=principal.name,
            roles=frozenset(principal.roles),
            on_behalf_of=on_behalf,
        )

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` as the authenticated caller."""
        with identity.acting(self.caller()):
            return fn(*args, **kwargs)


async def call(request: Request) -> Call:
    """FastAPI dependency: the request's credentials (no I/O here; see ``Call.run``)."""
    return Call(request)
