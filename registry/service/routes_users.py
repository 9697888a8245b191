"""API users and their tokens (admin only; the registry checks the role)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response

from registry.errors import InvalidInput
from registry.service.caller import Call, GuardedRoute, needs
from registry.service.openapi import problems
from registry.service.responses import ok
from registry.service.schemas import UserBody

router = APIRouter(prefix="/api/v1/users", tags=["users"], route_class=GuardedRoute)
whoami_router = APIRouter(prefix="/api/v1", tags=["users"], route_class=GuardedRoute)


@whoami_router.get("/whoami")
def whoami(c: Call = needs("read")) -> Response:
    """The name the registry records as the actor of this caller's requests."""
    return ok({"name": c.run(c.registry.whoami)})


def _lifetime(seconds: Any) -> timedelta | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < 10**10:
        raise InvalidInput(
            f"expires_in: {seconds!r} must be a positive number of seconds", field="expires_in"
        )
    return timedelta(seconds=seconds)


@router.post("", status_code=201, responses=problems(409))
def add_user(body: UserBody, c: Call = needs("users")) -> Response:
    """Create a user; the response carries the token, shown this once."""
    return ok(
        c.run(lambda: c.registry.add_user(body.name, body.roles, expires_in=_lifetime(body.expires_in))), 201
    )


@router.get("")
def list_users(c: Call = needs("users")) -> Response:
    return ok(c.run(c.registry.list_users))


@router.post("/{name}/revoke", responses=problems(404, 409))
def revoke_user(name: str, c: Call = needs("users")) -> Response:
    return ok(c.run(c.registry.revoke_user, name))


@router.post("/{name}/rotate", responses=problems(404, 409))
def rotate_user(name: str, c: Call = needs("users")) -> Response:
    """A new token for the user; the old one stops working."""
    return ok(c.run(c.registry.rotate_user, name))
