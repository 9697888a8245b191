"""A registry server counts only authenticated approvals, however it was seeded (issue 19, item 1).

The server runs as docs/server.md starts it: `govflow server` in its own process, with
`GOVFLOW_POLICY` pointing at a seed file. A seed that leaves `authenticated_approvals` out, a
registry made embedded and served later, and a lax policy written around the running server all
end the same way: a typed name does not count. Only an admin's `policy set --reason` on the
server turns that off, and then every report of the policy says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from registry import Registry, errors
from registry.base import now
from registry.policy import Policy
from registry.remote import RemoteRegistry
from registry.stages import Stage
from tests.fixtures.backends import fresh_database
from tests.service.conftest import TABLES

CODE = "import govflow.cli.server; from govflow.cli import main; main()"
SEED = "[stages.production]\napprovals = 1\n"  # the seed: no word on authenticated_approvals


@dataclass
class Served:
    """A `govflow server` process, and what it printed once stopped."""

    url: str
    token: str
    stdout: str = ""
    stderr: str = ""
    clients: list[Any] = field(default_factory=list)

    def client(self, token: str | None = None, **kw: Any) -> Any:
        self.clients.append(RemoteRegistry(self.url, token=token or self.token, **kw))
        return self.clients[-1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVFLOW_", "PREFECT_API"))}
    return {**env, "GOVFLOW_ACTOR": "root", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(db_url: str, tmp: Path, *, policy: Path | None = None) -> Iterator[Served]:
    """`govflow server` on ``db_url`` (the first start makes admin ``ops``), stopped at the end."""
    token_file = tmp / "admin.token"
    args = [
        sys.executable,
        "-c",
        CODE,
        "server",
        "--port",
        str(port := _free_port()),
        "--log-level",
        "warning",
    ]
    if not token_file.exists():
        args += ["--init-admin", "ops", "--token-file", str(token_file)]
    extra = {"GOVFLOW_REGISTRY_URL": db_url, "GOVFLOW_ARTIFACT_ROOT": str(tmp / "artifacts")}
    if policy is not None:
        extra["GOVFLOW_POLICY"] = str(policy)
    proc = subprocess.Popen(
        args, env=_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    s = Served(url=f"http://127.0.0.1:{port}", token="")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(s.url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        s.token = token_file.read_text().strip()
        yield s
    finally:
        for c in s.clients:
            c.close()
        proc.terminate()
        s.stdout, s.stderr = proc.communicate(timeout=30)


def _start_refused(db_url: str, tmp: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    extra = {
        "GOVFLOW_REGISTRY_URL": db_url,
        "GOVFLOW_ARTIFACT_ROOT": str(tmp / "artifacts"),
        "GOVFLOW_POLICY": str(policy),
    }
    return subprocess.run(
        [sys.executable, "-c", CODE, "server", "--port", str(_free_port())],
        env=_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _state(db_url: str) -> dict[str, Any]:
    """Row counts of every state table and the chain head, read from the database itself."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            out: dict[str, Any] = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES
            }
            out["head"] = conn.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar()
    finally:
        engine.dispose()
    return out


def _policy_sets(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM audit_events WHERE action = 'policy.set'"
            return int(conn.execute(sa.text(query)).scalar() or 0)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    yield from fresh_database(request, request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(SEED)
    return path


def _staged_by_bob(s: Served, tmp: Path) -> tuple[Any, str]:
    """bob (pipeline) registers churn/1 and stages it; returns bob's client and token."""
    token = s.client().add_user("bob", ["pipeline"]).token
    bob = s.client(token)
    model = tmp / "model.bin"
    model.write_bytes(b"churn model bytes")
    bob.register("churn", model, metrics={"auc": 0.91})
    bob.transition("churn", 1, "staging")
    return bob, token


def _claim_carol(s: Served, token: str) -> httpx.Response:
    """The issue's forged form answer: the registrant's pipeline token relays 'carol'."""
    return httpx.post(
        f"{s.url}/api/v1/models/churn/versions/1/approve",
        headers={"Authorization": f"Bearer {token}", "X-Govflow-Channel": "prefect-form"},
        json={"claimed_by": "carol"},
    )


def _promote(s: Served, token: str) -> httpx.Response:
    return httpx.post(
        f"{s.url}/api/v1/models/churn/versions/1/transition",
        headers={"Authorization": f"Bearer {token}"},
        json={"stage": "production"},
    )


# --- the sequence ---------------------------------------------------------------------


def test_a_seeded_server_refuses_the_promotion_a_typed_name_would_carry(
    db_url: str, tmp_path: Path, seed: Path
) -> None:
    with served(db_url, tmp_path, policy=seed) as s:
        admin = s.client()
        _, bob = _staged_by_bob(s, tmp_path)
        olga = admin.add_user("olga", ["operator"]).token
        claim = _claim_carol(s, bob)
        assert claim.status_code == 200, claim.text  # recorded, as a claim
        assert (claim.json()["actor"], claim.json()["claimed_by"]) == ("carol", "carol")
        before = _state(db_url)
        refused = _promote(s, olga)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["govflow_error"] == "ApprovalRequired"
        assert "typed into a form, not authenticated: carol" in problem["detail"]
        assert _state(db_url) == before  # the refused call wrote nothing
        assert admin.get_version("churn", 1).stage == Stage.STAGING
        info = admin.policy_info()
        assert info.document["authenticated_approvals"] is True and info.warnings == []
        assert info.document["stages"]["production"]["approvals"] == 1  # the seed's own key
        assert "seeded from GOVFLOW_POLICY (server mode" in (info.reason or "")
        # A client bringing the same seed file reads it as the server did: no false refusal.
        assert s.client(policy=seed).policy_info().sha256 == info.sha256
        assert admin.verify_audit().ok
    assert "authenticated approvals required" in s.stdout, s.stdout


def test_a_registry_made_embedded_and_then_served_counts_only_authenticated_approvals(
    sqlite_url: str, tmp_path: Path, seed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = Registry(url=sqlite_url, artifact_root=str(tmp_path / "artifacts"), policy=seed)
    model = tmp_path / "model.bin"
    model.write_bytes(b"churn model bytes")
    embedded.register("churn", model, actor="bob")
    embedded.transition("churn", 1, "staging", actor="bob")
    embedded.approve("churn", 1, claimed_by="carol")  # counts while embedded (the embedded default)
    assert embedded.policy.authenticated_approvals is False
    embedded.close()
    with served(sqlite_url, tmp_path, policy=seed) as s:  # started as docs/server.md shows
        admin = s.client()
        olga = admin.add_user("olga", ["operator"]).token
        before = _state(sqlite_url)
        refused = _promote(s, olga)
        assert refused.status_code == 409 and refused.json()["govflow_error"] == "ApprovalRequired", (
            refused.text
        )
        assert "typed into a form, not authenticated: carol" in refused.json()["detail"]
        assert _state(sqlite_url) == before
        info = admin.policy_info()
        assert info.document["authenticated_approvals"] is True
        assert info.reason is not None and info.reason.startswith("server mode: ")
        assert (info.set_by, admin.policy_history()[-1].sha256) == ("root", info.sha256)
        assert admin.verify_audit().ok
    assert "tightened (policy.set)" in s.stdout, s.stdout
    with served(sqlite_url, tmp_path, policy=seed) as again:  # a second start has nothing to tighten
        assert again.client().policy_info().sha256 == info.sha256
    assert _policy_sets(sqlite_url) == 1
    assert "authenticated approvals required" in again.stdout and "tightened" not in again.stdout


# --- only an admin, with a reason, on the server ------------------------------------------------


def test_only_an_admin_with_a_reason_lets_typed_names_count_and_every_report_warns(
    sqlite_url: str, tmp_path: Path
) -> None:
    lax = tmp_path / "lax.toml"
    lax.write_text("authenticated_approvals = false\n")
    with served(sqlite_url, tmp_path) as s:
        admin = s.client()
        _, bob = _staged_by_bob(s, tmp_path)
        users = {r: admin.add_user(f"{r}-1", [r]).token for r in ("reader", "approver", "operator")}
        before = _state(sqlite_url)
        for token in (*users.values(), bob):
            with pytest.raises(errors.Forbidden):
                s.client(token).set_policy(lax, reason="faster releases")
        for reason in (None, "", "   "):
            with pytest.raises(
                errors.InvalidInput, match="^reason: turning authenticated_approvals off"
            ) as err:
                admin.set_policy(lax, reason=reason)
            assert err.value.field == "reason"
        raw = httpx.put(  # a raw document saying so, without a reason
            f"{s.url}/api/v1/policy",
            headers={"Authorization": f"Bearer {s.token}"},
            json={"document": {"authenticated_approvals": False}},
        )
        assert raw.status_code == 400 and raw.json()["field"] == "reason", raw.text
        assert _state(sqlite_url) == before
        # A document that leaves the key out takes the server's default: no reason needed.
        partial = admin.set_policy({"approval_valid_for": "2d"})
        assert partial.document["authenticated_approvals"] is True and partial.warnings == []
        info = admin.set_policy(lax, reason="pilot team: form answers count until SSO lands")
        assert info.document["authenticated_approvals"] is False
        (warning,) = info.warnings
        assert warning.startswith("WARNING: authenticated_approvals = false") and "pilot team" in warning
        assert "by ops" in warning
        for token in (s.token, users["reader"]):
            shown = subprocess.run(
                [sys.executable, "-m", "govflow", "policy", "show"],
                env=_env(GOVFLOW_REGISTRY_URL=s.url, GOVFLOW_TOKEN=token),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert shown.returncode == 0, shown.stderr
            assert shown.stderr.strip() == warning and "WARNING" not in shown.stdout
        # The admin's choice holds: the typed name now counts.
        assert _claim_carol(s, bob).status_code == 200
        assert _promote(s, users["operator"]).status_code == 200
    with served(sqlite_url, tmp_path) as again:  # a restart keeps it, and says so
        assert again.client().policy_info().sha256 == info.sha256
    assert warning in again.stderr, again.stderr
    assert "typed names count" in again.stdout
    embedded = Registry(url=sqlite_url, artifact_root=str(tmp_path / "artifacts"))
    try:  # the warning belongs to the stored policy: an embedded reader sees it too
        assert embedded.policy_info().warnings == [warning]
    finally:
        embedded.close()


def test_a_lax_policy_set_outside_the_server_is_tightened_at_the_next_start(
    sqlite_url: str, tmp_path: Path
) -> None:
    with served(sqlite_url, tmp_path) as s:
        s.client().policy_info()
    embedded = Registry(url=sqlite_url, artifact_root=str(tmp_path / "artifacts"))
    try:  # someone with the database URL, not the server: a reason does not make it an admin's act
        lax = embedded.set_policy(Policy(), reason="looks harmless", actor="ops")
    finally:
        embedded.close()
    with served(sqlite_url, tmp_path) as again:
        assert again.client().policy.authenticated_approvals is True
    assert "tightened" in again.stdout
    assert lax.warnings == []  # nothing to warn about: it never held on a server


def test_a_lax_policy_written_around_a_running_server_decides_nothing(
    registry_server: Any, tmp_path: Path
) -> None:
    from tests.service.conftest import snapshot

    h = registry_server
    bob_token = h.token("pipeline", name="bob")
    bob = h.client(bob_token)
    model = tmp_path / "model.bin"
    model.write_bytes(b"churn model bytes")
    bob.register("churn", model)
    bob.transition("churn", 1, "staging")
    around = Registry(url=h.registry.url, artifact_root=str(tmp_path / "elsewhere"))
    try:
        around.set_policy(Policy(), reason="not through the server", actor="root")
    finally:
        around.close()
    before = snapshot(h)
    with pytest.raises(errors.PolicyError, match="not set on this server by an admin") as err:
        bob.approve("churn", 1, claimed_by="carol")
    assert err.value.field == "authenticated_approvals"
    assert snapshot(h) == before
    bob.close()


# --- a seed cannot say it either ---------------------------------------------------------------


def test_a_seed_that_lets_typed_names_count_is_refused_at_start(sqlite_url: str, tmp_path: Path) -> None:
    lax = tmp_path / "lax.toml"
    lax.write_text("authenticated_approvals = false\n" + SEED)
    out = _start_refused(sqlite_url, tmp_path, lax)
    assert out.returncode == 2, (out.stdout, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: GOVFLOW_POLICY: authenticated_approvals = false is refused on a server")
    assert "govflow policy set" in line and "--reason" in line
    engine = sa.create_engine(sqlite_url)
    try:
        assert sa.inspect(engine).get_table_names() == []  # no schema, no rows
    finally:
        engine.dispose()


@pytest.mark.parametrize("spelled", ["false", '"false"', '"no"', "0"])
def test_a_lax_seed_is_refused_however_it_is_spelled(sqlite_url: str, tmp_path: Path, spelled: str) -> None:
    lax = tmp_path / "lax.toml"
    lax.write_text(f"authenticated_approvals = {spelled}\n")
    with pytest.raises(errors.PolicyError, match="refused on a server") as err:
        Registry(url=sqlite_url, artifact_root=str(tmp_path / "a"), policy=lax, server=True)
    assert err.value.field == "authenticated_approvals"


def test_server_defaults_fill_only_what_a_file_leaves_out(tmp_path: Path) -> None:
    from registry.policy import SERVER_DEFAULTS

    path = tmp_path / "p.toml"
    path.write_text(SEED)
    assert Policy.load(path).authenticated_approvals is False  # embedded: the built-in default
    served_policy = Policy.load(path, defaults=SERVER_DEFAULTS)
    assert served_policy.authenticated_approvals is True
    assert served_policy == Policy.server_default().model_copy(update={"stages": served_policy.stages})
    path.write_text("authenticated_approvals = true\nwaivers = false\n")
    assert Policy.load(path, defaults=SERVER_DEFAULTS).waivers is False  # the file's own keys win
    strict = Policy.server_default()
    # The rest is strict already: failed gates block until an audited waiver, approvals expire.
    assert strict.approval_valid_for == 7 * 86_400 and strict.separation_of_duties
    assert strict.rule(Stage.PRODUCTION).approvals == 1


def test_a_history_row_written_by_raw_sql_is_no_admins_choice(sqlite_url: str, tmp_path: Path) -> None:
    from registry import identity
    from registry.db.tables import policies, policy_history
    from registry.policy_record import digest
    from registry.service.strict import hold_to_server_rules

    reg = Registry(url=sqlite_url, artifact_root=str(tmp_path / "a"), server=True)
    try:
        hold_to_server_rules(reg)
        with pytest.raises(errors.Forbidden, match="only an admin authenticated by the server"):
            reg.set_policy({"authenticated_approvals": False}, reason="no token", actor="root")
        admin = identity.Caller(channel="cli", principal="ops", roles=frozenset({"admin"}))
        with identity.acting(admin):
            assert reg.set_policy({"authenticated_approvals": False}, reason="pilot").warnings
        sha, doc = digest(Policy(approval_valid_for=3600))  # lax too, and put in force around the API
        with reg.db.engine.begin() as conn:
            conn.execute(
                policies.insert(), {"sha256": sha, "document": doc, "recorded_at": now(), "recorded_by": "x"}
            )
            conn.execute(
                policy_history.insert(), {"sha256": sha, "set_by": "ops", "set_at": now(), "reason": "pilot"}
            )
        assert reg.policy_info().warnings == []  # the admin's event names another document
        assert (
            hold_to_server_rules(reg)
            .lines[0]
            .startswith("policy: authenticated approvals required; server mode")
        )
        assert reg.policy.authenticated_approvals is True
        assert not reg.verify_audit().ok  # and the raw row itself is caught
    finally:
        reg.close()
