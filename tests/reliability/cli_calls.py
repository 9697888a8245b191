"""Random ``govflow`` command lines: real commands with hostile arguments."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.reliability import strategies as s
from tests.reliability.api_calls import SEED_MODEL, Paths

# argv cannot carry NUL; undecodable bytes it can, as lone surrogates ("\udcff").
text = s.identifiers(allow_nul=False)
versions = st.one_of(
    st.sampled_from(["1", "2", "0", "-1", "1.0", "abc", "", " 1", "\uff11", "\u00b2", "1_0", str(10**30)]),
    st.integers(-5, 2**32).map(str),
)
numbers = st.sampled_from(["0.5", "nan", "inf", "-inf", "-0", "1e999", "abc", "", "1e308", "0x10"])
times = st.sampled_from(
    ["2026-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "nope", "2026-13", ""]
)
durations = st.sampled_from(["0s", "1h", "-1s", "nan", "1e999d", "x"])
reasons = st.sampled_from(["fine", "", " ", "line\nbreak", "x" * 3000])
stages = s.stages.filter(lambda t: "\x00" not in t)


def pairs(option: str, keys: st.SearchStrategy[str], values: st.SearchStrategy[str]) -> st.SearchStrategy:
    """Zero to two ``OPTION KEY=VALUE`` pairs, some malformed."""
    pair = st.tuples(keys, values).map(lambda kv: [option, f"{kv[0]}={kv[1]}"])
    junk = st.sampled_from([[option, "novalue"], [option, "=1"], [option, "k=\udcff"]])
    return st.lists(st.one_of(pair, junk), max_size=2).map(lambda xs: [a for x in xs for a in x])


@st.composite
def cli_args(draw: st.DrawFn, paths: Paths) -> list[str]:
    """One command line, as the list of arguments after ``govflow``."""
    name = draw(st.one_of(st.just(SEED_MODEL), text))
    version = draw(versions)
    reason = ["--reason", draw(reasons)]
    actor = draw(st.one_of(st.just([]), text.map(lambda a: ["--actor", a])))
    kind = draw(
        st.sampled_from(
            ["register", "show", "transition", "approve", "reject", "rollback"]
            + ["alias", "evidence", "audit", "production-at", "gc", "versions"]
        )
    )
    if kind == "register":
        artifact = draw(
            st.one_of(st.builds(lambda: str(paths.fresh_file())), st.sampled_from(paths.hostile()))
        )
        roles = st.sampled_from(["train", "eval", "bogus"])
        extra = draw(pairs("--metric", st.sampled_from(["auc", "", " "]), numbers))
        extra += draw(pairs("--param", text, st.one_of(numbers, text)))
        extra += draw(pairs("--tag", text, text))
        extra += draw(pairs("--dataset", roles, st.sampled_from(paths.hostile())))
        return ["register", name, "--artifact", artifact, *extra, *actor]
    if kind == "show":
        ref = st.tuples(st.just(name), st.sampled_from(["/", "@"]), versions).map("".join)
        return ["show", draw(st.one_of(ref, text))]
    if kind == "transition":
        return ["transition", name, version, draw(stages), *reason, *actor]
    if kind in ("approve", "reject"):
        return [kind, name, version, *reason, *actor]
    if kind == "rollback":
        return ["rollback", name, *reason, *actor]
    if kind == "alias":
        alias = draw(st.one_of(st.sampled_from(["champion", "production"]), text))
        if draw(st.booleans()):
            return ["alias", "set", name, alias, version, *actor]
        return ["alias", "rm", name, alias, *actor]
    if kind == "evidence":
        gate = ["--gate", draw(st.one_of(st.just("accuracy"), text))]
        outcome = draw(st.sampled_from(["--passed", "--failed"]))
        return ["evidence", "add", name, version, *gate, outcome, "--value", draw(numbers), *actor]
    if kind == "audit":
        return ["audit", "log", "--limit", version]
    if kind == "production-at":
        return ["production-at", name, draw(times)]
    if kind == "gc":
        return ["artifacts", "gc", "--dry-run", "--older-than", draw(durations)]
    return ["versions", name]


def known_command_lines(paths: Paths) -> list[list[str]]:
    """Command lines that broke the CLI once: always tried first."""
    model = str(paths.fresh_file())
    return [
        ["artifacts", "gc", "--dry-run", "--older-than", "1e999d"],
        ["register", SEED_MODEL, "--artifact", model, "--tag", "k=\udcff"],
        ["register", SEED_MODEL, "--artifact", model, "--param", "k=\udcff"],
        ["register", "churn\n", "--artifact", model],
        ["register", SEED_MODEL, "--artifact", model, "--dataset", f"train={paths.fifo}"],
        ["register", SEED_MODEL, "--artifact", "/proc/self/mem"],
        ["transition", SEED_MODEL, "\uff11", "archived"],
        ["show", f"{SEED_MODEL}/{10**30}"],
        ["production-at", SEED_MODEL, "9999-12-31T23:59:59-23:59"],
        ["approve", SEED_MODEL, "2", "--actor", "bob\u200b"],
    ]
