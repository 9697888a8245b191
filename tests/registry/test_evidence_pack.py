"""Evidence packs: content of the JSON and Markdown, the checkpoint proof, the CLI, and the HTML
in a real headless Chromium (sections visible, nothing injected, no network)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import Policy, Registry
from registry import audit as chain
from registry.checkpoint import keygen, save_checkpoint, write_checkpoint
from registry.db.tables import approvals, audit_events, audit_head
from registry.errors import GovflowError, IntegrityError, InvalidInput
from registry.reports import build_pack, render, verify_segment, write_pack
from registry.reports.proof import ChainLink

CHROMIUM = "/usr/bin/chromium"
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


def _pack(s: Story, **kw):
    return build_pack(s.reg, "churn/1", checkpoint=s.checkpoint, pubkey=s.pubkey, **kw)


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


def _chromium() -> None:
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: the browser test must run)", pytrace=False)
        pytest.skip(msg + "; set CI=true to make this a failure")


def test_html_pack_in_headless_chromium(tmp_path: Path) -> None:
    _chromium()
    from playwright.sync_api import sync_playwright

    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"), policy=Policy())
    try:
        s = _story(reg, tmp_path)
        html = write_pack(_pack(s), tmp_path / "out", "html")
    finally:
        reg.close()
    url = html.resolve().as_uri()
    seen: list[str] = []
    routed: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: seen.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            def block(route) -> None:
                if route.request.url == url:
                    route.continue_()  # the pack itself
                    return
                routed.append(route.request.url)
                route.abort()

            page.route("**/*", block)
            page.goto(url, wait_until="load")
            page.wait_for_load_state("networkidle")

            assert page.title() == "Evidence pack: churn v1"
            assert page.locator("h1").inner_text() == "Evidence pack: churn v1"
            for section_id, heading in SECTIONS.items():
                h2 = page.locator(f"section#{section_id} > h2")
                assert h2.is_visible() and h2.inner_text() == heading
            header = page.locator("#header").inner_text()
            assert "verified" in header and _pack_sha(html) in header
            assert TRAIN_SHA in page.locator("#lineage").inner_text()
            assert COMMIT in page.locator("#lineage").inner_text()
            gates = page.locator("#gates").inner_text()
            assert "auc" in gates and "fairness" in gates and "0.91" in gates and "0.8" in gates
            decisions = page.locator("#decisions").inner_text()
            assert "carol" in decisions and "bob" in decisions and "reject" in decisions
            assert page.locator("#checkpoint-proof").is_visible()
            assert "verified" in page.locator("#audit").inner_text()
            # The hostile text shows as text and runs nothing.
            assert XSS in page.locator("#model-card .description").inner_text()
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.locator("script").count() == 0 and page.locator("img").count() == 0
            page.screenshot(path=str(tmp_path / "pack.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []
    assert routed == [], routed  # nothing but the file itself was asked for
    assert seen == [url], seen
    assert (tmp_path / "pack.png").stat().st_size > 10_000


def _pack_sha(html: Path) -> str:
    text = html.read_text()
    marker = 'Content sha256 (JSON)</dt><dd class="mono">'
    return text[text.index(marker) + len(marker) :][:64]


def test_unknown_version_is_refused(story: Story) -> None:
    with pytest.raises(GovflowError, match="not found"):
        build_pack(story.reg, "churn/7")
