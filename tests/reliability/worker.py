"""Crash-matrix worker: drives one model through its lifecycle forever, journaling every step.

``python worker.py URL ARTIFACT_ROOT JOURNAL SEED``. The test kills it with SIGKILL at a
random moment and then checks that the registry survived. The next step is always derived
from the registry's state, so a restarted worker carries on where the killed one stopped.

The journal is JSON lines, each fsync'ed before the step it announces starts, so the parent
knows which operation was in flight at the kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

from registry import Policy, Registry, Stage

MODEL = "crash"
REGISTRANT, APPROVER, OPERATOR = "alice", "bob", "carol"
OPS = ("register", "stage", "approve", "promote", "rollback")
# Above the store's 1 MiB small-file threshold, so uploads take the streaming, fsync'ed path.
MIN_SIZE, MAX_SIZE = 1_500_000, 3_000_000


class Journal:
    """Append-only JSON lines, each on disk before the worker moves on."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **entry: object) -> None:
        os.write(self.fd, (json.dumps(entry) + "\n").encode())
        os.fsync(self.fd)


def read_journal(path: Path) -> list[dict]:
    """The complete lines of a journal (a line cut by the kill is ignored)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def next_step(reg: Registry) -> tuple[str, int]:
    """(operation, version) to do next, from the registry's current state."""
    if not any(m.name == MODEL for m in reg.models()):
        return "register", 1
    latest = reg.versions(MODEL)[0]  # newest first
    n = latest.version
    if latest.stage == Stage.DEVELOPMENT:
        return "stage", n
    if latest.stage == Stage.STAGING:
        full = reg.get_version(MODEL, n)
        approved = any(a.current and a.actor == APPROVER and a.decision == "approve" for a in full.approvals)
        return ("promote" if approved else "approve"), n
    if latest.stage == Stage.PRODUCTION and n % 2 == 0:
        return "rollback", n  # restores n-1, which was in production just before
    return "register", n + 1


def fresh_artifact(rng: random.Random, scratch: Path, n: int) -> tuple[Path, str]:
    """A new model file of a few MB; unique bytes, so each register uploads a new blob."""
    data = rng.randbytes(rng.randrange(MIN_SIZE, MAX_SIZE))
    path = scratch / f"model-{n}.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def run(url: str, root: str, journal_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    scratch = journal_path.parent / f"{journal_path.stem}-scratch"
    scratch.mkdir(exist_ok=True)
    journal = Journal(journal_path)
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    journal.write(event="ready", pid=os.getpid())
    while True:
        op, n = next_step(reg)
        sha256 = None
        if op == "register":
            artifact, sha256 = fresh_artifact(rng, scratch, n)
        journal.write(event="start", op=op, version=n, sha256=sha256)
        began = time.perf_counter()
        if op == "register":
            reg.register(MODEL, artifact, actor=REGISTRANT, metrics={"auc": rng.random()}, params={"n": n})
            artifact.unlink()
        elif op == "stage":
            reg.transition(MODEL, n, "staging", actor=REGISTRANT, reason="candidate")
        elif op == "approve":
            reg.approve(MODEL, n, actor=APPROVER, reason="looks good")
        elif op == "promote":
            reg.transition(MODEL, n, "production", actor=REGISTRANT, reason="approved")
        else:
            reg.rollback(MODEL, actor=OPERATOR, reason="drill", expected_version=n)
        journal.write(event="done", op=op, version=n, seconds=time.perf_counter() - began)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
