"""Who is calling, through which channel, and what their roles let them do.

Embedded use (a process holding the database credentials) is trusted with every role: the
caller names the actor. Behind the registry server each request runs as an authenticated
principal; ``acting`` sets that for the request, and the registry then refuses any other actor
name and any action the principal's roles do not allow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from registry.config import resolve_actor
from registry.errors import Forbidden, InvalidInput
from registry.validate import check_actor, same_actor

ROLES = ("reader", "pipeline", "approver", "operator", "admin")
CHANNELS = ("api", "cli", "prefect-form", "airflow-hitl", "flow", "server")

# What each permission needs; ``admin`` holds every permission.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "register": frozenset({"pipeline"}),
    "evidence": frozenset({"pipeline"}),
    "stage": frozenset({"pipeline", "operator"}),  # move to staging
    "transition": frozenset({"operator"}),  # any other stage move, production included
    "approve": frozenset({"approver"}),
    "reject": frozenset({"approver"}),  # a pipeline may also reject its own staged version
    "waive": frozenset({"approver"}),
    "form": frozenset({"pipeline", "approver"}),  # relay a decision typed into a form
    "rollback": frozenset({"operator"}),
    "alias": frozenset({"operator"}),
    "deploy": frozenset({"operator"}),
    "record": frozenset({"pipeline", "operator"}),
    "load": frozenset({"pipeline", "operator"}),  # audit a pickle load before unpickling it
    "policy": frozenset({"admin"}),
    "users": frozenset({"admin"}),
}

# What each permission lets a caller do, in the words a refusal uses ("X may not <ability>").
ABILITIES: dict[str, str] = {
    "read": "read the registry",
    "register": "register a version",
    "evidence": "record gate evidence",
    "stage": "move a version to staging",
    "transition": "move a version between stages",
    "approve": "approve a version",
    "reject": "reject a version",
    "waive": "waive a failed gate",
    "form": "relay a decision typed into a form",
    "rollback": "roll back a model",
    "alias": "set or remove an alias",
    "deploy": "record a deployment",
    "record": "record an audit event",
    "load": "record a pickle load",
    "policy": "change the policy",
    "users": "manage users",
}


def roles_for(*permissions: str) -> tuple[str, ...]:
    """The roles holding any of ``permissions``, in ``ROLES`` order (admin holds every one)."""
    held = set().union(*(PERMISSIONS[p] for p in permissions)) | {"admin"}
    return tuple(r for r in ROLES if r in held)


@dataclass(frozen=True)
class Caller:
    """The caller of the current registry operation.

    ``principal`` is None in embedded mode (no authentication; every role). ``on_behalf_of`` is
    the user an admin acts for; the audit keeps both names.
    """

    channel: str = "api"
    principal: str | None = None
    roles: frozenset[str] | None = None
    on_behalf_of: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    def may(self, permission: str) -> bool:
        """Whether this caller holds ``permission``."""
        if self.roles is None or "admin" in self.roles:
            return True
        return bool(self.roles & PERMISSIONS[permission])

    def via(self) -> dict[str, Any]:
        """What the audit records about how the event arrived."""
        out: dict[str, Any] = {"channel": self.channel}
        if self.principal is not None:
            out["principal"] = self.principal
        if self.on_behalf_of is not None:
            out["on_behalf_of"] = self.on_behalf_of
        return out


_current: ContextVar[Caller] = ContextVar("govflow_caller", default=Caller())  # noqa: B039 (frozen)


def current() -> Caller:
    """The caller of the running operation."""
    return _current.get()


@contextmanager
def acting(caller: Caller | None = None, **changes: Any) -> Iterator[Caller]:
    """Run a block as ``caller`` (or the current caller with ``changes``)."""
    new = caller if caller is not None else replace(current(), **changes)
    if new.channel not in CHANNELS:
        raise InvalidInput(f"channel: {new.channel!r} is not one of {', '.join(CHANNELS)}", field="channel")
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)


def require(permission: str, what: str) -> None:
    """Refuse ``what`` unless the caller holds ``permission``."""
    caller = current()
    if not caller.may(permission):
        need = " or ".join(sorted(PERMISSIONS[permission]))
        have = ", ".join(sorted(caller.roles or ())) or "no role"
        raise Forbidden(
            f"{caller.principal} may not {what}: it needs the {need} role (has {have})", field="role"
        )


def actor_for(explicit: str | None) -> str:
    """The actor an operation is recorded under.

    Embedded: ``explicit``, else ``GOVFLOW_ACTOR``, else the OS user. Authenticated: the
    principal (or the user an admin acts for); any other name is refused.
    """
    caller = current()
    if caller.principal is None:
        return resolve_actor(explicit)
    acting_as = caller.on_behalf_of or caller.principal
    if explicit is not None:
        name = check_actor(explicit)
        if not same_actor(name, acting_as):
            raise Forbidden(
                f"actor: authenticated as {acting_as}, not {name}; only an admin may act on behalf "
                "of someone (on_behalf_of)",
                field="actor",
            )
    return acting_as
