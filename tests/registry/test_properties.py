"""Stateful property test: random programs over the public Registry API keep the audit whole.

A hypothesis state machine registers, transitions, approves, rejects, rolls back, sets and
removes aliases, adds evidence and records custom events, with valid and invalid arguments
(versions as "1", True, 1.0, huge ints; actors with look-alike or invisible characters). After
every step:
- ``verify_audit()`` is ok (the hash chain, and the state tables against the log);
- at most one version per model is in production, and the production alias points at it;
and for every call:
- a refusal is a ``GovflowError`` and leaves the database unchanged;
- a non-int version is refused; the registrant never approves their own version, however
  the name is spelled (NFKC and case folding, design invariant 9).

GOVFLOW_PROPERTY_EXAMPLES sets the number of programs (default 50, about 15 steps each).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

from registry import Policy, Registry
from registry.errors import GovflowError
from tests.reliability.snapshot import snapshot

EXAMPLES = int(os.environ.get("GOVFLOW_PROPERTY_EXAMPLES", "50"))
# Shrinking a failing program takes minutes (each step re-reads the whole database), so it is
# off unless asked for; the failing program is printed in full either way.
SHRINK = os.environ.get("GOVFLOW_PROPERTY_SHRINK", "") == "1"
CI = os.environ.get("CI", "").lower() == "true"

names = st.sampled_from(["churn", "churn", "fraud", "Churn", "churn\n", "ch\u200burn"])
actors = st.sampled_from(["alice", "bob", "carol", "Bob", " bob ", "\uff42ob", "bob\n", "b\u200bob", "dave"])
versions = st.one_of(st.integers(1, 4), st.sampled_from(["1", True, 1.0, 0, -1, 2**31, 2**63, None]))
stages = st.sampled_from(["staging", "production", "development", "archived", "prod"])
reasons = st.sampled_from(["ok", "drift", "", None, "a\x00b"])


_TEMPLATE: list[Path] = []


def _empty_database() -> Path:
    """An empty registry database, made once and copied per program (schema creation is slow)."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="govflow-props-template-")) / "registry.db"
        Registry(
            url=f"sqlite:///{path}", artifact_root=str(path.parent / "artifacts"), policy=Policy()
        ).close()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def fold(actor: str) -> str:
    """How the registry compares actors: NFKC, then case folding."""
    return unicodedata.normalize("NFKC", actor.strip()).casefold()


class RegistryProgram(RuleBasedStateMachine):
    """One random program against a fresh SQLite registry."""

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="govflow-props-"))
        shutil.copy(_empty_database(), self.home / "registry.db")
        self.reg = Registry(
            url=f"sqlite:///{self.home / 'registry.db'}",
            artifact_root=str(self.home / "artifacts"),
            policy=Policy(),
        )
        self.files = 0
        self.registrant: dict[tuple[str, int], str] = {}

    def teardown(self) -> None:
        self.reg.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one API call; a refusal must be a GovflowError that wrote nothing."""
        before = snapshot(self.reg)
        try:
            result = fn(*args, **kwargs)
        except GovflowError as exc:
            assert snapshot(self.reg) == before, f"refused {what} ({exc}) changed the database"
            event(f"{what.split('(')[0]}: {type(exc).__name__}")
            return None
        event(f"{what.split('(')[0]}: ok" + (f" -> {args[2]}" if what.startswith("transition") else ""))
        return result

    def check_version_accepted(self, what: str, version: Any) -> None:
        assert type(version) is int, f"{what} accepted the version {version!r}"

    registered = Bundle("registered")

    def _register(self, name: str, actor: str) -> Any:
        self.files += 1
        path = self.home / f"model-{self.files}.bin"
        path.write_bytes(os.urandom(24))
        v = self.call(f"register({name!r}, actor={actor!r})", self.reg.register, name, path, actor=actor)
        if v is None:
            return multiple()
        self.registrant[(v.model, v.version)] = fold(v.registered_by)
        return (v.model, v.version)

    # Well-formed steps, so that programs get through staging, approval, production and rollback.

    @initialize(target=registered)
    def first_version(self) -> Any:
        return self._register("churn", "alice")

    @rule(
        target=registered, name=st.sampled_from(["churn", "fraud"]), actor=st.sampled_from(["alice", "dave"])
    )
    def register_ok(self, name: str, actor: str) -> Any:
        return self._register(name, actor)

    @rule(
        target=registered,
        name=st.sampled_from(["churn", "fraud"]),
        approver=st.sampled_from(["bob", "carol"]),
    )
    def release(self, name: str, approver: str) -> Any:
        """A whole release: register, staging, approval, production (so rollbacks have targets)."""
        ref = self._register(name, "alice")
        if isinstance(ref, tuple):
            self._advance(ref, approver, 3)
        return ref

    @rule(
        ref=registered,
        approver=st.sampled_from(["bob", "carol", "Bob", "\uff42ob", "ALICE", "\uff41lice"]),
        steps=st.integers(1, 3),
    )
    def advance(self, ref: tuple[str, int], approver: str, steps: int) -> None:
        self._advance(ref, approver, steps)

    def _advance(self, ref: tuple[str, int], approver: str, steps: int) -> None:
        """Up to ``steps`` steps of the happy path: staging, an approval, production."""
        for _ in range(steps):
            v = self.reg.get_version(*ref)
            if v.stage.value == "development":
                self.call(
                    f"transition({ref!r}, 'staging')", self.reg.transition, *ref, "staging", actor="alice"
                )
            elif v.stage.value == "staging" and not any(
                a.current and a.decision == "approve" for a in v.approvals
            ):
                self._approve(ref, approver)
            elif v.stage.value == "staging":
                self.call(
                    f"transition({ref!r}, 'production')",
                    self.reg.transition,
                    *ref,
                    "production",
                    actor="alice",
                )

    @rule(ref=registered, stage=stages, actor=st.sampled_from(["alice", "carol"]))
    def move(self, ref: tuple[str, int], stage: str, actor: str) -> None:
        self.call(
            f"transition({ref!r}, {stage!r})", self.reg.transition, *ref, stage, actor=actor, reason="step"
        )

    @rule(
        ref=registered,
        actor=st.sampled_from(["bob", "carol", "Bob", "\uff42ob", "alice", "ALICE", "\uff41lice"]),
    )
    def approve_ok(self, ref: tuple[str, int], actor: str) -> None:
        self._approve(ref, actor)

    def _approve(self, ref: tuple[str, int], actor: str) -> None:
        approval = self.call(f"approve({ref!r}, actor={actor!r})", self.reg.approve, *ref, actor=actor)
        if approval is not None:
            assert self.registrant[ref] != fold(actor), f"{actor!r} approved {ref}, which they registered"

    @rule(name=st.sampled_from(["churn", "fraud"]))
    def rollback_ok(self, name: str) -> None:
        self.call(f"rollback({name!r})", self.reg.rollback, name, actor="carol", reason="drift")

    # Anything goes: hostile names, actors, versions, reasons.

    @rule(target=registered, name=names, actor=actors)
    def register(self, name: str, actor: str) -> Any:
        return self._register(name, actor)

    @rule(name=names, version=versions, stage=stages, actor=actors, reason=reasons)
    def transition(self, name: str, version: Any, stage: str, actor: str, reason: Any) -> None:
        what = f"transition({name!r}, {version!r}, {stage!r}, actor={actor!r}, reason={reason!r})"
        if self.call(what, self.reg.transition, name, version, stage, actor=actor, reason=reason):
            self.check_version_accepted(what, version)

    @rule(name=names, version=versions, actor=actors, reason=reasons)
    def approve(self, name: str, version: Any, actor: str, reason: Any) -> None:
        what = f"approve({name!r}, {version!r}, actor={actor!r})"
        approval = self.call(what, self.reg.approve, name, version, actor=actor, reason=reason)
        if approval is not None:
            self.check_version_accepted(what, version)
            registrant = self.registrant.get((name, version))
            assert registrant != fold(approval.actor), f"{what}: the registrant approved their own version"

    @rule(name=names, version=versions, actor=actors, reason=reasons)
    def reject(self, name: str, version: Any, actor: str, reason: Any) -> None:
        what = f"reject({name!r}, {version!r}, actor={actor!r}, reason={reason!r})"
        if self.call(what, self.reg.reject, name, version, actor=actor, reason=reason):
            self.check_version_accepted(what, version)

    @rule(name=names, actor=actors, reason=reasons)
    def rollback(self, name: str, actor: str, reason: Any) -> None:
        self.call(f"rollback({name!r}, actor={actor!r})", self.reg.rollback, name, actor=actor, reason=reason)

    @rule(
        name=names, alias=st.sampled_from(["champion", "production", "Champion", "c\u2060"]), version=versions
    )
    def set_alias(self, name: str, alias: str, version: Any) -> None:
        what = f"set_alias({name!r}, {alias!r}, {version!r})"
        before = snapshot(self.reg)
        self.call(what, self.reg.set_alias, name, alias, version, actor="alice")
        if snapshot(self.reg) != before:
            self.check_version_accepted(what, version)

    @rule(name=names, alias=st.sampled_from(["champion", "production", "nope"]))
    def remove_alias(self, name: str, alias: str) -> None:
        self.call(f"remove_alias({name!r}, {alias!r})", self.reg.remove_alias, name, alias, actor="alice")

    @rule(
        name=names,
        version=versions,
        gate=st.sampled_from(["accuracy", "fairness", "", "g\n"]),
        passed=st.sampled_from([True, False, "no", 1, None]),
        value=st.sampled_from([None, 0.9, float("nan"), float("inf"), 10**400, True]),
    )
    def add_evidence(self, name: str, version: Any, gate: str, passed: Any, value: Any) -> None:
        what = f"add_evidence({name!r}, {version!r}, gate={gate!r}, passed={passed!r}, value={value!r})"
        ev = self.call(
            what, self.reg.add_evidence, name, version, gate=gate, passed=passed, value=value, actor="carol"
        )
        if ev is not None:
            self.check_version_accepted(what, version)
            assert isinstance(passed, bool), f"{what} accepted passed={passed!r}"

    @rule(
        action=st.sampled_from(
            ["custom.deploy", "custom.note", "version.registered", "model.rolled_back", "alias.set"]
        ),
        name=st.one_of(st.none(), names),
        payload=st.sampled_from([{}, {"k": 1}, {"k": float("nan")}, {"k": "a\x00"}, {1: "x"}]),
    )
    def record(self, action: str, name: Any, payload: dict) -> None:
        what = f"record({action!r}, model={name!r}, payload={payload!r})"
        event = self.call(what, self.reg.record, action, model=name, payload=payload, actor="ops")
        if event is not None:
            assert action.startswith("custom."), f"{what}: an event in the registry's namespace was written"

    @invariant()
    def audit_verifies(self) -> None:
        report = self.reg.verify_audit()
        assert report.ok, f"verify_audit: seq {report.first_bad_seq}: {report.problem}"

    @invariant()
    def one_production_version(self) -> None:
        for model in self.reg.models():
            live = [v for v in self.reg.versions(model.name) if v.stage.value == "production"]
            assert len(live) <= 1, f"{model.name}: {len(live)} versions in production"
            assert model.production_version == (live[0].version if live else None)
            alias = [v.version for v in self.reg.versions(model.name) if "production" in v.aliases]
            assert alias == [v.version for v in live], f"{model.name}: production alias {alias}, stage {live}"


RegistryProgram.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=15,
    deadline=None,
    derandomize=CI,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
    phases=[p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)],
)
test_registry_programs = RegistryProgram.TestCase
