"""Signed checkpoints (invariant 13): history pinned outside the database.

The attack they exist for: someone with write access to the database edits an early event and
recomputes every later hash, so the chain verifies on its own. The checkpoint signed before
the edit no longer matches.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Policy, Registry, audit
from registry import checkpoint as ck
from registry.audit import GENESIS, link_hash
from registry.db.tables import audit_events
from registry.errors import ArtifactStoreError, AuditChainBroken, IntegrityError, InvalidInput
from tests.fixtures.s3 import BUCKET

# The example of Go's golang.org/x/mod/sumdb/note, the reference implementation of the format.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


# --- helpers ----------------------------------------------------------------------------------


def _events(reg: Registry, n: int, tag: str = "e") -> None:
    for i in range(n):
        reg.record("custom.note", payload={"tag": tag, "i": i}, actor=f"user{i % 3}")


def _rebuild(reg: Registry, *, edit_seq: int | None = None, keep: int | None = None) -> None:
    """What a database writer can do: rewrite the events and recompute every hash and the head."""
    events = reg.audit_log()[:keep]
    prev = GENESIS
    with reg.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events"))
        for event in events:
            if event.seq == edit_seq:
                event = event.model_copy(update={"payload": {**event.payload, "forged": True}})
            body = event.model_dump(mode="json", exclude={"hash", "prev_hash"})
            body["at"] = event.at.isoformat(timespec="microseconds")
            digest = link_hash(prev, body)
            row = event.model_dump(exclude={"hash", "prev_hash"})
            conn.execute(audit_events.insert().values(**row, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(
            sa.text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": len(events), "hash": prev},
        )


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return ck.keygen(tmp_path / "signer")


@pytest.fixture
def local(tmp_path: Path):
    """A SQLite registry, for the checks that do not depend on the backend."""
    reg = Registry(
        url=f"sqlite:///{tmp_path / 'local.db'}", artifact_root=str(tmp_path / "a"), policy=Policy()
    )
    try:
        yield reg
    finally:
        reg.close()


def _cli(
    url: str, tmp_path: Path, *args: str, expect: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": url,
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GOVFLOW_ACTOR": "alice",
        "COLUMNS": "200",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "govflow", *args], env=full, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
    if expect:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


# --- the format -------------------------------------------------------------------------------


def test_signed_note_matches_the_reference_implementation(tmp_path: Path) -> None:
    (tmp_path / "go.key").write_text(GO_SKEY + "\n")
    (tmp_path / "go.pub").write_text(GO_VKEY + "\n")
    signer = ck.load_signing_key(tmp_path / "go.key")
    verifier = ck.load_verifier(tmp_path / "go.pub")
    assert verifier.key_id.hex() == "c74f20a3" and signer.verifier == verifier
    note = ck.sign_note(GO_TEXT, signer)
    assert note == GO_TEXT + "\n" + GO_SIG  # Ed25519 is deterministic: byte for byte
    assert ck.open_note(note, verifier, "go") == GO_TEXT


def test_checkpoint_body_is_origin_count_and_base64_head(local: Registry, keys) -> None:
    _events(local, 3)
    note = ck.make_checkpoint(local, keys[0], origin="example.com/registry")
    body, sig = note.split("\n\n")
    head = local.audit_log()[-1].hash
    assert body.split("\n") == ["example.com/registry", "3", base64.b64encode(bytes.fromhex(head)).decode()]
    assert sig.startswith("— govflow ") and sig.endswith("\n") and sig.count("\n") == 1
    raw = base64.b64decode(sig.split(" ")[2])
    assert raw[:4] == ck.load_verifier(keys[1]).key_id and len(raw) == 68


def test_default_origin_carries_no_credentials(tmp_path: Path) -> None:
    url = "postgresql+psycopg://app:s3cret@db.internal:5432/registry"
    assert ck.default_origin(url) == "govflow/postgresql/db.internal:5432/registry"
    assert (
        ck.default_origin(f"sqlite:///{tmp_path}/a b+c.db") == f"govflow/sqlite/{str(tmp_path)[1:]}/a_b_c.db"
    )


# --- keys -------------------------------------------------------------------------------------


def test_key_file_is_private_from_creation(tmp_path: Path) -> None:
    old = os.umask(0)  # a permissive umask must not widen the key's mode
    try:
        key, pub = ck.keygen(tmp_path / "k", name="ops.example/govflow")
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert pub.read_text().startswith("ops.example/govflow+")
    with pytest.raises(InvalidInput, match="exists; refusing to overwrite"):
        ck.keygen(tmp_path / "k")
    assert ck.load_signing_key(key).verifier == ck.load_verifier(pub)


@pytest.mark.parametrize(
    ("content", "loader", "message"),
    [
        (None, "key", "cannot read"),
        ("pub", "key", "is a public key"),
        ("key", "pubkey", "is a private key"),
        ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n", "key", "PEM"),
        ("PRIVATE+KEY+govflow+00000000+AgAA", "key", "is not Ed25519"),
        ("PRIVATE+KEY+govflow+00000000+not*base64", "key", "not valid base64"),
        ("govflow+00000000+AQAA", "pubkey", "32 bytes"),
        ("hello", "pubkey", "not a verifier key"),
        ("\xff\xfe", "key", "is not a signing key"),
    ],
    ids=["missing", "pub-as-key", "key-as-pub", "pem", "other-type", "bad-base64", "short", "junk", "binary"],
)
def test_bad_key_files_are_refused(tmp_path: Path, keys, content, loader, message) -> None:
    path = tmp_path / "candidate"
    if content == "pub":
        path = keys[1]
    elif content == "key":
        path = keys[0]
    elif content is not None:
        path.write_text(content)
    load = ck.load_signing_key if loader == "key" else ck.load_verifier
    with pytest.raises(InvalidInput, match=message) as err:
        load(path)
    assert err.value.field == loader and str(path) in str(err.value)
    secret = keys[0].read_text().strip().split("+", 4)[4]
    assert secret not in str(err.value)  # a key is never echoed


def test_key_id_must_match_the_key(tmp_path: Path, keys) -> None:
    forged = keys[1].read_text().replace("govflow+", "other+", 1)
    (tmp_path / "renamed.pub").write_text(forged)
    with pytest.raises(InvalidInput, match="does not match the key"):
        ck.load_verifier(tmp_path / "renamed.pub")


# --- round trip and the attacks (both backends) -----------------------------------------------


def test_round_trip_later_events_extend_the_checkpoint(registry: Registry, keys, artifact, tmp_path) -> None:
    registry.register("churn", artifact, actor="alice", metrics={"auc": 0.9})
    _events(registry, 3)  # with the seeded policy and the registration: five events
    signed, where = ck.save_checkpoint(registry, keys[0], tmp_path / "cp" / "5.txt")
    assert (signed.count, Path(where).name) == (5, "5.txt")
    _events(registry, 3, tag="later")
    check = ck.verify_checkpoint(registry, where, keys[1])
    assert (check.count, check.events, check.head_hash) == (5, 8, registry.audit_log()[4].hash)
    assert check.key == str(ck.load_verifier(keys[1]))


def test_rebuilt_chain_passes_plain_verify_but_not_the_checkpoint(registry: Registry, keys, tmp_path) -> None:
    _events(registry, 6)
    _, where = ck.save_checkpoint(registry, keys[0], tmp_path / "ckpt.txt")
    _events(registry, 2, tag="later")
    _rebuild(registry, edit_seq=2)
    assert registry.verify_audit().ok  # the rewrite is self-consistent: the chain alone cannot tell
    with pytest.raises(AuditChainBroken) as err:
        ck.verify_checkpoint(registry, where, keys[1])
    message = str(err.value)
    assert message.startswith(f"checkpoint {where}: event 6 has hash ")
    assert message.endswith("(history before the checkpoint was rewritten)") and "\n" not in message
    assert err.value.seq == 6


def test_rewriting_after_the_checkpoint_is_left_to_the_chain(registry: Registry, keys, tmp_path) -> None:
    _events(registry, 4)
    note = ck.make_checkpoint(registry, keys[0])
    _events(registry, 3, tag="later")
    _rebuild(registry, edit_seq=6)  # after the signed count: the checkpoint still holds
    assert ck.verify_checkpoint(registry, note, keys[1]).events == 7


def test_truncation_below_the_checkpoint_is_detected(registry: Registry, keys, tmp_path) -> None:
    _events(registry, 6)
    _, where = ck.save_checkpoint(registry, keys[0], tmp_path / "ckpt.txt")
    _rebuild(registry, keep=4)
    assert registry.verify_audit().ok
    with pytest.raises(
        AuditChainBroken, match=r"has 4 events, the checkpoint signed 6 \(history was truncated\)"
    ):
        ck.verify_checkpoint(registry, where, keys[1])


def test_rebuilt_chain_through_the_cli(backend_url: str, tmp_path: Path) -> None:
    prefix, cp = tmp_path / "ops", tmp_path / "ckpt.txt"
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "artifacts"), policy=Policy())
    try:
        _events(reg, 5)
        _cli(backend_url, tmp_path, "audit", "keygen", "--out", str(prefix))
        out = _cli(backend_url, tmp_path, "audit", "checkpoint", "--key", f"{prefix}.key", "--out", str(cp))
        assert "checkpoint of 5 events" in out.stdout and str(cp) in out.stdout
        ok = _cli(
            backend_url, tmp_path, "audit", "verify", "--checkpoint", str(cp), "--pubkey", f"{prefix}.pub"
        )
        assert f"checkpoint {cp} OK" in ok.stdout
        _events(reg, 2, tag="later")
        _rebuild(reg, edit_seq=1)
        assert "audit chain OK" in _cli(backend_url, tmp_path, "audit", "verify").stdout
        bad = _cli(
            backend_url,
            tmp_path,
            "audit",
            "verify",
            "--checkpoint",
            str(cp),
            "--pubkey",
            f"{prefix}.pub",
            expect=1,
        )
        assert bad.stderr.startswith(f"checkpoint {cp}: event 5 has hash ")
        assert "history before the checkpoint was rewritten" in bad.stderr
    finally:
        reg.close()


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2", 2),
        ("UPDATE audit_head SET hash = 'ab' || substr(hash, 3) WHERE id = 1", 3),
        ("UPDATE audit_head SET seq = 2 WHERE id = 1", 3),
    ],
    ids=["edited-event", "head-hash", "head-behind"],
)
def test_checkpoint_refuses_to_sign_a_broken_chain(
    registry: Registry, keys, tmp_path, tamper, bad_seq
) -> None:
    _events(registry, 3)
    with registry.db.engine.begin() as conn:
        conn.execute(sa.text(tamper))
    out = tmp_path / "ckpt.txt"
    with pytest.raises(AuditChainBroken, match=f"broken at seq {bad_seq}:.*no checkpoint signed") as err:
        ck.save_checkpoint(registry, keys[0], out)
    assert err.value.seq == bad_seq and not out.exists()


# --- tampered notes and other keys (backend-independent) --------------------------------------


@pytest.mark.parametrize("field", ["count", "hash", "origin"])
def test_edited_checkpoint_fails_the_signature(local: Registry, keys, tmp_path: Path, field: str) -> None:
    _events(local, 5)
    _, where = ck.save_checkpoint(local, keys[0], tmp_path / "ckpt.txt")
    lines = Path(where).read_text().split("\n")
    index = {"origin": 0, "count": 1, "hash": 2}[field]
    lines[index] = {"origin": "govflow/elsewhere", "count": "4", "hash": "A" * 43 + "="}[field]
    Path(where).write_text("\n".join(lines))
    with pytest.raises(IntegrityError, match=f"checkpoint {where}: the signature of .* does not verify"):
        ck.verify_checkpoint(local, where, keys[1])


def test_another_key_is_refused_even_with_the_same_name(local: Registry, keys, tmp_path: Path) -> None:
    _events(local, 2)
    note = ck.make_checkpoint(local, keys[0])
    _, other = ck.keygen(tmp_path / "other")  # also named govflow
    with pytest.raises(IntegrityError, match=r"not signed by govflow\+[0-9a-f]{8} \(signed by govflow\+"):
        ck.verify_checkpoint(local, note, other)


@pytest.mark.parametrize(
    "note",
    ["", "govflow\n3\n", "govflow\n3\nAAAA\n\n— govflow AAAA\n", "govflow\n3\nAAAA\n\n-- govflow QUFBQUFB\n"],
    ids=["empty", "unsigned", "short-signature", "ascii-dash"],
)
def test_malformed_notes_fail_verification(local: Registry, keys, tmp_path: Path, note: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(note)
    with pytest.raises(IntegrityError, match=f"checkpoint {path}: "):
        ck.verify_checkpoint(local, path, keys[1])


def test_expected_origin_is_enforced(local: Registry, keys) -> None:
    _events(local, 2)
    note = ck.make_checkpoint(local, keys[0], origin="example.com/prod")
    assert ck.verify_checkpoint(local, note, keys[1], origin="example.com/prod").origin == "example.com/prod"
    with pytest.raises(IntegrityError, match="origin is 'example.com/prod', expected 'example.com/dev'"):
        ck.verify_checkpoint(local, note, keys[1], origin="example.com/dev")


def test_cli_refusals_are_one_line(local: Registry, keys, tmp_path: Path) -> None:
    url = local.url
    _events(local, 2)
    cp = tmp_path / "ckpt.txt"
    ck.save_checkpoint(local, keys[0], cp)
    usage = _cli(url, tmp_path, "audit", "verify", "--checkpoint", str(cp), expect=2)
    assert usage.stderr.startswith("error: pubkey: --checkpoint needs --pubkey")
    wrong = _cli(
        url, tmp_path, "audit", "verify", "--checkpoint", str(cp), "--pubkey", str(keys[0]), expect=2
    )
    assert "is a private key" in wrong.stderr
    gone = _cli(
        url,
        tmp_path,
        "audit",
        "verify",
        "--checkpoint",
        str(tmp_path / "nope"),
        "--pubkey",
        str(keys[1]),
        expect=2,
    )
    assert f"checkpoint {tmp_path / 'nope'}: cannot read" in gone.stderr
    pub_as_key = _cli(url, tmp_path, "audit", "checkpoint", "--key", str(keys[1]), "--out", str(cp), expect=2)
    assert "is a public key" in pub_as_key.stderr
    again = _cli(url, tmp_path, "audit", "keygen", "--out", str(tmp_path / "signer"), expect=2)
    assert "refusing to overwrite" in again.stderr
    spaced = _cli(url, tmp_path, "audit", "keygen", "--out", str(tmp_path / "x"), "--name", "a b", expect=2)
    assert spaced.stderr.startswith("error: name: ") and not (tmp_path / "x.key").exists()


# --- S3 ---------------------------------------------------------------------------------------


def test_checkpoint_to_s3_and_back(local: Registry, keys, s3_env, s3_client) -> None:
    _events(local, 3)
    uri = f"s3://{BUCKET}/checkpoints-{uuid.uuid4().hex[:8]}/3.txt"
    signed, where = ck.save_checkpoint(local, keys[0], uri)
    assert where == uri and signed.count == 3
    bucket, key = uri[len("s3://") :].split("/", 1)
    stored = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert stored.startswith(f"{signed.origin}\n3\n")
    _events(local, 1, tag="later")
    assert ck.verify_checkpoint(local, uri, keys[1]).events == 4
    with pytest.raises(ArtifactStoreError, match="s3://no-such-bucket-x/c.txt: cannot write"):
        ck.save_checkpoint(local, keys[0], "s3://no-such-bucket-x/c.txt")
    with pytest.raises(InvalidInput, match="is not s3://bucket/key"):
        ck.save_checkpoint(local, keys[0], f"s3://{BUCKET}/")


# --- the monitor's helper and the flow --------------------------------------------------------


def test_env_checkpoint_is_off_without_a_key(local: Registry, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GOVFLOW_CHECKPOINT_KEY", raising=False)
    _events(local, 2)
    assert ck.checkpoint_from_env(local) is None
    assert not (tmp_path / "checkpoints").exists()


def test_env_checkpoint_lands_beside_the_registry(local: Registry, keys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GOVFLOW_CHECKPOINT_KEY", str(keys[0]))
    monkeypatch.delenv("GOVFLOW_CHECKPOINT_OUT", raising=False)
    _events(local, 12)
    where = ck.checkpoint_from_env(local)
    assert where == str(tmp_path / "checkpoints" / "000000000012.txt")
    assert ck.verify_checkpoint(local, where, keys[1]).count == 12


def test_env_checkpoint_to_an_s3_prefix(local: Registry, keys, monkeypatch, s3_env, s3_client) -> None:
    prefix = f"pins-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GOVFLOW_CHECKPOINT_KEY", str(keys[0]))
    monkeypatch.setenv("GOVFLOW_CHECKPOINT_OUT", f"s3://{BUCKET}/{prefix}/")
    _events(local, 7)
    assert ck.checkpoint_from_env(local) == f"s3://{BUCKET}/{prefix}/000000000007.txt"
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    assert [o["Key"] for o in listed] == [f"{prefix}/000000000007.txt"]


def test_monitor_flow_writes_a_checkpoint(prefect_api, keys, artifact, monkeypatch, tmp_path: Path) -> None:
    from flows.monitor import monitor

    url = f"sqlite:///{tmp_path / 'flow.db'}"
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", url)
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("GOVFLOW_CHECKPOINT_KEY", str(keys[0]))
    monkeypatch.setenv("GOVFLOW_CHECKPOINT_OUT", str(tmp_path / "pins"))
    reg = Registry(url=url, artifact_root=str(tmp_path / "artifacts"), policy=Policy())
    reg.register("credit-risk", artifact, actor="alice")  # seeds the policy: two events
    _events(reg, 1)
    config = tmp_path / "monitor.yaml"
    example = Path(__file__).resolve().parents[2] / "flows" / "examples" / "credit-risk.yaml"
    config.write_text(example.read_text())
    # No production version yet: the quickest real run, and it still pins the chain.
    assert monitor(str(config), str(tmp_path / "unused.csv"))["verdict"] == "no-production"
    assert [p.name for p in (tmp_path / "pins").iterdir()] == ["000000000003.txt"]
    assert ck.verify_checkpoint(reg, tmp_path / "pins" / "000000000003.txt", keys[1]).count == 3
    reg.close()


# --- one snapshot under concurrent writers ----------------------------------------------------

_WRITER = """
import sys
from pathlib import Path
from registry import Policy, Registry
reg = Registry(url=sys.argv[1], artifact_root=sys.argv[2], policy=Policy())
stop = Path(sys.argv[3])
while not stop.exists():
    reg.record("custom.tick", actor="writer")
"""


def test_concurrent_writers_cause_no_false_alarms(registry: Registry, keys, tmp_path: Path) -> None:
    # More than one fetch batch, so a walk spans several statements; one transaction is quicker.
    at = datetime.now(UTC)
    registry.db.transact(
        lambda conn: [audit.append(conn, at=at, actor="seed", action="custom.seed") for _ in range(1100)]
    )
    note = ck.make_checkpoint(registry, keys[0])
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, registry.url, str(tmp_path / "artifacts"), str(stop)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 60
        while registry.audit_log(limit=1)[0].seq <= 1100:  # the writer is appending
            assert time.monotonic() < deadline and writer.poll() is None, "writer did not start"
            time.sleep(0.05)
        for _ in range(15):
            assert ck.verify_checkpoint(registry, note, keys[1]).count == 1100
            ck.make_checkpoint(registry, keys[0])
        moved = registry.audit_log(limit=1)[0].seq
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0 and moved > 1101
