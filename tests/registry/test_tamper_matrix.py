"""The tamper matrix: what an insider with write access to the database can hide, and from what.

Three kinds of attacker, each against the plain `verify` and against `verify` plus a signed
checkpoint taken before the attack:
- edits a state table by raw SQL (the log untouched): replay catches it;
- edits an event and recomputes the chain (the tables untouched): replay catches it;
- rewrites log and tables together, consistently, with a recomputed chain (for example a history
  rebuilt through the registry itself): only the checkpoint catches it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Policy, Registry
from registry import checkpoint as ck
from registry.audit import GENESIS, link_hash
from registry.db.tables import audit_events, metadata
from registry.errors import IntegrityError
from tests.registry.test_state_binding import ATTACKS, _sql


def _history(reg: Registry, artifact: Path, approver: str) -> None:
    for number in (1, 2):
        reg.register("churn", artifact, actor="alice", params={"depth": number})
        reg.transition("churn", number, "staging", actor="alice")
        reg.add_evidence("churn", number, gate="fairness", passed=True, value=0.1, actor="ci")
        reg.approve("churn", number, actor=approver if number == 2 else "bob", reason="ok")
        reg.transition("churn", number, "production", actor="alice")


def _verdicts(reg: Registry, note: str, pub: Path) -> tuple[bool, bool]:
    """(caught by verify, caught by verify plus the checkpoint)."""
    by_verify = not reg.verify_audit().ok
    try:
        ck.verify_note(reg, note, ck.load_verifier(pub), "ckpt")
        by_checkpoint = False
    except IntegrityError:
        by_checkpoint = True
    return by_verify, by_verify or by_checkpoint


def _rehash(reg: Registry, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the events (``edit`` changes one) and recompute every hash and the head."""
    events = [edit(e) for e in reg.audit_log()]
    prev = GENESIS
    with reg.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events"))
        for event in events:
            body = event.model_dump(mode="json", exclude={"hash", "prev_hash"})
            body["at"] = event.at.isoformat(timespec="microseconds")
            digest = link_hash(prev, body)
            conn.execute(
                audit_events.insert().values(
                    **event.model_dump(exclude={"hash", "prev_hash"}), prev_hash=prev, hash=digest
                )
            )
            prev = digest
        conn.execute(
            sa.text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": len(events), "h": prev}
        )


@pytest.fixture
def signed(registry: Registry, artifact: Path, tmp_path: Path) -> tuple[Registry, str, Path]:
    _history(registry, artifact, approver="bob")
    key, pub = ck.keygen(tmp_path / "auditor")
    note = ck.make_checkpoint(registry, key)
    assert _verdicts(registry, note, pub) == (False, False)
    return registry, note, pub


def test_a_raw_edit_of_any_state_table_is_caught_with_or_without_a_checkpoint(signed) -> None:  # type: ignore[no-untyped-def]
    reg, note, pub = signed
    _sql(reg, "UPDATE approvals SET actor = 'mallory'")
    assert _verdicts(reg, note, pub) == (True, True)


def test_an_event_edited_and_rehashed_is_caught_by_replay(signed) -> None:  # type: ignore[no-untyped-def]
    reg, note, pub = signed

    def forge(event):  # type: ignore[no-untyped-def]
        return event.model_copy(update={"actor": "mallory"}) if event.action == "version.approved" else event

    _rehash(reg, forge)
    report = reg.verify_audit()
    assert (
        report.scope == "state" and "approvals entry 1: actor is bob, the log says mallory" in report.message
    )
    assert _verdicts(reg, note, pub) == (True, True)


def test_a_consistently_forged_history_passes_verify_but_not_the_checkpoint(
    signed, backend_url: str, tmp_path: Path, artifact: Path
) -> None:  # type: ignore[no-untyped-def]
    reg, note, pub = signed
    # The forger builds the history they want through the registry itself, in a scratch
    # database, then copies every table over the real one.
    scratch = Registry(
        url=f"sqlite:///{tmp_path / 'forged.db'}", artifact_root=str(tmp_path / "a"), policy=Policy()
    )
    _history(scratch, artifact, approver="mallory")
    with scratch.db.engine.connect() as src, reg.db.engine.begin() as dst:
        for table in reversed(metadata.sorted_tables):
            dst.execute(table.delete())
        for table in metadata.sorted_tables:
            rows = [dict(r._mapping) for r in src.execute(sa.select(table))]
            if rows:
                dst.execute(table.insert(), rows)
    scratch.close()
    assert [a.actor for a in reg.get_version("churn", 2).approvals] == ["mallory"]
    assert _verdicts(reg, note, pub) == (False, True)


def test_matrix_of_raw_edits(signed) -> None:  # type: ignore[no-untyped-def]
    """Every raw state edit of test_state_binding, on this smaller history, against both checks."""
    reg, note, pub = signed
    applicable = ["approver-renamed", "model-creator", "metrics", "params", "swap-digest", "policy-document"]
    for name in applicable:
        statements, _ = ATTACKS[name]
        with reg.db.engine.connect() as conn:
            before = {
                t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))] for t in metadata.sorted_tables
            }
        _sql(reg, *statements)
        assert _verdicts(reg, note, pub) == (True, True), name
        with reg.db.engine.begin() as conn:  # put the rows back for the next attack
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            for table in metadata.sorted_tables:
                if before[table.name]:
                    conn.execute(table.insert(), before[table.name])
        assert _verdicts(reg, note, pub) == (False, False), name
