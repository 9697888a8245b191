"""``POST /api/v1/pickle-loads`` writes ``model.pickle_loaded`` only for a principal that may load
models, only under a policy that allows pickle loads, and only with that version's own artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from registry import Registry, errors
from registry.policy import Policy

ROUTE = "/api/v1/pickle-loads"


@pytest.fixture
def pickled(registry_server: Any) -> dict[str, Any]:
    """churn/1 a raw pickle (under a policy allowing it), churn/2 skops; a token per role."""
    h = registry_server
    h.client().set_policy(Policy(authenticated_approvals=True, allow_pickle=True), reason="a legacy model")
    tokens = {
        role: h.token(role, name=f"pk-{role}") for role in ("reader", "pipeline", "approver", "operator")
    }
    pipe = h.client(tokens["pipeline"])
    v1 = pipe.register_model("churn", {"weights": [1, 2, 3]}, allow_pickle=True)
    v2 = pipe.register_model("churn", _fitted())
    assert v1.artifact.format == "pickle" and v2.artifact.format == "skops"
    body = {"model": "churn", "version": 1, "ref": "churn/1", "sha256": v1.artifact.sha256, "fmt": "pickle"}
    return {"h": h, "tokens": tokens, "body": body, "skops_sha256": v2.artifact.sha256}


def _fitted() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 2))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


def _post(p: dict[str, Any], role: str | None, **changes: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {p['tokens'][role]}"} if role else {}
    return httpx.post(p["h"].url + ROUTE, json={**p["body"], **changes}, headers=headers)


def _loads(p: dict[str, Any]) -> list[Any]:
    return [e for e in p["h"].client().audit_log("churn") if e.action == "model.pickle_loaded"]


def test_a_principal_that_may_not_load_models_writes_no_pickle_load(
    pickled: dict[str, Any], unchanged: Any
) -> None:
    for role in ("reader", "approver", None):
        with unchanged():
            r = _post(pickled, role)
        if role is None:
            assert r.status_code == 401
            continue
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == (
            f"pk-{role} may not record a pickle load (POST /api/v1/pickle-loads): it needs the pipeline or "
            f"operator role (has {role})"
        )


@pytest.mark.parametrize("role", ["pipeline", "operator"])
def test_a_loader_records_the_versions_own_artifact(pickled: dict[str, Any], role: str) -> None:
    r = _post(pickled, role)
    assert r.status_code == 201, r.text
    (event,) = _loads(pickled)
    assert event.actor == f"pk-{role}" and event.version == 1
    sha = pickled["body"]["sha256"]
    assert {k: event.payload[k] for k in ("ref", "sha256", "format")} == {
        "ref": "churn/1",
        "sha256": sha,
        "format": "pickle",
    }


# (what the forged request changes, the field named, the status)
FORGED: list[tuple[dict[str, Any], str | None, int]] = [
    ({"sha256": "0" * 64}, "sha256", 400),
    ({"sha256": "not a digest"}, "sha256", 400),
    ({"fmt": "joblib"}, "format", 400),  # a pickle format, but not this artifact's
    ({"fmt": "skops"}, "format", 400),
    ({"ref": "churn/2"}, "ref", 400),  # another version of the same model
    ({"ref": "other/1"}, "ref", 400),
    ({"ref": "churn"}, "ref", 400),
    ({"ref": "churn@nowhere"}, None, 404),
    ({"version": "1"}, "version", 400),  # a string for an int
    ({"version": 2, "ref": "churn/2", "fmt": "skops"}, "format", 400),  # skops loads are not pickle loads
    ({"model": "other", "ref": "other/1"}, None, 404),
]


def test_anything_but_the_versions_artifact_is_refused_in_one_line(
    pickled: dict[str, Any], unchanged: Any
) -> None:
    for changes, field, status in FORGED:
        if changes.get("version") == 2:
            changes = {**changes, "sha256": pickled["skops_sha256"]}
        with unchanged():
            r = _post(pickled, "pipeline", **changes)
        assert (r.status_code, r.json()["field"]) == (status, field), (changes, r.text)
        assert "\n" not in r.json()["detail"]


def test_an_alias_ref_counts_only_while_it_points_at_the_version(
    pickled: dict[str, Any], unchanged: Any
) -> None:
    ops = pickled["h"].client(pickled["tokens"]["operator"])
    ops.set_alias("churn", "legacy", 1)
    assert _post(pickled, "pipeline", ref="churn@legacy").status_code == 201
    ops.set_alias("churn", "legacy", 2)
    with unchanged():
        r = _post(pickled, "pipeline", ref="churn@legacy")
    assert r.status_code == 400 and r.json()["detail"] == "ref: churn@legacy does not name churn/1"


def test_a_policy_forbidding_pickle_loads_refuses_the_record(pickled: dict[str, Any], unchanged: Any) -> None:
    pickled["h"].client().set_policy(Policy(authenticated_approvals=True), reason="no more pickles")
    with unchanged():
        r = _post(pickled, "operator")
    assert r.status_code == 409 and r.json()["govflow_error"] == "UnsafeModel"
    assert r.json()["detail"] == "churn/1: the policy in force allows no pickle loads (allow_pickle = false)"


def test_a_reader_cannot_load_a_pickle_through_the_client(pickled: dict[str, Any], unchanged: Any) -> None:
    reader = pickled["h"].client(pickled["tokens"]["reader"])
    with unchanged(), pytest.raises(errors.Forbidden, match="pk-reader may not record a pickle load"):
        reader.load_model("churn/1", allow_pickle=True)
    loader = pickled["h"].client(pickled["tokens"]["operator"])
    assert loader.load_model("churn/1", allow_pickle=True) == {"weights": [1, 2, 3]}
    assert [e.actor for e in _loads(pickled)] == ["pk-operator"]


def test_embedded_callers_meet_the_same_policy_and_digest_checks(tmp_path: Path) -> None:
    lax = Policy(allow_pickle=True)
    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"), policy=lax)
    try:
        v = reg.register("churn", _write(tmp_path / "m.pkl"), actor="bob", artifact_format="pickle")
        good = {"ref": "churn/1", "sha256": v.artifact.sha256, "fmt": "pickle"}
        before = len(reg.audit_log())
        with pytest.raises(errors.InvalidInput, match="^sha256: f{64} is not the artifact of churn/1$"):
            reg.note_pickle_load("churn", 1, **{**good, "sha256": "f" * 64})
        assert len(reg.audit_log()) == before
        assert reg.note_pickle_load("churn", 1, **good, actor="ops").payload["sha256"] == v.artifact.sha256
    finally:
        reg.close()
    strict = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"))
    try:
        strict.set_policy(Policy(), reason="no more pickles", actor="root")
        before = len(strict.audit_log())
        with pytest.raises(errors.UnsafeModel, match="allows no pickle loads"):
            strict.note_pickle_load("churn", 1, **good)
        assert len(strict.audit_log()) == before
    finally:
        strict.close()


def _write(path: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps({"weights": [1]}))
    return path
