"""User administration over HTTP (the server allows it to admins only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter

from registry.auth.entities import NewToken, UserInfo
from registry.errors import InvalidInput


class Users:
    """Mixin for ``RemoteRegistry``: add, list, revoke and rotate API users."""

    _call: Any

    def whoami(self) -> str:
        """The name the server records as this client's actor: the authenticated principal."""
        return TypeAdapter(dict[str, str]).validate_json(self._call("GET", "/api/v1/whoami"))["name"]

    def add_user(self, name: str, roles: list[str], *, expires_in: timedelta | None = None) -> NewToken:
        """Create a user; the returned NewToken carries the token, shown this once."""
        seconds = None
        if expires_in is not None:
            if not isinstance(expires_in, timedelta):
                raise InvalidInput(f"expires_in: {expires_in!r} is not a duration", field="expires_in")
            seconds = expires_in.total_seconds()
        body = {"name": name, "roles": roles, "expires_in": seconds}
        return NewToken.model_validate_json(self._call("POST", "/api/v1/users", body))

    def list_users(self) -> list[Any]:
        return TypeAdapter(list[UserInfo]).validate_json(self._call("GET", "/api/v1/users"))

    def revoke_user(self, name: str) -> Any:
        return UserInfo.model_validate_json(self._call("POST", f"/api/v1/users/{_segment(name)}/revoke"))

    def rotate_user(self, name: str) -> Any:
        return NewToken.model_validate_json(self._call("POST", f"/api/v1/users/{_segment(name)}/rotate"))


def _segment(name: Any) -> str:
    from urllib.parse import quote

    if not isinstance(name, str) or not name:
        raise InvalidInput(f"name: {name!r} must be a non-empty string", field="name")
    return quote(name, safe="")
