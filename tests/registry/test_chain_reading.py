"""How verify reads the chain: the fast path must hash exactly the canonical body.

Verify hashes the stored payload text spliced into the body instead of re-encoding it, reads
raw rows in batches and turns SQLite's time strings into ISO 8601. Each shortcut must give the
same bytes as the slow, obvious way, or a valid chain would be reported broken (or a slower
fallback would quietly carry every check).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from registry import Registry, audit
from registry.canonical import canonical


@pytest.fixture
def events(registry: Registry, artifact: Path) -> Registry:
    registry.register("m", artifact, actor="ａlice", params={"q": 'say "hi"\\n', "n": None}, tags={"é": "ü"})
    registry.transition("m", 1, "staging", actor="alice", reason="tab\there")
    registry.approve("m", 1, actor="bob", reason='quote " and backslash \\')
    registry.record("custom.note", model="m", version=1, payload={"x": [1, 2.5, True, None]}, actor="o'brien")
    registry.record("custom.empty", actor="ops")
    return registry


def test_spliced_body_is_the_canonical_body_for_every_stored_event(events: Registry) -> None:
    assert events.verify_audit().noncanonical == 0
    with events.db.snapshot() as conn:
        rows = list(audit._raw_events(conn))
        entities = list(audit.iter_events(conn))
    assert len(rows) == len(entities) >= 6
    for raw, row in zip(rows, entities, strict=True):
        seq, at, actor, db_user, action, model, version, text, _prev, _hash = raw
        spliced = audit._spliced(seq, audit._iso(at), actor, db_user, action, model, version, text)
        assert spliced == canonical(audit.event_body(row)), seq
        assert text == canonical(row.payload).decode()  # stored canonical, so no re-encoding


def test_raw_rows_come_in_order_across_batches(events: Registry) -> None:
    with events.db.snapshot() as conn:
        whole = [r[0] for r in audit._raw_events(conn)]
        small = [r[0] for r in audit._raw_events(conn, batch=2)]
        entities = [r.seq for r in audit.iter_events(conn, batch=2)]
        only_m = [r.seq for r in audit.iter_events(conn, model="m", batch=1)]
    assert whole == small == entities == list(range(1, len(whole) + 1))
    assert only_m and len(only_m) < len(whole) and only_m == sorted(only_m)


def test_iso_matches_isoformat_for_every_stored_shape() -> None:
    moment = datetime(2026, 3, 3, 12, 0, 1, 5, tzinfo=UTC)
    assert audit._iso("2026-03-03 12:00:01.000005") == moment.isoformat(timespec="microseconds")
    assert audit._iso("2026-03-03 12:00:01") == "2026-03-03T12:00:01.000000+00:00"
    assert audit._iso("2026-03-03T12:00:01.000005") == moment.isoformat(timespec="microseconds")
    east = moment.astimezone(timezone(timedelta(hours=2)))
    assert audit._iso(east) == "2026-03-03T12:00:01.000005+00:00"


@pytest.mark.parametrize("value", ["plain", "é ü 中", 'a"b', "a\\b", "line\nbreak", "\x7f", "", None, 0, 42])
def test_string_fast_path_equals_the_json_encoder(value: object) -> None:
    assert audit._STR(value) == audit._ENCODE(value)


def test_verify_reads_the_chain_in_batches(events: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain longer than one batch verifies, and an edit in a later batch is found there."""
    original = audit._raw_events
    monkeypatch.setattr(audit, "_raw_events", lambda conn, batch=2: original(conn, batch=2))
    report = events.verify_audit()
    assert report.ok and report.events >= 6
    assert report.noncanonical == 0  # every event took the spliced fast path
    with events.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 5")
    report = events.verify_audit()
    assert not report.ok and report.first_bad_seq == 5
