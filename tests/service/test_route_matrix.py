"""Every route of the server, as every role and with no credential, against docs/security.md.

The route table under "What each route needs" in docs/security.md is the contract: a route may
answer only the roles it lists with anything but 401/403, must not refuse a role it lists, and
must declare in the OpenAPI document the roles the table lists and every status it answers.
Requests are harmless: unknown names, empty or invalid bodies; the matrix writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import APIRouter
from starlette.testclient import TestClient

from registry import identity
from tests.service.conftest import InProcess, snapshot

ANYONE = "anyone"  # the roles of a public route, in the table and in x-govflow-roles
SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "security.md"
CALLERS: tuple[str | None, ...] = (*identity.ROLES, None)  # None: no credential
PATH_VALUES = {"name": "absent-model", "version": "1", "alias": "absent-alias", "sha256": "0" * 64}
# Served but not operations of the document: the document itself, the /docs page and its assets,
# and HEAD on the fast path of GET /api/v1/resolve (which the matrix calls as the GET route).
UNDOCUMENTED = {
    ("GET", "/openapi.json"),
    ("HEAD", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/docs.js"),
    ("ANY", "/docs/assets"),
    ("HEAD", "/api/v1/resolve"),
}

Table = dict[tuple[str, str], frozenset[str]]


def route_table(text: str) -> Table:
    """(METHOD, path) -> the roles docs/security.md lists for it (``anyone`` for a public route)."""
    section = text.split("## What each route needs", 1)[1].split("\n## ", 1)[0]
    table: Table = {}
    for line in section.splitlines():
        m = re.fullmatch(r"\| `(\w+)` \| `([^`]+)` \| ([^|]+) \| ([^|]+) \|", line.strip())
        if m is None:
            continue
        roles = m.group(4).strip()
        listed = frozenset({ANYONE}) if roles.startswith("anyone") else frozenset(roles.split(", "))
        table[(m.group(1), m.group(2))] = listed
    return table


@pytest.fixture(scope="module")
def table() -> Table:
    parsed = route_table(SECURITY_MD.read_text(encoding="utf-8"))
    assert len(parsed) > 30, "docs/security.md: the route table under 'What each route needs' is missing"
    return parsed


@dataclass
class Outcome:
    routes: int = 0
    calls: int = 0
    denials_expected: int = 0
    denials_seen: int = 0
    problems: list[str] = field(default_factory=list)
    finer: list[str] = field(default_factory=list)  # refusals of a listed role by a finer rule


def _request(client: TestClient, method: str, path: str, op: dict[str, Any], token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if "requestBody" in op:
        kwargs["json"] = {}  # valid JSON, the wrong shape: a listed role gets a 400, nothing more
    elif method in ("PUT", "POST"):
        kwargs["content"] = b""  # the streamed upload: zero bytes never hash to sha256 0…0
    return client.request(method, re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path), **kwargs)


def walk(client: TestClient, tokens: dict[str, str], table: Table) -> Outcome:
    """Call every operation of the app's OpenAPI document as every caller; collect what is wrong."""
    out = Outcome()
    doc = client.get("/openapi.json").json()
    seen_ops: set[tuple[str, str]] = set()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            key = (method.upper(), path)
            seen_ops.add(key)
            out.routes += 1
            listed = table.get(key)
            declared = op.get("x-govflow-roles")
            if listed is None:
                out.problems.append(f"{key[0]} {path}: not in the route table of docs/security.md")
            if declared is None:
                out.problems.append(f"{key[0]} {path}: declares no roles (x-govflow-roles)")
            elif listed is not None and frozenset(declared) != listed:
                out.problems.append(
                    f"{key[0]} {path}: declares {sorted(declared)}, the table lists {sorted(listed)}"
                )
            allowed = listed or frozenset()  # a route the table does not list grants nobody
            for who in CALLERS:
                out.calls += 1
                r = _request(client, key[0], path, op, tokens[who] if who else None)
                as_who = f"{key[0]} {path} as {who or 'no credential'}"
                if str(r.status_code) not in op["responses"]:
                    out.problems.append(f"{as_who}: answers {r.status_code}, not declared in the document")
                if ANYONE in allowed or who in allowed:
                    # The registry's finer rules may still refuse (a pipeline approves only by
                    # relaying a form); the route's own check names the route, and must not.
                    gate = f"({key[0]} {path})"
                    if r.status_code == 401 or (r.status_code == 403 and gate in r.json()["detail"]):
                        out.problems.append(f"{as_who}: refused ({r.status_code}) though the table lists it")
                    elif r.status_code == 403:
                        out.finer.append(f"{as_who}: {r.json()['detail']}")
                    continue
                out.denials_expected += 1
                want = 401 if who is None else 403
                if r.status_code != want:
                    out.problems.append(f"{as_who}: answers {r.status_code}; the table allows it no access")
                    continue
                body = r.json() if key[0] != "HEAD" else {"field": "role", "detail": ""}  # HEAD: no body
                if r.headers["content-type"] != "application/problem+json" or (
                    who is not None and (body["field"] != "role" or "\n" in body["detail"])
                ):
                    out.problems.append(f"{as_who}: the refusal is not a one-line role problem: {body}")
                    continue
                out.denials_seen += 1
    for key in sorted(set(table) - seen_ops):
        out.problems.append(f"{key[0]} {key[1]}: in the route table of docs/security.md but not served")
    return out


def _served(routes: list[Any]) -> Iterator[tuple[str, str]]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.150)
        if inner is not None:
            yield from _served(inner.routes)
        else:
            yield from ((method, route.path) for method in getattr(route, "methods", None) or ["ANY"])


def test_every_route_grants_exactly_the_roles_docs_security_md_lists(
    in_process: InProcess, table: Table, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(SimpleNamespace(registry=in_process.registry))
    out = walk(in_process.client, in_process.tokens, table)
    assert out.problems == []
    assert out.routes == len(table) and out.calls == out.routes * len(CALLERS)
    assert out.denials_seen == out.denials_expected > 0
    assert snapshot(SimpleNamespace(registry=in_process.registry)) == before  # harmless: nothing written
    # The one finer rule an empty body meets: a pipeline approves only by relaying a form.
    assert [f.split(":")[0] for f in out.finer] == [
        "POST /api/v1/models/{name}/versions/{version}/approve as pipeline"
    ]
    with capsys.disabled():
        print(
            f"\nroute matrix: {out.routes} routes x {len(identity.ROLES)} roles + no credential = "
            f"{out.calls} calls; denials expected {out.denials_expected}, seen {out.denials_seen}; "
            f"listed roles refused by a finer rule {len(out.finer)}"
        )


def test_every_served_path_is_in_the_document_or_known_public(in_process: InProcess) -> None:
    paths = in_process.client.get("/openapi.json").json()["paths"]
    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    served = set(_served(in_process.client.app.routes))
    assert served - documented == UNDOCUMENTED


def test_a_route_added_without_a_role_check_fails_the_matrix(in_process: InProcess, table: Table) -> None:
    app = in_process.app()
    bare = APIRouter()  # the default route class: no declaration, no check

    @bare.post("/api/v1/notes")
    def note() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(bare)
    with TestClient(app, raise_server_exceptions=False) as client:
        out = walk(client, in_process.tokens, table)
    about = [p for p in out.problems if "/api/v1/notes" in p]
    assert "POST /api/v1/notes: not in the route table of docs/security.md" in about
    assert "POST /api/v1/notes: declares no roles (x-govflow-roles)" in about
    for who in ("reader", "pipeline", "approver", "operator", "admin", "no credential"):
        assert f"POST /api/v1/notes as {who}: answers 200; the table allows it no access" in about
    assert out.problems == about  # every other route still passes


def test_a_route_checking_less_than_the_table_says_fails_the_matrix(
    in_process: InProcess, table: Table
) -> None:
    stricter = {**table, ("POST", "/api/v1/events"): frozenset({"admin"})}
    out = walk(in_process.client, in_process.tokens, stricter)
    assert (
        "POST /api/v1/events: declares ['admin', 'operator', 'pipeline'], the table lists ['admin']"
        in out.problems
    )
    assert "POST /api/v1/events as pipeline: answers 400; the table allows it no access" in out.problems
    assert "POST /api/v1/events as operator: answers 400; the table allows it no access" in out.problems
    assert len(out.problems) == 3


def test_a_route_without_a_declaration_cannot_be_built(in_process: InProcess) -> None:
    from registry.service.caller import GuardedRoute, needs

    router = APIRouter(route_class=GuardedRoute)
    with pytest.raises(TypeError, match=r"/api/v1/notes: declare needs\(\.\.\.\) or public\(\)"):

        @router.post("/api/v1/notes")
        def note() -> None: ...

    with pytest.raises(TypeError, match="declare needs"):
        in_process.app().get("/api/v1/peek")(lambda: None)  # the app's own routes are guarded too
    with pytest.raises(ValueError, match="not a permission"):
        needs("peek")


def test_the_refusal_names_the_caller_the_route_and_the_roles(in_process: InProcess) -> None:
    r = in_process.client.put(
        "/api/v1/policy",
        json={"document": {}},
        headers={"Authorization": f"Bearer {in_process.tokens['operator']}"},
    )
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "matrix-operator may not change the policy (PUT /api/v1/policy): it needs the admin role (has operator)"
    )
    r = in_process.client.post("/api/v1/events", content=b"{not json")  # refused before the body is read
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
