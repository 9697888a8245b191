"""The hash chain (invariant 4): every kind of tampering is caught at the right seq."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Registry
from registry.audit import GENESIS, canonical
from registry.errors import AuditChainBroken


@pytest.fixture
def chain(registry: Registry, artifact: Path) -> Registry:
    for i in range(3):
        registry.register("churn", artifact, actor=f"user{i}", metrics={"auc": 0.5 + i / 10})
    registry.set_alias("churn", "champion", 2, actor="ops")
    assert registry.verify_audit().ok
    return registry


def _sql(reg: Registry, statement: str) -> None:
    with reg.db.engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_hash_is_sha256_of_prev_and_canonical_json(chain: Registry) -> None:
    first, second = chain.audit_log()[:2]
    body = first.model_dump(mode="json", exclude={"hash", "prev_hash"})
    body["at"] = first.at.isoformat(timespec="microseconds")
    assert first.prev_hash == GENESIS
    assert first.hash == hashlib.sha256(GENESIS.encode() + canonical(body)).hexdigest()
    assert second.prev_hash == first.hash
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2", 2),
        ("UPDATE audit_events SET payload = '{\"forged\": true}' WHERE seq = 3", 3),
        ("DELETE FROM audit_events WHERE seq = 2", 2),
        ("DELETE FROM audit_events WHERE seq = 4", 4),
        ("UPDATE audit_events SET seq = seq + 10 WHERE seq = 3", 3),
    ],
    ids=["edit-actor", "edit-payload", "delete-middle", "delete-last", "renumber"],
)
def test_tampering_is_detected(chain: Registry, tamper: str, bad_seq: int) -> None:
    _sql(chain, tamper)
    report = chain.verify_audit()
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    with pytest.raises(AuditChainBroken, match=f"seq {bad_seq}"):
        chain.verify_audit(raise_on_error=True)


def test_reordering_is_detected(chain: Registry) -> None:
    # Swap the content of events 2 and 3, keeping their seq numbers.
    events = chain.audit_log()
    e2, e3 = events[1], events[2]
    with chain.db.engine.begin() as conn:
        for target, src in ((2, e3), (3, e2)):
            conn.execute(
                sa.text("UPDATE audit_events SET actor=:a, payload=:p, hash=:h, prev_hash=:ph WHERE seq=:s"),
                {
                    "a": src.actor,
                    "p": json.dumps(src.payload),
                    "h": src.hash,
                    "ph": src.prev_hash,
                    "s": target,
                },
            )
    report = chain.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_inserted_event_is_detected(chain: Registry) -> None:
    last = chain.audit_log()[-1]
    # A forged event appended with a self-consistent hash but without moving the chain head.
    body = {
        "seq": last.seq + 1,
        "at": last.at.isoformat(timespec="microseconds"),
        "actor": "mallory",
        "db_user": None,
        "action": "version.promoted",
        "model": "churn",
        "version": 1,
        "payload": {},
    }
    forged = hashlib.sha256(last.hash.encode() + canonical(body)).hexdigest()
    with chain.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_events (seq, at, actor, action, model, version, payload, prev_hash, hash) "
                "VALUES (:s, :at, 'mallory', 'version.promoted', 'churn', 1, '{}', :ph, :h)"
            ),
            {
                "s": last.seq + 1,
                "at": last.at.replace(tzinfo=None) if chain.db.dialect == "sqlite" else last.at,
                "ph": last.hash,
                "h": forged,
            },
        )
    report = chain.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, last.seq + 1)


def test_export_writes_every_event(chain: Registry, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    assert chain.export_audit(out) == 5  # the policy the first registration seeded, then four
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["action"] == "policy.recorded" and lines[0]["payload"]["in_force"]
    assert lines[-1]["action"] == "alias.set"


def test_bad_log_limit_and_export_path_are_refused(chain: Registry, tmp_path: Path) -> None:
    from registry.errors import InvalidInput

    with pytest.raises(InvalidInput, match="limit"):
        chain.audit_log(limit=0)
    with pytest.raises(InvalidInput, match="folder"):
        chain.export_audit(tmp_path / "missing" / "audit.jsonl")
    with pytest.raises(InvalidInput, match="folder"):
        chain.export_audit(tmp_path)
    assert len(chain.audit_log(limit=1)) == 1
