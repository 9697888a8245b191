"""Roles and identity, checked by the server: every refusal is one line and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from registry import errors
from registry.policy import Policy
from registry.remote import RemoteRegistry


def test_revoked_token_is_refused(registry_server: Any, unchanged: Any) -> None:
    h = registry_server
    reader = h.client(h.token("reader", name="rex"))
    assert reader.models() == []
    h.users("revoke_user", "rex")
    with unchanged(), pytest.raises(errors.Unauthenticated, match="revoked"):
        reader.models()


def test_expired_token_is_refused(registry_server: Any, unchanged: Any) -> None:
    import sqlalchemy as sa

    h = registry_server
    token = h.token("reader", name="brief", expires_in=timedelta(hours=1))
    assert h.client(token).models() == []
    h.registry.db.transact(
        lambda conn: conn.execute(sa.text("UPDATE users SET expires_at = created_at WHERE name = 'brief'"))
    )
    with unchanged(), pytest.raises(errors.Unauthenticated, match="expired"):
        h.client(token).models()


def test_rotated_token_stops_working(registry_server: Any) -> None:
    h = registry_server
    old = h.token("reader", name="rot")
    new = h.client().rotate_user("rot").token
    with pytest.raises(errors.Unauthenticated):
        h.client(old).models()
    assert h.client(new).models() == []


def test_reader_cannot_register(team: dict[str, Any], unchanged: Any) -> None:
    with unchanged(), pytest.raises(errors.Forbidden) as caught:
        team["rita"].register("churn", team["path"])
    assert caught.value.field == "role" and "rita may not upload an artifact" in str(caught.value)


def test_reader_cannot_upload_a_blob_directly(
    team: dict[str, Any], registry_server: Any, unchanged: Any
) -> None:
    with unchanged(), pytest.raises(errors.Forbidden):
        team["rita"].artifacts.put(team["path"])


def test_pipeline_cannot_approve(team: dict[str, Any], unchanged: Any) -> None:
    with unchanged(), pytest.raises(errors.Forbidden, match="approve"):
        team["bob"].approve("churn", 1)


def test_approver_cannot_add_evidence(team: dict[str, Any], unchanged: Any) -> None:
    with unchanged(), pytest.raises(errors.Forbidden):
        team["alice"].add_evidence("churn", 1, gate="fairness", passed=True)


def test_operator_cannot_add_users(team: dict[str, Any], unchanged: Any) -> None:
    with unchanged(), pytest.raises(errors.Forbidden):
        team["olga"].add_user("mallory", ["admin"])


@pytest.mark.parametrize("spelling", [None, "bob", "Bob", "ｂｏｂ", "BOB"])
def test_registrant_cannot_approve_under_any_spelling(
    registry_server: Any, tmp_path: Any, unchanged: Any, spelling: str | None
) -> None:
    h = registry_server
    path = tmp_path / "m.bin"
    path.write_bytes(b"bob's model")
    bob = h.client(h.token("pipeline", "approver", name="bob"))
    bob.register("churn", path)
    bob.transition("churn", 1, "staging")
    with unchanged(), pytest.raises(errors.SeparationOfDuties):
        bob.approve("churn", 1, actor=spelling)
    # An admin acting for bob, however spelled, is still bob.
    admin = h.client(on_behalf=True)
    with unchanged(), pytest.raises(errors.SeparationOfDuties):
        admin.approve("churn", 1, actor=spelling or "Bob")


@pytest.mark.parametrize("spelling", ["bob\u200b", "bo\u200db", "bob\n", "bob\x00"])
def test_zero_width_and_control_spellings_are_refused(
    team: dict[str, Any], registry_server: Any, unchanged: Any, spelling: str
) -> None:
    admin = registry_server.client(on_behalf=True)
    with unchanged(), pytest.raises(errors.InvalidInput) as caught:
        admin.approve("churn", 1, actor=spelling)
    assert caught.value.field == "actor"
    with unchanged(), pytest.raises(errors.GovflowError):
        team["alice"].approve("churn", 1, actor=spelling)


def test_actor_spoofing_is_refused(team: dict[str, Any], unchanged: Any) -> None:
    with unchanged(), pytest.raises(errors.Forbidden) as caught:
        team["alice"].approve("churn", 1, actor="carol")
    assert caught.value.field == "actor" and "\n" not in str(caught.value)


def test_govflow_actor_spoofing_is_refused(
    team: dict[str, Any], unchanged: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVFLOW_ACTOR", "carol")
    with unchanged(), pytest.raises(errors.Forbidden, match="carol"):
        team["alice"].approve("churn", 1)
    monkeypatch.setenv("GOVFLOW_ACTOR", "ALICE")  # the same person, spelled otherwise: accepted
    assert team["alice"].approve("churn", 1).actor == "alice"


def test_strings_where_ints_belong_are_refused(
    team: dict[str, Any], registry_server: Any, unchanged: Any
) -> None:
    with unchanged(), pytest.raises(errors.InvalidInput) as caught:
        team["alice"].approve("churn", "1")  # type: ignore[arg-type]
    assert caught.value.field == "version"
    h = registry_server
    with unchanged():
        r = httpx.post(
            h.url + "/api/v1/models/churn/rollback",
            headers={"Authorization": f"Bearer {h.admin_token}"},
            json={"reason": "x", "expected_version": "1"},
        )
    assert r.status_code == 400 and r.json()["field"] == "expected_version"


def test_non_admin_on_behalf_of_is_refused(
    team: dict[str, Any], registry_server: Any, unchanged: Any
) -> None:
    h = registry_server
    token = h.token("approver", name="anna")
    sneaky = h.client(token, on_behalf=True)
    with unchanged(), pytest.raises(errors.Forbidden) as caught:
        sneaky.approve("churn", 1, actor="alice")
    assert caught.value.field == "on_behalf_of"


def test_admin_on_behalf_of_is_audited_with_both_names(team: dict[str, Any], registry_server: Any) -> None:
    admin = registry_server.client(on_behalf=True)
    decision = admin.approve("churn", 1, actor="alice", reason="signed off by phone")
    assert decision.actor == "alice"
    event = admin.audit_log("churn")[-1]
    assert event.action == "version.approved" and event.actor == "alice"
    assert event.payload["via"] == {"channel": "api", "principal": "admin", "on_behalf_of": "alice"}


def test_channel_header_is_recorded_and_checked(
    team: dict[str, Any], registry_server: Any, unchanged: Any
) -> None:
    from registry import identity

    with identity.acting(channel="cli"):
        team["alice"].approve("churn", 1, reason="ok")
    assert team["alice"].audit_log("churn")[-1].payload["via"]["channel"] == "cli"
    h = registry_server
    with unchanged():
        r = httpx.get(
            h.url + "/api/v1/models",
            headers={"Authorization": f"Bearer {h.admin_token}", "X-Govflow-Channel": "telepathy"},
        )
    assert r.status_code == 400 and r.json()["field"] == "channel"


def test_non_admin_policy_set_is_refused(team: dict[str, Any], unchanged: Any) -> None:
    for who in ("bob", "alice", "olga", "rita"):
        with unchanged(), pytest.raises(errors.Forbidden):
            team[who].set_policy(Policy(), reason="weaker")


def test_admin_policy_set_is_audited_with_its_hash(team: dict[str, Any]) -> None:
    admin = team["admin"]
    info = admin.set_policy(Policy(authenticated_approvals=True, approval_valid_for="1d"), reason="tighter")
    assert admin.policy_info().sha256 == info.sha256
    assert admin.policy_history()[-1].sha256 == info.sha256
    event = admin.audit_log()[-1]
    assert event.action.startswith("policy.") and info.sha256 in str(event.payload)


def test_a_weaker_client_policy_is_refused(
    registry_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, unchanged: Any
) -> None:
    h = registry_server
    stored = h.client().policy_info()  # the stored policy, in force before the refusals below
    lax = tmp_path / "lax.toml"
    lax.write_text("authenticated_approvals = false\n")
    monkeypatch.setenv("GOVFLOW_POLICY", str(lax))
    with unchanged(), pytest.raises(errors.PolicyError, match="govflow policy set"):
        RemoteRegistry(h.url, token=h.admin_token)
    monkeypatch.delenv("GOVFLOW_POLICY")
    with pytest.raises(errors.PolicyError, match="differs from the registry's policy"):
        RemoteRegistry(h.url, token=h.admin_token, policy=Policy())
    same = RemoteRegistry(h.url, token=h.admin_token, policy=h.client().policy)
    assert same.policy.authenticated_approvals is True and same.policy_info().sha256 == stored.sha256


def test_record_refuses_the_registry_namespaces(team: dict[str, Any], unchanged: Any) -> None:
    for action in ("version.approved", "approval.granted", "model.pickle_loaded", "policy.set"):
        with unchanged(), pytest.raises(errors.InvalidInput):
            team["admin"].record(action, model="churn", version=1)
    assert team["olga"].record("custom.note", model="churn", payload={"n": 1}).action == "custom.note"


def test_whoami_is_the_authenticated_principal(team: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVFLOW_ACTOR", "someone-else")  # a claim; whoami answers with the token's name
    assert team["alice"].whoami() == "alice" and team["admin"].whoami() == "admin"
