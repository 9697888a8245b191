"""Evidence packs: content of the JSON and Markdown, the checkpoint proof, the CLI, and the HTML
in a real headless Chromium (sections visible, nothing injected, no network), made embedded and
over HTTP with a reader token; each decision shown with the state it had when it took effect."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from registry import Policy, Registry
from registry import audit as chain
from registry.checkpoint import keygen, save_checkpoint, write_checkpoint
from registry.db.tables import approvals, audit_events, audit_head
from registry.errors import GovflowError, IntegrityError, InvalidInput
from registry.policy import StageRule
from registry.policy_record import digest
from registry.remote import RemoteRegistry
from registry.reports import build_pack, render, verify_segment, write_pack
from registry.reports.proof import ChainLink
from tests.fixtures.browser import headless_chromium

XSS = '<script>window.__pwned = 1</script><img src="http://127.0.0.1:9/x.png" onerror="window.__pwned = 2">'
TRAIN_SHA = "a" * 64
EVAL_SHA = "b" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECTIONS = {
    "model-card": "Model card",
    "lineage": "Lineage",
    "gates": "Gates",
    "decisions": "Approvals and rejections",
    "stage-history": "Stage history",
    "audit": "Audit events",
    "policy": "Policy in force",
}


@dataclass
class Story:
    reg: Registry
    checkpoint: Path
    pubkey: Path
    key: Path
    checkpoint_count: int
    after_seq: int  # an event on v1 made after the checkpoint


def _story(reg: Registry, tmp_path: Path) -> Story:
    """v1: lineage, two gates, rejected in round 1, approved in round 2, promoted; a checkpoint;
    one more event after it. v2 is registered later and replaces v1 in production."""
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights-v1")
    reg.register(
        "churn",
        model,
        actor="alice",
        description=f"Churn classifier. {XSS}",
        metrics={"auc": 0.91, "f1": 0.77},
        params={"C": 0.5, "split.eval_fraction": 0.25, "split.seed": 7},
        tags={"task": "classification"},
        input_schema=[{"name": "tenure", "dtype": "int64"}, {"name": "plan", "dtype": "object"}],
        lineage={
            "datasets": [
                {
                    "role": "train",
                    "uri": "s3://data/train.csv",
                    "sha256": TRAIN_SHA,
                    "rows": 8000,
                    "schema_fingerprint": "c" * 64,
                },
                {"role": "eval", "uri": "s3://data/eval.csv", "sha256": EVAL_SHA, "rows": 2000},
            ],
            "code": {"repo": "git@example.org:ml/churn.git", "commit": COMMIT, "dirty": False},
            "run": {"flow_run_id": "run-42", "flow_name": "retrain"},
        },
    )
    reg.add_evidence("churn", 1, gate="auc", passed=True, value=0.91, threshold=0.8, actor="ci")
    reg.add_evidence("churn", 1, gate="fairness", passed=True, value=0.04, threshold=0.1, actor="ci")
    reg.transition("churn", 1, "staging", actor="alice")
    reg.reject("churn", 1, reason=f"needs fairness review {XSS}", actor="bob")
    reg.transition("churn", 1, "staging", actor="alice")
    reg.approve("churn", 1, reason="gates green, card reviewed", actor="carol")
    reg.transition("churn", 1, "production", reason="go live", actor="alice")
    key, pub = keygen(tmp_path / "signer")
    signed, where = save_checkpoint(reg, key, tmp_path / "checkpoint.txt")
    reg.set_alias("churn", "champion", 1, actor="ops")
    after = reg.audit_log(model="churn")[-1].seq
    return Story(reg, Path(where), pub, key, signed.count, after)


@pytest.fixture
def story(registry: Registry, tmp_path: Path) -> Story:
    return _story(registry, tmp_path)


def when(at: Any) -> str:
    """A time as the pack prints it."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pack(s: Story, **kw):
    return build_pack(s.reg, "churn/1", checkpoint=s.checkpoint, pubkey=s.pubkey, **kw)


class PublicOnly:
    """A registry seen through its public API alone: the methods both the embedded registry and
    the HTTP client offer, and its URL. No ``db``, nothing private."""

    def __init__(self, reg: Any) -> None:
        self._reg = reg

    def __getattr__(self, name: str) -> Any:
        public = not name.startswith("_") and hasattr(Registry, name) and hasattr(RemoteRegistry, name)
        if name != "url" and (not public or name == "db"):
            raise AttributeError(f"{name} is not part of the public registry API")
        return getattr(self._reg, name)


def _moves(reg: Any, version: int, model: str = "churn") -> dict[str, list[Any]]:
    """The version's stage changes by kind, oldest first."""
    out: dict[str, list[Any]] = {}
    for c in reg.history(model):
        if c.version == version:
            out.setdefault(c.kind, []).append(c)
    return out


def _rollback_story(act: Callable[[str], Any], tmp_path: Path) -> None:
    """v1 approved by carol and promoted; drift fails on v1 in production; v2 (its failed auc
    waived by dave, approved by dave) replaces it; ops rolls back to v1.

    ``act(name)`` is the registry to call as ``name`` (one registry embedded, a client per user
    over HTTP); every call names its actor.
    """
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights-v1")
    act("alice").register("churn", model, actor="alice", metrics={"auc": 0.91})
    act("alice").add_evidence("churn", 1, gate="auc", passed=True, value=0.91, threshold=0.8, actor="alice")
    act("alice").transition("churn", 1, "staging", actor="alice")
    act("bob").reject("churn", 1, reason="needs a second look", actor="bob")
    act("alice").transition("churn", 1, "staging", actor="alice")
    act("carol").approve("churn", 1, reason="gates green", actor="carol")
    act("ops").transition("churn", 1, "production", reason="go live", actor="ops")
    act("alice").add_evidence(
        "churn", 1, gate="monitor.drift", passed=False, value=0.41, threshold=0.25, actor="alice"
    )
    model.write_bytes(b"weights-v2")
    act("alice").register("churn", model, actor="alice")
    act("alice").add_evidence("churn", 2, gate="auc", passed=False, value=0.79, threshold=0.8, actor="alice")
    act("alice").transition("churn", 2, "staging", actor="alice")
    act("dave").waive("churn", 2, "auc", reason="within noise of the champion", actor="dave")
    act("dave").approve("churn", 2, reason="retrained on fresh data", actor="dave")
    act("ops").transition("churn", 2, "production", reason="retrained", actor="ops")
    act("ops").rollback("churn", reason="v2 misroutes premium accounts", actor="ops")


def _restored_summary(reg: Any) -> str:
    v1 = _moves(reg, 1)
    back, promoted = v1["rollback"][-1], v1["promote"][-1]
    return (
        f"Restored to production by rollback on {when(back.at)}, reason “v2 misroutes premium accounts”, "
        f"by ops, rolling back version 2, under the approval of carol counted at its promotion on "
        f"{when(promoted.at)}."
    )


# --- content ------------------------------------------------------------------------------


def test_json_pack_holds_every_section(story: Story, tmp_path: Path) -> None:
    path = write_pack(_pack(story), tmp_path / "out", "json")
    data = json.loads(path.read_text())
    assert path.name == "churn-v1-evidence.json"

    head = data["header"]
    assert (head["model"], head["version"]) == ("churn", 1)
    assert head["chain"]["ok"] is True and head["chain"]["events"] == story.reg.verify_audit().events
    without = {**data, "header": {k: v for k, v in head.items() if k != "content_sha256"}}
    assert head["content_sha256"] == hashlib.sha256(chain.canonical(without)).hexdigest()

    card = data["model_card"]
    assert card["metrics"] == {"auc": 0.91, "f1": 0.77}
    assert card["registered_by"] == "alice" and card["stage"] == "production"
    assert [c["name"] for c in card["input_schema"]] == ["tenure", "plan"]
    assert card["description"].endswith(XSS)

    lineage = data["lineage"]
    assert [(d["role"], d["sha256"], d["rows"]) for d in lineage["datasets"]] == [
        ("train", TRAIN_SHA, 8000),
        ("eval", EVAL_SHA, 2000),
    ]
    assert lineage["split_rule"] == {"split.eval_fraction": 0.25, "split.seed": 7}
    assert lineage["code"]["commit"] == COMMIT and lineage["run"]["flow_run_id"] == "run-42"

    assert [(g["gate"], g["passed"], g["value"], g["threshold"]) for g in data["gates"]] == [
        ("auc", True, 0.91, 0.8),
        ("fairness", True, 0.04, 0.1),
    ]
    reject, approve = data["decisions"]
    assert (reject["decision"], reject["actor"], reject["target_stage"]) == ("reject", "bob", "production")
    assert reject["reason"].endswith(XSS) and not reject["current"]
    assert (approve["decision"], approve["actor"], approve["reason"]) == (
        "approve",
        "carol",
        "gates green, card reviewed",
    )
    assert reject["review_round"] < approve["review_round"]

    kinds = [(c["from_stage"], c["to_stage"], c["kind"]) for c in data["stage_history"]]
    assert kinds == [
        (None, "development", "register"),
        ("development", "staging", "transition"),
        ("staging", "development", "reject"),
        ("development", "staging", "transition"),
        ("staging", "production", "promote"),
    ]

    events = data["audit"]["events"]
    assert all(e["version"] == 1 for e in events)
    assert [e["action"] for e in events][:3] == ["version.registered", "evidence.added", "evidence.added"]
    assert all(b["prev_hash"] == a["hash"] for a, b in pairwise(events) if b["seq"] == a["seq"] + 1)

    decisions = data["policy"]["decisions"]
    assert {"version.approved", "version.rejected", "version.promoted"} <= {d["action"] for d in decisions}
    assert all(d["recorded"] for d in decisions)
    (doc,) = data["policy"]["documents"]
    assert doc["document"] == json.loads(chain.canonical(Policy().model_dump(mode="json")))
    assert doc["sha256"] == hashlib.sha256(chain.canonical(doc["document"])).hexdigest()


def test_checkpoint_proof_rechecks_offline(story: Story) -> None:
    proof = _pack(story).audit.proof
    assert proof is not None and proof.verified, proof and proof.problem
    assert proof.checkpoint_count == story.checkpoint_count
    assert story.after_seq in proof.uncovered_seqs and story.after_seq not in proof.covered_seqs
    # seq 1 seeds the policy; the version's story starts at its registration, seq 2.
    assert proof.covered_seqs[0] == 2 and proof.links_total == story.checkpoint_count - 1
    assert verify_segment(proof.segment, proof.checkpoint_head)
    # An edited body no longer reaches the signed head.
    forged = proof.segment[0].body.replace('"alice"', '"mallory"')
    links = [ChainLink(**{**proof.segment[0].model_dump(), "body": forged}), *proof.segment[1:]]
    assert not verify_segment(links, proof.checkpoint_head)


def test_a_version_after_the_checkpoint_is_not_covered(story: Story, tmp_path: Path) -> None:
    model = tmp_path / "v2.bin"
    model.write_bytes(b"weights-v2")
    story.reg.register("churn", model, actor="alice")
    proof = build_pack(
        story.reg, "churn/2", checkpoint=str(story.checkpoint), pubkey=story.pubkey
    ).audit.proof
    assert proof is not None and not proof.verified and proof.covered_seqs == [] and proof.uncovered_seqs
    assert proof.problem == "the checkpoint predates the version's events"


def test_checkpoint_kept_in_s3(s3_root: str, tmp_path: Path) -> None:
    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"), policy=Policy())
    try:
        s = _story(reg, tmp_path)
        uri = write_checkpoint(s.checkpoint.read_text(), f"{s3_root}/checkpoints/{s.checkpoint_count}.txt")
        proof = build_pack(reg, "churn/1", checkpoint=uri, pubkey=s.pubkey).audit.proof
    finally:
        reg.close()
    assert proof is not None and proof.verified and proof.checkpoint["source"] == uri


def test_proof_is_capped_and_says_so(story: Story) -> None:
    proof = _pack(story, cap=3).audit.proof
    assert proof is not None and proof.verified and proof.capped
    assert len(proof.segment) == 3 and proof.links_total == story.checkpoint_count - 1
    md = render(_pack(story, cap=3), "md")
    assert "capped" in md


def test_rebuilt_chain_passes_its_own_check_but_not_the_checkpoint(story: Story) -> None:
    reg = story.reg
    approve_seq = next(e.seq for e in reg.audit_log(model="churn") if e.action == "version.approved")
    _rewrite(reg, approve_seq, reason="forged after the fact")
    assert reg.verify_audit().ok  # a self-consistent rebuild fools the registry's own check
    pack = _pack(story)
    assert pack.audit.proof is not None and not pack.audit.proof.verified
    assert "rewritten" in (pack.audit.proof.problem or "")
    assert "NOT VERIFIED" in render(pack, "md")


def test_a_checkpoint_that_is_not_signed_by_the_key_is_refused(story: Story, tmp_path: Path) -> None:
    _, other = keygen(tmp_path / "other")
    with pytest.raises(IntegrityError, match="not signed by"):
        build_pack(story.reg, "churn/1", checkpoint=story.checkpoint, pubkey=other)
    with pytest.raises(InvalidInput, match="pubkey"):
        build_pack(story.reg, "churn/1", checkpoint=story.checkpoint)


def test_markdown_states_values_and_escapes_text(story: Story, tmp_path: Path) -> None:
    md = write_pack(_pack(story), tmp_path, "md").read_text()
    for heading in SECTIONS.values():
        assert f"## {heading}\n" in md
    for value in (TRAIN_SHA, EVAL_SHA, COMMIT, "8000", "0.91", "carol", "bob", "split.seed", "verified"):
        assert value in md
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;" in md
    assert "predates" not in md  # every decision here records its policy


def test_replaced_version_keeps_the_event_that_replaced_it(registry: Registry, tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"w")
    for v in (1, 2):
        registry.register("plain", model, actor="alice")
        registry.transition("plain", v, "staging", actor="alice")
        registry.approve("plain", v, actor="bob")
        registry.transition("plain", v, "production", actor="alice")
    pack = build_pack(registry, "plain/1")
    promoted = [
        (e.version, e.payload.get("replaced")) for e in pack.audit.events if e.action == "version.promoted"
    ]
    assert promoted == [(1, None), (2, 1)]
    assert [c.kind for c in pack.stage_history][-1] == "demote"
    assert pack.lineage.split_rule == {} and pack.audit.proof is None
    md = render(pack, "md")
    assert "### Split rule\n\nnot recorded" in md
    assert "No checkpoint was given" in md


def test_the_pack_reads_only_the_public_api(story: Story) -> None:
    """No ``reg.db``, nothing private: what a RemoteRegistry offers is enough, proof included."""
    at = story.reg.get("churn/1").registered_at + timedelta(days=1)
    public = build_pack(
        PublicOnly(story.reg), "churn/1", checkpoint=story.checkpoint, pubkey=story.pubkey, now=at
    )
    direct = _pack(story, now=at)
    assert public.audit.proof is not None and public.audit.proof.verified, public.audit.proof.problem
    assert public == direct  # the same pack, hash for hash


def test_each_decision_keeps_the_state_it_had_when_it_took_effect(story: Story) -> None:
    reg = story.reg
    moves = _moves(reg, 1)
    promoted, sent_back = moves["promote"][0], moves["reject"][0]
    # A month later carol's approval has long expired, and rounds have moved on: it still
    # reads as what it did, admitting the version to production.
    later = promoted.at + timedelta(days=30)
    pack = _pack(story, now=later)
    reject, approve = pack.decisions
    assert (approve.actor, approve.state.value, approve.settled_at) == ("carol", "counted", promoted.at)
    assert approve.state_note == f"counted at promotion on {when(promoted.at)}"
    assert (reject.actor, reject.state.value) == ("bob", "sent back")
    assert reject.state_note == f"sent the version back to development on {when(sent_back.at)}"
    data = json.loads(render(pack, "json"))
    assert [d["state_note"] for d in data["decisions"]] == [reject.state_note, approve.state_note]
    md, html = render(pack, "md"), render(pack, "html")
    for text in (approve.state_note, reject.state_note):
        assert text in md and text in html
    assert "lapsed" not in md and "lapsed" not in html


def test_a_typed_claim_beside_the_same_persons_approval_is_not_the_one_counted(
    registry: Registry, tmp_path: Path
) -> None:
    """carol's name typed into a form, then carol's own approval: the pack says only the second
    admitted the version, as the promotion counted it."""
    registry.set_policy({"authenticated_approvals": True}, actor="admin")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    registry.register("churn", model, actor="alice")
    registry.transition("churn", 1, "staging", actor="alice")
    registry.approve("churn", 1, claimed_by="carol", reason="typed")
    registry.approve("churn", 1, actor="carol", reason="signed in")
    registry.transition("churn", 1, "production", actor="ops")
    typed, signed = build_pack(registry, "churn/1").decisions
    assert (typed.state.value, signed.state.value) == ("not counted", "counted"), (typed, signed)
    assert "a name typed into a form" in typed.state_note


def test_open_and_closed_rounds_read_as_pending_expired_and_lapsed(
    registry: Registry, artifact: Path
) -> None:
    for v in (1, 2):
        registry.register("plain", artifact, actor="alice")
        registry.transition("plain", v, "staging", actor="alice")
        registry.approve("plain", v, reason="fine", actor="carol")
    registry.transition("plain", 2, "development", reason="data issue", actor="alice")
    (waiting,) = build_pack(registry, "plain/1").decisions
    expires = waiting.at + timedelta(days=7)
    assert waiting.state.value == "pending" and waiting.settled_at is None
    assert waiting.state_note == f"counts toward entering production until {when(expires)}"
    (old,) = build_pack(registry, "plain/1", now=expires + timedelta(seconds=1)).decisions
    assert (old.state.value, old.state_note) == (
        "expired",
        f"expired on {when(expires)} before the version entered production",
    )
    moved = _moves(registry, 2, "plain")["transition"][-1]
    (lapsed,) = build_pack(registry, "plain/2").decisions
    assert lapsed.state.value == "lapsed"
    assert (
        lapsed.state_note == f"lapsed on {when(moved.at)}: the version moved to development before it counted"
    )


def test_a_version_restored_by_rollback_says_so_and_why_its_failed_gate_stands(
    registry: Registry, tmp_path: Path
) -> None:
    _rollback_story(lambda _: registry, tmp_path)
    pack = build_pack(PublicOnly(registry), "churn/1")
    summary = _restored_summary(registry)
    assert pack.model_card.standing.summary == summary
    promote, back = pack.model_card.standing.spells
    assert (promote.how, promote.approved_by, promote.left_how) == (
        "promote",
        ["carol"],
        "superseded by version 2",
    )
    assert (back.how, back.rolled_back_version, back.approved_by, back.left_at) == (
        "rollback",
        2,
        ["carol"],
        None,
    )
    drift = next(g for g in pack.gates if g.gate == "monitor.drift")
    assert not drift.passed and drift.latest
    assert drift.note is not None and drift.note.startswith("recorded before the rollback of")
    assert "re-checks only the gates its policy requires for production (none)" in drift.note
    md, html = render(pack, "md"), render(pack, "html")
    for text in (summary, drift.note):
        assert text in md and text in html.replace("&#34;", '"')

    # v2's pack: its waiver counted at its promotion, and the rollback as context.
    v2 = build_pack(PublicOnly(registry), "churn/2")
    promoted2 = _moves(registry, 2)["promote"][0]
    (waiver,) = v2.waivers
    assert waiver.state.value == "counted" and waiver.settled_at == promoted2.at
    assert waiver.state_note.endswith(f"stand at the promotion on {when(promoted2.at)}")
    assert v2.model_card.standing.summary.startswith("Not in production now")
    assert "rolled back by ops (v2 misroutes premium accounts)" in v2.model_card.standing.summary


def test_the_audit_table_has_a_version_column_and_marks_other_versions_events(
    registry: Registry, tmp_path: Path
) -> None:
    _rollback_story(lambda _: registry, tmp_path)
    pack = build_pack(registry, "churn/1")
    context = [e for e in pack.audit.events if e.about == "context"]
    assert [(e.version, e.action, e.note) for e in context] == [
        (2, "version.promoted", "version 2 promoted, replacing this version")
    ]
    assert all(e.version == 1 for e in pack.audit.events if e.about == "version")
    (rolled,) = [e for e in pack.audit.events if e.action == "model.rolled_back"]
    assert (
        rolled.about == "version"
        and rolled.note == "restored this version by rollback, rolling back version 2"
    )
    md = render(pack, "md")
    assert "| seq | version | time | actor | action | prev_hash | hash |" in md
    promoted2 = context[0]
    assert (
        f"| {promoted2.seq} | 2 | {when(promoted2.at)} | ops | version.promoted *(context)*: version 2 promoted"
        in md
    )
    html = render(pack, "html")
    assert "<th>seq</th><th>version</th>" in html and html.count('<tr class="context">') == 1
    # v2's pack shows the rollback as context: an event of version 1 that moved version 2.
    v2 = build_pack(registry, "churn/2")
    assert [(e.version, e.action) for e in v2.audit.events if e.about == "context"] == [
        (1, "model.rolled_back")
    ]
    # Only this version's decisions are listed under the policy in force.
    assert {d.seq for d in pack.policy.decisions} <= {
        e.seq for e in pack.audit.events if e.about == "version"
    }


def test_the_policy_reads_as_toml_beside_its_hash(story: Story) -> None:
    pack = _pack(story)
    (doc,) = pack.policy.documents
    assert doc.toml is not None and doc.document is not None
    loaded = tomllib.loads(doc.toml)
    assert digest(Policy.from_dict(loaded))[0] == doc.sha256  # the text loads back to its hash
    assert 'approval_valid_for = "7d"  # 7 days' in doc.toml
    assert "approval_timeout_seconds = 86400  # 1 day" in doc.toml
    assert "[stages.production]" in doc.toml and "604800" not in doc.toml
    md, html = render(pack, "md"), render(pack, "html")
    assert (
        f"### Policy `{doc.sha256}`" in md and "```toml\n" in md and '"approval_valid_for": 604800' not in md
    )
    assert 'approval_valid_for = "7d"' in md  # verbatim in its code block, quotes unescaped
    assert '<pre class="policy-toml">' in html and "604800" not in html


def test_policy_toml_round_trips_any_policy_with_durations_in_days_and_hours() -> None:
    from registry.reports.policy_toml import human_duration, policy_toml

    policy = Policy(
        stages={
            "staging": StageRule(gates=["data"]),
            "production": StageRule(approvals=2, approvers=["carol", "dan"], gates=["auc", "fairness"]),
        },
        approval_valid_for="36h",
        approval_timeout_seconds=5400,
        trusted_types=['weird."name"\x7f`'],
        authenticated_approvals=True,
    )
    sha, document = digest(policy)
    text = policy_toml(document)
    assert digest(Policy.from_dict(tomllib.loads(text)))[0] == sha
    assert 'approval_valid_for = "36h"  # 1 day 12 hours' in text
    assert "approval_timeout_seconds = 5400  # 1 hour 30 minutes" in text
    assert text.index("[stages.staging]") < text.index("[stages.production]")
    assert [human_duration(n) for n in (60, 86_400, 90_061)] == ["1 minute", "1 day", "1 day 1 hour and more"]


def test_the_registrys_warnings_about_its_policy_show_in_the_pack(story: Story) -> None:
    class Warned(PublicOnly):
        def policy_info(self) -> Any:
            info = self._reg.policy_info()
            warning = "authenticated_approvals is off: names typed into a form count toward the quorum"
            return SimpleNamespace(document=info.document, sha256=info.sha256, warnings=[warning])

    pack = build_pack(Warned(story.reg), "churn/1")
    assert pack.policy.warnings == [
        "authenticated_approvals is off: names typed into a form count toward the quorum"
    ]
    assert pack.policy.in_force_sha256 == pack.policy.documents[0].sha256
    assert "> **Warning:** authenticated_approvals is off" in render(pack, "md")
    assert '<p class="warning">Warning: authenticated_approvals is off' in render(pack, "html")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (
            "postgresql+psycopg://ops:s3cret@db.example:5432/registry?sslmode=require",
            "postgresql+psycopg://db.example:5432/registry",
        ),
        ("postgresql://ops@db.example/registry", "postgresql://db.example/registry"),
        ("http://ops:s3cret@registry.example:8080/", "http://registry.example:8080"),
        ("https://registry.example/base/?token=gft_x", "https://registry.example/base"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("sqlite:////srv/registry.db", "sqlite:////srv/registry.db"),
    ],
)
def test_the_registry_is_named_without_credentials(url: str, named: str) -> None:
    from registry.reports.naming import safe_url

    assert safe_url(url) == named


def test_a_relative_registry_path_is_named_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    reg = Registry(url="sqlite:///relative.db", artifact_root=str(tmp_path / "a"), policy=Policy())
    try:
        _story(reg, tmp_path)
        header = build_pack(reg, "churn/1").header
    finally:
        reg.close()
    assert header.registry == f"sqlite:///{(tmp_path / 'relative.db').resolve()}"


def test_the_pack_names_its_registry_without_credentials_on_every_backend(story: Story) -> None:
    named = _pack(story).header.registry
    assert "@" not in named and "?" not in named
    if isinstance(story.reg, RemoteRegistry):
        assert named == story.reg.url and named.startswith("http://127.0.0.1:")


def _rewrite(reg: Registry, seq: int, *, reason: str) -> None:
    """Edit an approval's reason in its table and its event, then recompute every later hash and
    the head: what someone with write access to the database could do."""
    with reg.db.engine.begin() as conn:
        payload = conn.execute(
            sa.select(audit_events.c.payload).where(audit_events.c.seq == seq)
        ).scalar_one()
        conn.execute(
            audit_events.update()
            .where(audit_events.c.seq == seq)
            .values(payload={**payload, "reason": reason})
        )
        conn.execute(approvals.update().where(approvals.c.decision == "approve").values(reason=reason))
        rows = conn.execute(sa.select(audit_events).where(audit_events.c.seq >= seq).order_by("seq")).all()
        prev = conn.execute(sa.select(audit_events.c.hash).where(audit_events.c.seq == seq - 1)).scalar_one()
        for r in rows:
            body = chain._body(r.seq, r.at, r.actor, r.db_user, r.action, r.model, r.version, r.payload)
            new = chain.link_hash(prev, body)
            conn.execute(
                audit_events.update().where(audit_events.c.seq == r.seq).values(prev_hash=prev, hash=new)
            )
            prev = new
        conn.execute(audit_head.update().values(hash=prev))


# --- CLI ----------------------------------------------------------------------------------


def _cli(url: str, tmp_path: Path):
    env = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": url,
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GOVFLOW_ACTOR": "alice",
    }

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        if expect == 2:
            assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        return proc

    return run


def _cli_story(url: str, tmp_path: Path) -> Story:
    reg = Registry(url=url, artifact_root=str(tmp_path / "artifacts"), policy=Policy())
    try:
        return _story(reg, tmp_path)
    finally:
        reg.close()


def test_cli_writes_packs_and_keeps_evidence_add(backend_url: str, tmp_path: Path) -> None:
    s = _cli_story(backend_url, tmp_path)
    cli = _cli(backend_url, tmp_path)
    cli("evidence", "add", "churn", "1", "--gate", "latency", "--failed", "--value", "250")
    out = tmp_path / "packs"
    for fmt in ("json", "md", "html"):
        printed = cli(
            "evidence",
            "churn/1",
            "--out",
            str(out),
            "--format",
            fmt,
            "--checkpoint",
            str(s.checkpoint),
            "--pubkey",
            str(s.pubkey),
        ).stdout.strip()
        assert printed == str(out / f"churn-v1-evidence.{fmt}") and Path(printed).is_file()
    data = json.loads((out / "churn-v1-evidence.json").read_text())
    assert [g["gate"] for g in data["gates"]] == ["auc", "fairness", "latency"]
    assert data["audit"]["proof"]["verified"] is True


def test_cli_refusals_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    s = _cli_story(url, tmp_path)
    cli = _cli(url, tmp_path)
    out = tmp_path / "packs"
    assert (
        cli("evidence", "churn@production", "--out", str(out), "--format", "md")
        .stdout.strip()
        .endswith(".md")
    )
    before = sorted(p.name for p in out.iterdir())
    assert "not found" in cli("evidence", "churn/9", "--out", str(out), expect=2).stderr
    assert "version" in cli("evidence", "churn/x", "--out", str(out), expect=2).stderr
    assert "reference" in cli("evidence", "churn", "--out", str(out), expect=2).stderr
    assert "format" in cli("evidence", "churn/1", "--out", str(out), "--format", "pdf", expect=2).stderr
    assert (
        "pubkey"
        in cli("evidence", "churn/1", "--out", str(out), "--checkpoint", str(s.checkpoint), expect=2).stderr
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert "out" in cli("evidence", "churn/1", "--out", str(blocker), expect=2).stderr
    assert "out" in cli("evidence", "churn/1", "--out", str(blocker / "sub"), expect=2).stderr
    assert sorted(p.name for p in out.iterdir()) == before  # nothing half-written


# --- the HTML in a browser ----------------------------------------------------------------

# Text nodes of a hash (its groups between <wbr> marks) that the browser laid out on more than
# one line, i.e. broken inside a group; and how many hashes wrapped at all.
HASH_LAYOUT = """() => {
  const broken = [];
  let wrapped = 0;
  const hashes = document.querySelectorAll('code.hash');
  const lines = (r) => new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size;
  for (const el of hashes) {
    const whole = document.createRange();
    whole.selectNodeContents(el);
    if (lines(whole) > 1) wrapped += 1;
    for (const node of el.childNodes) {
      if (node.nodeType !== Node.TEXT_NODE) continue;
      const r = document.createRange();
      r.selectNodeContents(node);
      if (lines(r) > 1) broken.push(node.textContent);
    }
  }
  return {count: hashes.length, wrapped, broken};
}"""


def _in_chromium(html: Path, check: Callable[[Any], None], screenshot: Path, width: int = 1280) -> None:
    """Open the pack in headless Chromium with every other request refused, run ``check`` on the
    page, take a full-page screenshot; assert nothing but the file was fetched and no dialog opened."""
    url = html.resolve().as_uri()
    seen: list[str] = []
    routed: list[str] = []
    dialogs: list[str] = []
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("request", lambda r: seen.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def block(route: Any) -> None:
            if route.request.url == url:
                route.continue_()  # the pack itself
                return
            routed.append(route.request.url)
            route.abort()

        page.route("**/*", block)
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        check(page)
        page.screenshot(path=str(screenshot), full_page=True)
    assert dialogs == []
    assert routed == [], routed  # nothing but the file itself was asked for
    assert seen == [url], seen
    assert screenshot.stat().st_size > 10_000


def _hashes_break_only_between_groups(page: Any) -> None:
    layout = page.evaluate(HASH_LAYOUT)
    assert layout["count"] > 20 and layout["broken"] == [], layout


def test_html_pack_in_headless_chromium(tmp_path: Path) -> None:
    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"), policy=Policy())
    try:
        s = _story(reg, tmp_path)
        pack = _pack(s)
        html = write_pack(pack, tmp_path / "out", "html")
        promoted = _moves(reg, 1)["promote"][0]
    finally:
        reg.close()

    def check(page: Any) -> None:
        assert page.title() == "Evidence pack: churn v1"
        assert page.locator("h1").inner_text() == "Evidence pack: churn v1"
        for section_id, heading in SECTIONS.items():
            h2 = page.locator(f"section#{section_id} > h2")
            assert h2.is_visible() and h2.inner_text() == heading
        header = page.locator("#header").inner_text()
        assert "verified" in header and pack.header.content_sha256 in header
        assert TRAIN_SHA in page.locator("#lineage").inner_text()
        assert COMMIT in page.locator("#lineage").inner_text()
        gates = page.locator("#gates").inner_text()
        assert "auc" in gates and "fairness" in gates and "0.91" in gates and "0.8" in gates
        decisions = page.locator("#decisions").inner_text()
        assert "carol" in decisions and "bob" in decisions and "reject" in decisions
        assert f"counted at promotion on {when(promoted.at)}" in decisions
        assert page.locator("#standing").inner_text().startswith(f"In production since {when(promoted.at)}")
        assert page.locator("#checkpoint-proof").is_visible()
        assert "verified" in page.locator("#audit").inner_text()
        assert page.locator("#audit-events th").nth(1).inner_text() == "version"
        assert 'approval_valid_for = "7d"' in page.locator("#policy pre.policy-toml").inner_text()
        # The hostile text shows as text and runs nothing.
        assert XSS in page.locator("#model-card .description").inner_text()
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0

    _in_chromium(html, check, tmp_path / "pack.png")


def test_hashes_wrap_between_groups_of_16_on_a_narrow_page(story: Story, tmp_path: Path) -> None:
    html = write_pack(_pack(story), tmp_path / "out", "html")

    def check(page: Any) -> None:
        layout = page.evaluate(HASH_LAYOUT)
        assert layout["wrapped"] > 0, layout  # the page is narrow enough that hashes must wrap
        _hashes_break_only_between_groups(page)
        # The hash still reads and copies whole: <wbr> adds no character.
        assert TRAIN_SHA in page.locator("#lineage").inner_text()

    _in_chromium(html, check, tmp_path / "narrow.png", width=760)


def _cli_over_http(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update(GOVFLOW_REGISTRY_URL=url, GOVFLOW_TOKEN=token)
    proc = subprocess.run(
        [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.returncode, proc.stderr)
    return proc


def test_a_pack_made_over_http_with_a_reader_token_reads_right_in_chromium(
    registry_server: Any, tmp_path: Path
) -> None:
    """The auditor's path: a server, a reader token, `govflow evidence`, a browser."""
    h = registry_server
    roles = {
        "alice": "pipeline",
        "bob": "approver",
        "carol": "approver",
        "dave": "approver",
        "ops": "operator",
    }
    clients = {name: h.client(h.token(role, name=name)) for name, role in roles.items()}
    try:
        _rollback_story(lambda name: clients[name], tmp_path)
    finally:
        for client in clients.values():
            client.close()
    key, pub = keygen(tmp_path / "signer")
    _, where = save_checkpoint(h.registry, key, tmp_path / "checkpoint.txt")  # the operator pins the chain
    reader = h.token("reader", name="rita")
    out = tmp_path / "packs"
    for fmt in ("html", "md", "json"):
        args = (
            "evidence",
            "churn/1",
            "--out",
            str(out),
            "--format",
            fmt,
            "--checkpoint",
            where,
            "--pubkey",
            str(pub),
        )
        assert _cli_over_http(h.url, reader, *args).stdout.strip() == str(out / f"churn-v1-evidence.{fmt}")
    data = json.loads((out / "churn-v1-evidence.json").read_text())
    md = (out / "churn-v1-evidence.md").read_text()
    summary = _restored_summary(h.registry)
    promoted = _moves(h.registry, 1)["promote"][0]
    counted = f"counted at promotion on {when(promoted.at)}"
    assert data["header"]["registry"] == h.url and data["audit"]["proof"]["verified"] is True
    assert data["model_card"]["standing"]["summary"] == summary and summary in md
    assert [d["state_note"] for d in data["decisions"] if d["actor"] == "carol"] == [
        counted
    ] and counted in md
    assert "authenticated_approvals = true" in data["policy"]["documents"][0]["toml"]

    def check(page: Any) -> None:
        header = page.locator("#header").inner_text()
        assert f"Registry\n{h.url}\n" in header and "verified" in header
        assert re.search(r"Content sha256 \(JSON\)\n[0-9a-f]{64}$", header), header  # its own run's digest
        assert page.locator("#standing").inner_text() == summary
        decisions = page.locator("#decisions").inner_text()
        assert counted in decisions and "sent the version back to development on" in decisions
        assert "Note: recorded before the rollback of" in page.locator("#gates").inner_text()
        context = page.locator("#audit-events tr.context")
        assert context.count() == 1 and "version 2 promoted, replacing this version" in context.inner_text()
        assert page.locator("#audit-events th").nth(1).inner_text() == "version"
        assert "verified" in page.locator("#checkpoint-proof + dl").inner_text()
        toml = page.locator("#policy pre.policy-toml").first.inner_text()
        assert 'approval_valid_for = "7d"  # 7 days' in toml and "authenticated_approvals = true" in toml
        _hashes_break_only_between_groups(page)

    shot = tmp_path / "pack-http.png"
    _in_chromium(out / "churn-v1-evidence.html", check, shot)
    if os.environ.get("GOVFLOW_PACK_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["GOVFLOW_PACK_SCREENSHOT"])  # for a human to look at


def test_unknown_version_is_refused(story: Story) -> None:
    with pytest.raises(GovflowError, match="not found"):
        build_pack(story.reg, "churn/7")
