"""Random calls of the public Registry API, each knowing whether it must be refused.

A ``Call`` names a Registry method and its arguments; ``refuse`` says why the registry must
refuse it (an illegal name, a non-int version, NaN, NUL…), or is None when the call may
succeed or fail on governance grounds. Files referred to by path live in ``Paths``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.reliability import strategies as s

SEED_MODEL = "churn"
RESERVED = ("version.", "alias.", "evidence.", "policy.", "model.rolled_back")


@dataclass
class Call:
    """One API call and, when it must be refused, why."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    refuse: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.method}({', '.join(map(repr, self.args))}{', ' if kw else ''}{kw})"


class Paths:
    """Files of every kind an artifact or dataset path can name."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.fifo = folder / "fifo"
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        (folder / "dir").mkdir(exist_ok=True)
        (folder / "empty.bin").write_bytes(b"")
        (folder / "data.csv").write_text("a,b\n1,2\n")
        (folder / "line\nbreak.bin").write_bytes(b"odd name")
        link = folder / "link-to-dir"
        if not link.exists():
            link.symlink_to(folder / "dir")
        self.counter = 0

    def fresh_file(self) -> Path:
        """A new small model file, so a register stores a new blob."""
        self.counter += 1
        path = self.folder / f"model-{self.counter}.bin"
        path.write_bytes(os.urandom(32))
        return path

    def hostile(self) -> list[str]:
        return [
            str(self.folder / "missing.bin"),
            str(self.folder / "dir"),
            str(self.folder / "link-to-dir"),
            str(self.fifo),
            "/proc/self/mem",
            "",
            str(self.folder / "empty.bin"),
            str(self.folder / "line\nbreak.bin"),
        ]


def is_regular(path: str) -> bool:
    return bool(path) and os.path.isfile(path) and not path.startswith("/proc/")


names = st.one_of(st.just(SEED_MODEL), st.just(SEED_MODEL), s.identifiers())
actors = st.one_of(st.none(), st.sampled_from(["alice", "bob", "carol", "Bob"]), s.identifiers())


def _common(name: Any, actor: Any) -> list[str]:
    why = []
    if not s.is_legal_name(name):
        why.append("name")
    if s.must_refuse_actor(actor):
        why.append("actor")
    return why


def _version(version: Any) -> list[str]:
    return [] if s.is_legal_version(version) else ["version"]


def _reason(reason: Any, required: bool = False) -> list[str]:
    if reason is None:
        return ["reason"] if required else []
    if not isinstance(reason, str) or "\x00" in reason or (required and not reason.strip()):
        return ["reason"]
    return []


def _metric_ok(value: Any) -> bool:
    if isinstance(value, str):
        return False  # a metric is a number, not text that reads as one
    return s.is_finite_number(value)


def _metrics(metrics: Any) -> list[str]:
    if not isinstance(metrics, dict):
        return ["metrics"]
    if any(not isinstance(k, str) or not k or "\x00" in k or not _metric_ok(v) for k, v in metrics.items()):
        return ["metrics"]
    return []


def _mapping(label: str, value: Any) -> list[str]:
    if not isinstance(value, dict) or s.holds_nul_or_nonfinite(value):
        return [label]
    if any(not isinstance(k, str) or not k for k in value):
        return [label]
    return []


_plain = st.text(st.characters(blacklist_characters="\x00"), max_size=8)
_valid = {
    "name": st.just(SEED_MODEL),
    "actor": st.sampled_from([None, "alice", "bob"]),
    "metrics": st.dictionaries(st.sampled_from(["auc", "f1"]), st.floats(-1e6, 1e6), max_size=2),
    "params": st.dictionaries(
        _plain.filter(bool), st.one_of(_plain, st.integers(), st.booleans()), max_size=2
    ),
    "tags": st.dictionaries(_plain.filter(bool), _plain, max_size=2),
    "uri": st.just("s3://bucket/train.csv"),
    "commit": st.just("abc1234"),
    "run": st.just(None),
    "rows": st.just(100),
}


@st.composite
def register_calls(draw: st.DrawFn, paths: Paths) -> Call:
    # Mostly one hostile field among valid ones, so each bad value reaches as deep as it can.
    hostile = draw(
        st.sampled_from([None, "name", "actor", "metrics", "params", "tags", "uri", "commit", "all"])
    )

    def pick(label: str, bad: st.SearchStrategy) -> Any:
        return draw(bad if hostile in (label, "all") else _valid[label])

    name, actor = pick("name", names), pick("actor", actors)
    metrics, params, tags = (
        pick("metrics", s.metric_maps),
        pick("params", s.mappings),
        pick("tags", s.tag_maps),
    )
    commit = pick(
        "commit", st.one_of(st.none(), st.sampled_from(["a\x00b", "\u200b" * 3, "x" * 100, "\udcff"]))
    )
    uri = pick("uri", st.one_of(st.sampled_from(["data\x00.csv", "", "a\udcffb"]), st.text(max_size=10)))
    run = pick("run", st.one_of(st.none(), st.sampled_from(["r1", "x" * 100, "a\x00", "\udcff", "y" * 300])))
    rows = pick("rows", st.sampled_from([None, 0, 2**31, 2**63, 10**20]))
    path = draw(st.one_of(st.just("fresh"), st.just("fresh"), st.sampled_from(paths.hostile())))
    artifact = str(paths.fresh_file()) if path == "fresh" else path
    # A plain mapping: the registry validates it, so a bad value is refused by the call itself.
    lineage = {
        "datasets": [{"role": "train", "uri": uri, "rows": rows}],
        "code": {"repo": "git@x:y", "commit": commit},
        "run": {"flow_run_id": run, "flow_name": run},
    }
    refuse = _common(name, actor) + _metrics(metrics) + _mapping("params", params) + _mapping("tags", tags)
    if not is_regular(artifact):
        refuse.append("artifact")
    if s.holds_nul_or_nonfinite([uri, commit, run]):
        refuse.append("lineage")
    kwargs = {"actor": actor, "metrics": metrics, "params": params, "tags": tags, "lineage": lineage}
    return Call("register", (name, artifact), kwargs, refuse)


@st.composite
def transition_calls(draw: st.DrawFn) -> Call:
    name, version, actor = draw(names), draw(s.versions), draw(actors)
    stage, reason = draw(s.stages), draw(s.reasons)
    refuse = _common(name, actor) + _version(version) + _reason(reason)
    if stage.lower() not in ("development", "staging", "production", "archived"):
        refuse.append("stage")
    return Call("transition", (name, version, stage), {"actor": actor, "reason": reason}, refuse)


@st.composite
def decision_calls(draw: st.DrawFn) -> Call:
    method = draw(st.sampled_from(["approve", "reject"]))
    name, version, actor, reason = draw(names), draw(s.versions), draw(actors), draw(s.reasons)
    refuse = _common(name, actor) + _version(version) + _reason(reason, required=method == "reject")
    return Call(method, (name, version), {"actor": actor, "reason": reason}, refuse)


@st.composite
def rollback_calls(draw: st.DrawFn) -> Call:
    name, actor, reason = draw(names), draw(actors), draw(s.reasons)
    expected = draw(st.one_of(st.none(), s.versions))
    refuse = _common(name, actor) + _reason(reason, required=True)
    if expected is not None:
        refuse += _version(expected)
    return Call("rollback", (name,), {"actor": actor, "reason": reason, "expected_version": expected}, refuse)


@st.composite
def alias_calls(draw: st.DrawFn) -> Call:
    name, actor = draw(names), draw(actors)
    alias = draw(st.one_of(st.sampled_from(["champion", "candidate", "production"]), s.identifiers()))
    refuse = _common(name, actor) + ([] if s.is_legal_name(alias) else ["alias"])
    if draw(st.booleans()):
        version = draw(s.versions)
        return Call("set_alias", (name, alias, version), {"actor": actor}, refuse + _version(version))
    return Call("remove_alias", (name, alias), {"actor": actor}, refuse)


@st.composite
def evidence_calls(draw: st.DrawFn) -> Call:
    name, version, actor = draw(names), draw(s.versions), draw(actors)
    gate = draw(st.one_of(st.sampled_from(["accuracy", "fairness"]), s.identifiers()))
    passed = draw(st.sampled_from([True, False, "no", "yes", 0, 1, None, "false"]))
    value, threshold = draw(st.one_of(st.none(), s.scalars)), draw(st.one_of(st.none(), s.scalars))
    details = draw(st.one_of(st.none(), s.mappings))
    refuse = _common(name, actor) + _version(version)
    if s.must_refuse_actor(gate) or gate is None:
        refuse.append("gate")
    if not isinstance(passed, bool):
        refuse.append("passed")
    for label, number in (("value", value), ("threshold", threshold)):
        if number is not None and not s.is_finite_number(number):
            refuse.append(label)
    if details is not None:
        refuse += _mapping("details", details)
    kwargs = {"gate": gate, "passed": passed, "value": value, "threshold": threshold, "details": details}
    return Call("add_evidence", (name, version), {**kwargs, "actor": actor}, refuse)


@st.composite
def record_calls(draw: st.DrawFn) -> Call:
    action = draw(
        st.one_of(
            st.sampled_from(["custom.note", "custom.deploy.done", "version.registered", "model.rolled_back"]),
            st.sampled_from(["alias.set", "evidence.added", "policy.set", "custom.", "", "x" * 65]),
            s.identifiers(),
        )
    )
    model = draw(st.one_of(st.none(), names))
    version = draw(st.one_of(st.none(), s.versions))
    payload = draw(st.one_of(st.none(), s.mappings))
    actor = draw(actors)
    refuse = ["actor"] if s.must_refuse_actor(actor) else []
    if not isinstance(action, str) or action.startswith(RESERVED):
        refuse.append("action")
    if model is not None and not s.is_legal_name(model):
        refuse.append("model")
    if version is not None:
        refuse += _version(version)
    if payload is not None:
        refuse += _mapping("payload", payload)
    kwargs = {"model": model, "version": version, "payload": payload, "actor": actor}
    return Call("record", (action,), kwargs, refuse)


@st.composite
def read_calls(draw: st.DrawFn) -> Call:
    method = draw(st.sampled_from(["get", "resolve", "get_version", "versions", "history"]))
    if method in ("get", "resolve"):
        ref = draw(
            st.one_of(
                st.sampled_from(
                    ["churn/1", "churn@champion", "churn@production", "churn/01", "churn/\u00b2"]
                ),
                st.tuples(
                    names, st.sampled_from(["/", "@"]), st.one_of(s.versions.map(str), s.identifiers())
                ).map("".join),
                st.text(max_size=12),
                st.sampled_from([f"churn/{10**30}", "churn/", "@", "/1", "churn/1\n", "churn/-1", None, 5]),
            )
        )
        bad = not isinstance(ref, str) or s.has_bad_char(ref)
        return Call(method, (ref,), {}, ["reference"] if bad else [])
    name = draw(names)
    if method == "get_version":
        version = draw(s.versions)
        return Call(method, (name, version), {}, _common(name, None) + _version(version))
    return Call(method, (name,), {}, _common(name, None))


def api_calls(paths: Paths) -> st.SearchStrategy[Call]:
    """Any one of the calls above."""
    return st.one_of(
        register_calls(paths),
        transition_calls(),
        decision_calls(),
        rollback_calls(),
        alias_calls(),
        evidence_calls(),
        record_calls(),
        read_calls(),
    )


def known_cases(paths: Paths) -> list[Call]:
    """Inputs that broke the registry once, or that the design names: always tried first."""
    lineage = {"datasets": [{"role": "train", "uri": "s3://b/k.csv"}]}

    def register(refuse: str, name: str = SEED_MODEL, **kwargs: Any) -> Call:
        kwargs.setdefault("lineage", lineage)
        return Call("register", (name, str(paths.fresh_file())), {"actor": "alice", **kwargs}, [refuse])

    return [
        register("name", name="churn\n"),
        register("name", name="ch\u200burn"),
        register("actor", actor="alice\u2060"),
        register("actor", actor="\u0430lice"),  # a Cyrillic а: mixes scripts
        register("metrics", metrics={"auc": 10**400}),
        register("metrics", metrics={"auc": math.nan}),
        register("params", params={"k": math.nan}),
        register("params", params={"k": "a\x00b"}),
        register("params", params={"": 1}),
        register("tags", tags={"k": "a\udcffb"}),
        register("lineage", lineage={"code": {"commit": "a\x00b"}}),
        register("lineage", lineage={"datasets": [{"role": "train", "uri": "u", "rows": 10**20}]}),
        register("lineage", lineage={"code": {"commit": "x" * 100}}),
        register("params", params={"k": 10**30}),
        Call("approve", (SEED_MODEL, "1"), {"actor": "bob"}, ["version"]),
        Call("approve", (SEED_MODEL, True), {"actor": "bob"}, ["version"]),
        Call("transition", (SEED_MODEL, 1.0, "archived"), {"actor": "alice"}, ["version"]),
        Call("get_version", (SEED_MODEL, 2**63), {}, ["version"]),
        Call("get", (f"{SEED_MODEL}/{10**30}",), {}, []),
        Call("add_evidence", (SEED_MODEL, 1), {"gate": "g", "passed": "no", "actor": "bob"}, ["passed"]),
        Call("add_evidence", (SEED_MODEL, 1), {"gate": "g", "passed": True, "value": 10**400}, ["value"]),
        Call("record", ("version.registered",), {"model": SEED_MODEL, "actor": "bob"}, ["action"]),
    ]
