"""Hot swap under real uvicorn: promote, rollback, swaps under load, corrupted artifacts."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.deployments.support import (
    AUTH,
    MODEL,
    POLL,
    blob_path,
    probe_records,
    promote,
    register,
    wait_for,
)


def _version(client: httpx.Client) -> int:
    return client.get("/model").raise_for_status().json()["version"]


def test_promote_then_rollback_follows_registry(registry, estimators, serve_app) -> None:
    """Runs on SQLite and PostgreSQL: the poll alone (no /reload) picks up both changes."""
    a, b = estimators
    v1 = register(registry, a)
    promote(registry, v1)
    srv = serve_app(registry)
    records = probe_records(5)
    with httpx.Client(base_url=srv.url, timeout=5) as client:
        assert _version(client) == v1
        first = client.post("/predict", json={"records": records}).json()
        assert first["version"] == v1
        assert first["predictions"] == a.predict(_frame(records)).tolist()

        v2 = register(registry, b)
        promote(registry, v2)
        # Within the poll interval, plus load time and scheduling slack on a busy 2-core machine.
        wait_for(lambda: _version(client) == v2, timeout=POLL + 3, what="v2 served after promote")
        info = client.get("/model").json()
        assert info["sha256"] == registry.get_version(MODEL, v2).artifact.sha256
        assert info["stage"] == "production"
        assert info["lineage"]["code"]["commit"] == "abc1234"
        assert [c["name"] for c in info["input_schema"]] == ["age", "income", "plan", "active"]
        answer = client.post("/predict", json={"records": records}).json()
        assert answer["version"] == v2
        assert answer["predictions"] == b.predict(_frame(records)).tolist()

        registry.rollback(MODEL, reason="v2 misbehaves", actor="carol")
        wait_for(lambda: _version(client) == v1, timeout=POLL + 3, what="v1 back after rollback")
        assert client.post("/predict", json={"records": records}).json()["version"] == v1
        assert client.get("/health").json()["status"] == "ok"


def test_four_clients_through_ten_swaps(sqlite_registry, estimators, serve_app) -> None:
    """Zero errors; every answer comes from v1 or v2 and matches that version's own predictions."""
    reg = sqlite_registry
    a, b = estimators
    v1, v2 = register(reg, a), register(reg, b)
    records = probe_records(8)
    expected = {v1: a.predict(_frame(records)).tolist(), v2: b.predict(_frame(records)).tolist()}
    assert expected[v1] != expected[v2], "the two models must be distinguishable"
    promote(reg, v1)
    srv = serve_app(reg)

    stop = threading.Event()
    seen: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post("/predict", json={"records": records})
                    body = r.json()
                    problem = None
                    if r.status_code != 200:
                        problem = f"status {r.status_code}: {body}"
                    elif body["version"] not in expected:
                        problem = f"unknown version {body['version']}"
                    elif body["predictions"] != expected[body["version"]]:
                        problem = f"predictions do not match version {body['version']}"
                    elif r.headers["x-model-version"] != str(body["version"]):
                        problem = "header and body disagree on the version"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    problem = repr(exc)
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        seen[body["version"]] += 1

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=5) as control:
            current = v1
            for _ in range(10):
                nxt = v2 if current == v1 else v1
                promote(reg, nxt)
                wait_for(lambda v=nxt: _version(control) == v, timeout=POLL + 5, what=f"swap to {nxt}")
                # Let the clients run on the new version before the next swap.
                with lock:
                    mark = seen[nxt]
                wait_for(
                    lambda v=nxt, m=mark: seen[v] >= m + 4, timeout=5, what="answers from the new version"
                )
                current = nxt
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert set(seen) == {v1, v2}
    assert sum(seen.values()) > 40


def test_corrupted_artifact_keeps_old_model_and_degrades(sqlite_registry, estimators, serve_app) -> None:
    reg = sqlite_registry
    a, b = estimators
    v1 = register(reg, a)
    promote(reg, v1)
    v2 = register(reg, b)
    path = blob_path(reg, v2)
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")  # same size, different digest
    srv = serve_app(reg)
    with httpx.Client(base_url=srv.url, timeout=5) as client:
        promote(reg, v2)
        health = wait_for(
            lambda: (h := client.get("/health").json())["status"] == "degraded" and h,
            timeout=POLL + 3,
            what="degraded health",
        )
        assert health["version"] == v1
        assert health["degraded"]["reason"] == "load failed"
        assert health["degraded"]["target_version"] == v2
        assert "DigestMismatch" in health["degraded"]["error"]
        assert _version(client) == v1
        r = client.post("/predict", json={"records": probe_records(3)})
        assert r.status_code == 200 and r.json()["version"] == v1

        # Several polls later: still one audit event for this failure, not one per poll.
        wait_for(lambda: client.get("/health").json()["degraded"]["attempts"] >= 2, timeout=5, what="retry")
        events = [e for e in reg.audit_log(MODEL) if e.action == "serving.degraded"]
        assert len(events) == 1
        assert events[0].version == v2
        assert events[0].payload["serving_version"] == v1
        assert events[0].payload["target_version"] == v2

        # A rollback points production back at v1: the server recovers without a load.
        reg.rollback(MODEL, reason="v2 artifact is corrupt", actor="carol")
        wait_for(lambda: client.get("/health").json()["status"] == "ok", timeout=POLL + 3, what="recovery")
        assert any(e.action == "serving.recovered" for e in reg.audit_log(MODEL))
    assert reg.verify_audit().ok


def test_reload_swaps_without_polling(sqlite_registry, estimators, serve_app) -> None:
    """With the poll off, POST /reload is what loads a new production version."""
    reg = sqlite_registry
    a, b = estimators
    v1 = register(reg, a)
    promote(reg, v1)
    srv = serve_app(reg, poll=0)
    with httpx.Client(base_url=srv.url, timeout=5) as client:
        v2 = register(reg, b)
        promote(reg, v2)
        assert _version(client) == v1  # nothing polls
        result = client.post("/reload", headers=AUTH).json()
        assert result == {
            "changed": True,
            "previous_version": v1,
            "version": v2,
            "status": "ok",
            "degraded": None,
        }
        assert _version(client) == v2
        assert client.post("/reload", headers=AUTH).json()["changed"] is False


def test_no_production_version_refuses_to_start(sqlite_registry, estimators) -> None:
    from deployments.serving import create_app
    from registry.errors import NotFound

    register(sqlite_registry, estimators[0])
    with pytest.raises(NotFound):
        create_app(sqlite_registry, MODEL)


def test_version_without_input_schema_is_refused(sqlite_registry, estimators) -> None:
    from deployments.serving import create_app
    from registry.errors import InvalidInput

    reg = sqlite_registry
    mv = reg.register_model(MODEL, estimators[0], actor="alice")
    promote(reg, mv.version)
    with pytest.raises(InvalidInput, match="input schema"):
        create_app(reg, MODEL)


def test_registry_outage_and_no_production_keep_serving(sqlite_registry, estimators, monkeypatch) -> None:
    """The slot itself: a failing registry or an emptied alias degrade it; the old model stays."""
    import sqlalchemy.exc

    from deployments.model_slot import ModelSlot

    reg = sqlite_registry
    v1 = register(reg, estimators[0])
    promote(reg, v1)
    slot = ModelSlot(reg, MODEL, actor="server")
    real_resolve = reg.resolve

    def down(ref: str) -> Any:
        raise sqlalchemy.exc.OperationalError("SELECT …", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(reg, "resolve", down)
    result = slot.refresh()
    assert (result.status, result.version, result.degraded.reason) == ("degraded", v1, "registry unreachable")
    assert slot.current.predict(probe_records(2))  # still answers
    monkeypatch.setattr(reg, "resolve", real_resolve)
    assert slot.refresh().status == "ok"

    reg.transition(MODEL, v1, "archived", actor="alice")  # production alias now points nowhere
    result = slot.refresh()
    assert (result.status, result.version, result.degraded.reason) == (
        "degraded",
        v1,
        "no production version",
    )
    actions = [e.action for e in reg.audit_log(MODEL)]
    assert actions.count("serving.degraded") == 2 and actions.count("serving.recovered") == 1


def _frame(records: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(records).astype({"plan": "str"})
