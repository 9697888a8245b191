"""Fuzz the registry API and the CLI with hostile input (hypothesis).

Properties, for every call:
- a refusal is a ``GovflowError`` (never another exception type); an ``InvalidInput`` names
  its field, in ``field`` and in the message;
- a refused call leaves the database exactly as it was (every row of every table, and the
  audit head), and ``verify_audit()`` stays ok;
- input the design says must be refused (illegal names, control or zero-width characters,
  non-int versions, NaN, NUL, non-bool ``passed``…) is refused;
- SQLite and PostgreSQL accept and refuse the same calls;
- the CLI exits 0, or 2 with exactly one stderr line starting ``error:``, never a traceback.

GOVFLOW_FUZZ_EXAMPLES (default 300; ``make fuzz`` uses 10,000) is split among the tests.
Under CI the examples are derandomized, so a failure reproduces; hypothesis prints the
falsifying example either way.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from registry import Policy, Registry
from registry.errors import GovflowError, InvalidInput, PolicyError
from tests.fixtures.backends import create_pg_database, drop_pg_database
from tests.reliability import strategies as s
from tests.reliability.api_calls import Call, Paths, api_calls, known_cases
from tests.reliability.cli import run_cli
from tests.reliability.cli_calls import cli_args, known_command_lines
from tests.reliability.snapshot import seed_registry, snapshot

TOTAL = int(os.environ.get("GOVFLOW_FUZZ_EXAMPLES", "300"))
CI = os.environ.get("CI", "").lower() == "true"
# Failures found locally are replayed first next time; under CI every run is the same one.
EXAMPLES_DB = (
    None if CI else DirectoryBasedExampleDatabase(Path(tempfile.gettempdir()) / "govflow-hypothesis")
)


def fuzz_settings(share: float, minimum: int = 10) -> settings:
    """This test's share of the example budget; derandomized under CI."""
    return settings(
        max_examples=max(minimum, int(TOTAL * share)),
        deadline=None,
        derandomize=CI,
        database=EXAMPLES_DB,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


@contextmanager
def counted(label: str) -> Iterator[list[int]]:
    """Count the examples a test ran (shrinking included) and print it, pass or fail."""
    box, start = [0], time.monotonic()
    try:
        yield box
    finally:
        print(f"fuzz {label}: {box[0]} examples in {time.monotonic() - start:.1f}s")


def _open(url: str, root: Path) -> Registry:
    return Registry(url=url, artifact_root=str(root), policy=Policy())


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def paths(fuzz_home: Path) -> Paths:
    return Paths(fuzz_home / "files")


@pytest.fixture(scope="module")
def sqlite_registry(fuzz_home: Path, paths: Paths) -> Iterator[Registry]:
    reg = _open(f"sqlite:///{fuzz_home / 'api.db'}", fuzz_home / "api-artifacts")
    seed_registry(reg, paths)
    yield reg
    reg.close()


def check_refusal(call: Call, exc: BaseException) -> None:
    """A refusal is a GovflowError naming its field; anything else is a defect."""
    if not isinstance(exc, GovflowError):
        raise AssertionError(f"{call!r} raised {type(exc).__name__}, not a GovflowError: {exc}") from exc
    assert str(exc).strip(), f"{call!r}: empty error message"
    if isinstance(exc, InvalidInput):
        assert exc.field, f"{call!r}: InvalidInput without a field: {exc}"
        assert exc.field.split(".")[0] in str(exc), f"{call!r}: field {exc.field!r} not in message {exc}"


def apply(reg: Registry, call: Call) -> str:
    """Run one call; check the properties; return its outcome (ok, or the refusal's class)."""
    before = snapshot(reg)
    try:
        getattr(reg, call.method)(*call.args, **call.kwargs)
    except Exception as exc:  # noqa: BLE001 - the point is to see which type escapes
        check_refusal(call, exc)
        assert snapshot(reg) == before, f"refused {call!r} ({exc}) changed the database"
        outcome = type(exc).__name__
    else:
        assert not call.refuse, f"{call!r} was accepted, but must be refused for: {', '.join(call.refuse)}"
        outcome = "ok"
    report = reg.verify_audit()
    assert report.ok, f"after {call!r}: verify_audit at seq {report.first_bad_seq}: {report.problem}"
    return outcome


def test_fuzz_api_sqlite(sqlite_registry: Registry, paths: Paths) -> None:
    @fuzz_settings(0.45)
    @given(calls=st.lists(api_calls(paths), min_size=1, max_size=3))
    def run(calls: list[Call]) -> None:
        box[0] += 1
        for call in calls:
            note(repr(call))
            apply(sqlite_registry, call)

    for case in known_cases(paths):
        run = example(calls=[case])(run)
    with counted("api on SQLite") as box:
        run()


@pytest.fixture(scope="module")
def twin_registries(pg_server: str, fuzz_home: Path, paths: Paths) -> Iterator[tuple[Registry, Registry]]:
    """The same seeded registry on SQLite and on PostgreSQL."""
    pg_url = create_pg_database(pg_server)
    lite = _open(f"sqlite:///{fuzz_home / 'twin.db'}", fuzz_home / "twin-lite")
    pg = _open(pg_url, fuzz_home / "twin-pg")
    try:
        seed_registry(lite, paths)
        seed_registry(pg, paths)
        yield lite, pg
    finally:
        lite.close()
        pg.close()
        drop_pg_database(pg_server, pg_url)


def _stored(reg: Registry, name: str) -> dict:
    """What the newest version of ``name`` holds, as the API returns it."""
    newest = reg.versions(name)[0]
    full = reg.get_version(name, newest.version)
    return full.model_dump(mode="json", include={"version", "params", "metrics", "tags", "lineage"})


def test_fuzz_backends_agree(twin_registries: tuple[Registry, Registry], paths: Paths) -> None:
    lite, pg = twin_registries

    @fuzz_settings(0.1, minimum=30)
    @given(calls=st.lists(api_calls(paths), min_size=1, max_size=2))
    def run(calls: list[Call]) -> None:
        box[0] += 1
        for call in calls:
            note(repr(call))
            on_lite, on_pg = apply(lite, call), apply(pg, call)
            assert on_lite == on_pg, f"{call!r}: SQLite says {on_lite}, PostgreSQL says {on_pg}"
            if on_lite == "ok" and call.method == "register":
                stored = [_stored(reg, call.args[0]) for reg in (lite, pg)]
                assert stored[0] == stored[1], f"{call!r}: SQLite stored {stored[0]}, PostgreSQL {stored[1]}"

    for case in known_cases(paths):
        run = example(calls=[case])(run)
    with counted("backends agree") as box:
        run()


# --- the command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_registry(fuzz_home: Path, paths: Paths) -> Iterator[Registry]:
    """A seeded SQLite registry that the in-process CLI reaches through GOVFLOW_* variables."""
    url, root = f"sqlite:///{fuzz_home / 'cli.db'}", fuzz_home / "cli-artifacts"
    reg = _open(url, root)
    seed_registry(reg, paths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVFLOW_REGISTRY_URL", url)
        mp.setenv("GOVFLOW_ARTIFACT_ROOT", str(root))
        mp.setenv("GOVFLOW_ACTOR", "alice")
        mp.setenv("COLUMNS", "200")
        yield reg
    reg.close()


def check_cli(reg: Registry, args: list[str]) -> int:
    """Run the CLI once; a refusal is one ``error:`` line, exit 2, and nothing written."""
    before = snapshot(reg)
    try:
        result = run_cli(*args)
    except Exception as exc:  # noqa: BLE001 - an escaping exception is the defect we look for
        raise AssertionError(f"govflow {args!r}: {type(exc).__name__} escaped main(): {exc}") from exc
    assert "Traceback" not in result.err, f"govflow {args!r} printed a traceback:\n{result.err}"
    assert result.code in (0, 2), f"govflow {args!r} exited {result.code}: {result.err}"
    if result.code == 2:
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"govflow {args!r} stderr: {result.err!r}"
        assert snapshot(reg) == before, f"refused govflow {args!r} changed the database: {result.err}"
    assert reg.verify_audit().ok
    return result.code


def test_fuzz_cli(cli_registry: Registry, paths: Paths) -> None:
    @fuzz_settings(0.35)
    @given(args=cli_args(paths))
    def run(args: list[str]) -> None:
        box[0] += 1
        note(f"govflow {args!r}")
        code = check_cli(cli_registry, args)
        named = args[1] if args[0] in ("register", "transition", "approve", "reject", "rollback") else None
        if code == 0 and named is not None:
            assert s.is_legal_name(named), f"govflow {args!r} accepted the name {named!r}"
        if code == 0 and "--actor" in args:
            actor = args[args.index("--actor") + 1]
            assert not s.must_refuse_actor(actor), f"govflow {args!r} accepted the actor {actor!r}"

    for line in known_command_lines(paths):
        run = example(args=line)(run)
    with counted("cli") as box:
        run()


# --- policy files ----------------------------------------------------------------------------


def test_fuzz_policy_files(fuzz_home: Path) -> None:
    folder = fuzz_home / "policies"
    folder.mkdir(exist_ok=True)

    @fuzz_settings(0.1)
    @given(spec=s.policy_files)
    def run(spec: tuple[str, bytes]) -> None:
        box[0] += 1
        suffix, data = spec
        path = folder / f"policy.{suffix}" if suffix else folder / "policy"
        path.write_bytes(data)
        note(f"{path.name}: {data!r}")
        try:
            Policy.load(path)
        except Exception as exc:  # noqa: BLE001 - only PolicyError may come out
            assert isinstance(exc, PolicyError), f"{path.name} {data!r}: {type(exc).__name__}: {exc}"
            assert exc.field, f"{path.name} {data!r}: PolicyError without a field"
        url = f"sqlite:///{folder / 'policy.db'}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GOVFLOW_REGISTRY_URL", url)
            mp.setenv("GOVFLOW_ARTIFACT_ROOT", str(folder / "artifacts"))
            mp.setenv("GOVFLOW_POLICY", str(path))
            result = run_cli("models")
        assert "Traceback" not in result.err, result.err
        assert result.code in (0, 2), (result.code, result.err)
        if result.code == 2:
            lines = result.err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{data!r}: stderr {result.err!r}"

    with counted("policy files") as box:
        run()
