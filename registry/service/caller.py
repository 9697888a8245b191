"""Who is calling, and whether the route lets them: authenticate, check the route's permission,
then run the registry call as that principal.

Every route declares what it needs with ``needs(...)`` (or ``public()``); ``GuardedRoute`` checks
it before the request body is read, and publishes it in the OpenAPI document as
``x-govflow-permissions`` and ``x-govflow-roles``. The registry still checks its own finer rules
(a pipeline may reject only its own version, say) on the call itself, embedded too.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from registry import identity
from registry.errors import Forbidden
from registry.validate import check_actor

T = TypeVar("T")

CHANNEL_HEADER = "x-govflow-channel"
ON_BEHALF_HEADER = "x-govflow-on-behalf-of"
ANYONE = "anyone"  # the roles of a public route: no credential needed


class Principal(Protocol):
    name: str
    roles: frozenset[str]


class Authenticator(Protocol):
    def authenticate(self, header: str | None) -> Principal: ...


class Needs:
    """What a route needs: any one of ``permissions``; ``ability`` words the refusal."""

    def __init__(self, permissions: tuple[str, ...], ability: str | None = None) -> None:
        unknown = [p for p in permissions if p not in identity.PERMISSIONS]
        if not permissions or unknown:
            raise ValueError(f"needs: {unknown or 'nothing'} is not a permission of registry.identity")
        self.permissions = permissions
        self.ability = ability or " or ".join(identity.ABILITIES[p] for p in permissions)
        self.roles = identity.roles_for(*permissions)

    def check(self, caller: identity.Caller, method: str, path: str) -> None:
        """Refuse, in one line, a caller holding none of the permissions."""
        if any(caller.may(p) for p in self.permissions):
            return
        need = " or ".join(r for r in self.roles if r != "admin") or "admin"
        have = ", ".join(sorted(caller.roles or ())) or "no role"
        raise Forbidden(
            f"{caller.principal} may not {self.ability} ({method} {path}): it needs the {need} role "
            f"(has {have})",
            field="role",
        )

    async def __call__(self, request: Request) -> Call:
        # GuardedRoute admitted the caller already; a route of another class admits in ``run``.
        admitted = getattr(request.state, "govflow_call", None)
        return admitted if isinstance(admitted, Call) else Call(request, self)


class Public:
    """Marks a route that needs no credential (``/health``)."""

    async def __call__(self) -> None:
        return None


def needs(*permissions: str, to: str | None = None) -> Any:
    """The route's ``Call``, admitted only for a caller holding one of ``permissions``.

    ``to`` words the refusal ("rita may not <to> (POST /api/v1/…)"); by default the
    permissions' abilities from ``registry.identity.ABILITIES``.
    """
    return Depends(Needs(permissions, to))


def public() -> Any:
    """A dependency declaring that the route needs no credential."""
    return Depends(Public())


class Call:
    """One request's credentials and what its route needs.

    ``admit`` authenticates and checks the route's permission (once; ``run`` reuses it), on a
    worker thread, because a token check reads the database.
    """

    __slots__ = (
        "authorization",
        "channel",
        "on_behalf_of",
        "authenticator",
        "registry",
        "needs",
        "method",
        "path",
        "admitted",
    )

    def __init__(self, request: Request, needs: Needs, path: str | None = None) -> None:
        headers = request.headers
        self.authorization = headers.get("authorization")
        self.channel = headers.get(CHANNEL_HEADER) or "api"
        self.on_behalf_of = headers.get(ON_BEHALF_HEADER)
        self.authenticator: Authenticator = request.app.state.authenticator
        self.registry: Any = request.app.state.registry
        self.needs = needs
        self.method = request.method
        self.path = path or request.url.path
        self.admitted: identity.Caller | None = None

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

    def admit(self) -> identity.Caller:
        """The authenticated caller, refused (403, one line) unless it holds what the route needs."""
        if self.admitted is None:
            caller = self.caller()
            self.needs.check(caller, self.method, self.path)
            self.admitted = caller
        return self.admitted

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` as the admitted caller."""
        with identity.acting(self.admit()):
            return fn(*args, **kwargs)


def declared(route: APIRoute) -> Needs | Public | None:
    """What ``route`` declares it needs, found among its dependencies."""
    for dep in route.dependant.dependencies:
        if isinstance(dep.call, Needs | Public):
            return dep.call
    return None


class GuardedRoute(APIRoute):
    """A route that refuses, before its body is read, a caller without the permission it declares.

    A route declaring neither ``needs(...)`` nor ``public()`` cannot be built.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        what = declared(self)
        if what is None:
            raise TypeError(f"{sorted(self.methods)} {path}: declare needs(...) or public() on the route")
        permissions = list(what.permissions) if isinstance(what, Needs) else []
        roles = list(what.roles) if isinstance(what, Needs) else [ANYONE]
        self.openapi_extra = {
            **(self.openapi_extra or {}),
            "x-govflow-permissions": permissions,
            "x-govflow-roles": roles,
        }

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs, path = declared(self), self.path
        if not isinstance(needs, Needs):
            return handler

        async def guarded(request: Request) -> Response:
            call = Call(request, needs, path)
            await run_in_threadpool(call.admit)
            request.state.govflow_call = call
            return await handler(request)

        return guarded
