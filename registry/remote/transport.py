"""HTTP to the registry server: one keep-alive client, problem+json turned back into govflow errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_json

from registry import errors, identity
from registry.config import env
from registry.errors import GovflowError, InvalidInput, StorageError, Unauthenticated

CHANNEL_HEADER = "X-Govflow-Channel"
ON_BEHALF_HEADER = "X-Govflow-On-Behalf-Of"
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# When a response carries no problem document (HEAD, a proxy's page), its status says what it was.
BY_STATUS: dict[int, type[GovflowError]] = {
    401: Unauthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    503: StorageError,
}


_LISTS: dict[type, TypeAdapter[Any]] = {}


def many(cls: type, content: bytes) -> list[Any]:
    """A JSON list of ``cls`` entities (one cached validator per type)."""
    adapter = _LISTS.get(cls)
    if adapter is None:
        adapter = _LISTS[cls] = TypeAdapter(list[cls])  # type: ignore[valid-type]
    return adapter.validate_json(content)


def read_token(token: str | None) -> str:
    """The API token: ``token``, else GOVFLOW_TOKEN, else the file named by GOVFLOW_TOKEN_FILE."""
    value = token or os.environ.get("GOVFLOW_TOKEN")
    if not value and env("GOVFLOW_TOKEN_FILE"):
        path = Path(os.environ["GOVFLOW_TOKEN_FILE"])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise Unauthenticated(f"GOVFLOW_TOKEN_FILE: cannot read {path}: {exc}", field="token") from None
    if not value:
        raise Unauthenticated("no token: set GOVFLOW_TOKEN (or GOVFLOW_TOKEN_FILE)", field="token")
    value = value.strip()
    if not value.isascii() or not value.isprintable() or " " in value:
        raise Unauthenticated("token: not a token (printable ASCII without spaces)", field="token")
    return value


def safe_location(url: str) -> str:
    """A server URL without any user name or password in it."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


def error_from(response: httpx.Response) -> GovflowError:
    """The govflow error a problem+json response describes (GovflowError when the type is unknown)."""
    try:
        doc = response.json()
        if not isinstance(doc, dict):
            doc = {}
    except ValueError:
        doc = {}
    name = doc.get("govflow_error")
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, GovflowError)):
        cls = BY_STATUS.get(response.status_code, GovflowError)
    detail = doc.get("detail") or f"registry server answered HTTP {response.status_code} for {response.url}"
    kwargs = {k: doc.get(k) for k in ("model", "version", "reason", "field")}
    for extra in ("seq", "location"):
        if extra in doc:
            kwargs[extra] = doc[extra]
    if cls is errors.AuditChainBroken:
        kwargs.setdefault("seq", 0)
    return cls(str(detail), **kwargs)


def encode(body: dict[str, Any]) -> bytes:
    """A JSON body; NaN and infinities go through as written so the server refuses them by name."""
    try:
        return to_json(body, inf_nan_mode="constants")
    except PydanticSerializationError:
        for key, value in body.items():
            try:
                to_json(value, inf_nan_mode="constants")
            except PydanticSerializationError as exc:
                raise InvalidInput(f"{key}: not JSON-serializable: {exc}", field=key) from None
        raise


class Transport:
    """One ``httpx.Client`` per registry: keep-alive, the bearer token, the caller's channel."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=TIMEOUT,
            follow_redirects=False,
        )

    def headers(self, on_behalf_of: str | None = None) -> dict[str, str]:
        out = {CHANNEL_HEADER: identity.current().channel}
        if on_behalf_of is not None:
            out[ON_BEHALF_HEADER] = quote(on_behalf_of, safe="")
        return out

    @contextmanager
    def connection(self) -> Iterator[None]:
        """Network failures as one StorageError line naming the server."""
        try:
            yield
        except httpx.TransportError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"registry server {self.url}: {reason}") from None

    def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        on_behalf_of: str | None = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One request; a problem response is raised as the govflow error it names."""
        headers = {**self.headers(on_behalf_of), **(headers or {})}
        if json is not None:
            content = encode(json)
            headers["Content-Type"] = "application/json"
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        with self.connection():
            response = self.http.request(method, path, content=content, params=params, headers=headers)
        if response.status_code >= 400 and response.status_code not in ok:
            raise self.named(error_from(response))
        return response

    def named(self, exc: GovflowError) -> GovflowError:
        """``exc`` naming this server as the registry read, when it is a missing model."""
        if isinstance(exc, errors.ModelNotFound):
            exc.registry = safe_location(self.url)
        return exc

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        """A streamed GET; an error response is raised before the body is read."""
        with self.connection(), self.http.stream("GET", path, headers=self.headers()) as response:
            if response.status_code >= 400:
                response.read()
                raise self.named(error_from(response))
            yield response

    def close(self) -> None:
        self.http.close()
