"""The CLI behaves like a native tool: a version, completion, one-line usage errors on every
command, an audit log that reads at 80 columns, and start-up that loads only what a command needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import typer.main
from typer._click import Command

import govflow.cli as cli
from flows.config import PipelineConfig
from registry import Policy, Registry

HEAVY = ("prefect", "pandas", "sklearn", "great_expectations", "fastapi", "boto3", "uvicorn", "scipy")
LONG_ACTION = "custom.drift_rollback_skipped"  # the longest kind of action the flows write


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GOVFLOW_", "_GOVFLOW"))},
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{home / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(home / "art"),
        "GOVFLOW_ACTOR": "alice",
        **extra,
    }


def _govflow(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govflow", *args],
        env=_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite registry with ``churn`` v1 in production and a long custom audit action."""
    root = tmp_path_factory.mktemp("native")
    (root / "m.bin").write_bytes(b"weights")
    reg = Registry(url=f"sqlite:///{root / 'registry.db'}", artifact_root=str(root / "art"), policy=Policy())
    try:
        reg.register("churn", root / "m.bin", actor="alice")
        reg.transition("churn", 1, "staging", actor="alice")
        reg.approve("churn", 1, actor="bob", reason="looks right")
        reg.transition("churn", 1, "production", actor="bob")
        reg.record(LONG_ACTION, model="churn", version=1, actor="monitor-bot")
    finally:
        reg.close()
    return root


# --- version and completion -----------------------------------------------------------------


def test_version_prints_the_package_version(home: Path) -> None:
    proc = _govflow(home, "--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"govflow {installed_version('govflow')}\n", "")


def test_completion_script_and_completions(home: Path) -> None:
    script = _govflow(home, "--show-completion", "bash")
    assert script.returncode == 0 and "_GOVFLOW_COMPLETE" in script.stdout, script.stderr
    # What the shell function does on <TAB>: the command names come back, sub-apps too.
    words = _govflow(home, _GOVFLOW_COMPLETE="complete_bash", COMP_WORDS="govflow sh", COMP_CWORD="1")
    assert words.stdout.split() == ["show"], words
    sub = _govflow(home, _GOVFLOW_COMPLETE="complete_bash", COMP_WORDS="govflow audit ", COMP_CWORD="2")
    assert {"log", "verify", "checkpoint"} <= set(sub.stdout.split()), sub


# --- usage errors: one line, exit 2, on every command ----------------------------------------


def _tree() -> Command:
    """The whole command tree (typer vendors click: groups are commands with ``commands``)."""
    cli._register_commands()
    return typer.main.get_command(cli.app)


def _leaves(group: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    out = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            out += _leaves(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


def _groups(group: Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            out += _groups(cmd, (*path, name))
    return out


def _usage_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """Run ``govflow ARGS`` in this process; it must end as one ``error:`` line and exit 2."""
    monkeypatch.setattr(sys, "argv", ["govflow", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert exit_.value.code == 2, (args, exit_.value.code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert out == "" and "╭" not in err and "Traceback" not in err, (args, out, err)
    return lines[0]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Should a command get past its parser, it meets an empty registry in a temporary folder.
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", str(tmp_path / "art"))
    monkeypatch.chdir(tmp_path)


def test_every_command_refuses_an_unknown_option_in_one_line(
    isolated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    leaves = _leaves(_tree())
    assert len(leaves) >= 30  # the walk really covers the tree
    for path, _ in leaves:
        line = _usage_error(capsys, monkeypatch, *path, "--no-such-option")
        where = " ".join(("govflow", *path))
        # Click may add "(Possible options: …)" in between; the line still names the command.
        assert line.startswith(f"error: {where}: No such option: --no-such-option"), line
        assert line.endswith(f"(see '{where} --help')"), line


def test_every_command_names_its_missing_argument_or_option(
    isolated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = 0
    for path, cmd in _leaves(_tree()):
        if not any(p.required for p in cmd.params):
            continue  # runs with no input at all; nothing to be missing
        line = _usage_error(capsys, monkeypatch, *path)
        assert "Missing argument" in line or "Missing option" in line, line
        checked += 1
    assert checked >= 20


def test_every_number_option_refuses_text(
    isolated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = []
    for path, cmd in _leaves(_tree()):
        for param in cmd.params:
            descriptor = getattr(param, "type_descriptor", None)
            if (
                getattr(param, "is_flag", True)
                or descriptor is None
                or descriptor.annotation not in (int, float)
            ):
                continue
            # A string where a number belongs.
            line = _usage_error(capsys, monkeypatch, *path, param.opts[0], "x1-not-a-number")
            assert f"Invalid value for '{param.opts[0]}'" in line, line
            checked.append((path, param.opts[0]))
    assert len(checked) >= 5, checked


def test_a_bad_choice_is_one_line_naming_the_choices(
    isolated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = _usage_error(capsys, monkeypatch, "transition", "churn", "1", "live")
    assert "stage" in line and "production" in line, line
    line = _usage_error(capsys, monkeypatch, "evidence", "churn/1", "--out", "x", "--format", "docx")
    assert "format" in line, line


def test_every_group_refuses_an_unknown_command(
    isolated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in _groups(_tree()):
        line = _usage_error(capsys, monkeypatch, *path, "no-such-command")
        # `evidence X` reads X as a pack request for version X (the shorthand): it asks for --out.
        expected = "Missing option '--out'" if path == ("evidence",) else "No such command 'no-such-command'"
        assert expected in line, (path, line)


def test_extra_arguments_and_bad_version_numbers_are_one_line(
    isolated: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "unexpected extra argument" in _usage_error(capsys, monkeypatch, "show", "a@b", "c")
    assert "Invalid value" in _usage_error(capsys, monkeypatch, "audit", "log", "--limit", "ten")
    assert "version" in _usage_error(capsys, monkeypatch, "transition", "churn", "1_0", "staging")


def test_real_entry_point_prints_one_line_for_unknown_commands(home: Path) -> None:
    for args in (["no-such-command"], ["audit", "no-such-command"], ["show"], ["--no-such-option"]):
        proc = _govflow(home, *args)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc)
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), (args, proc.stderr)


# --- the audit log at 80 columns --------------------------------------------------------------


def test_audit_log_fits_80_columns_without_cutting_actions(home: Path) -> None:
    proc = _govflow(home, "audit", "log", COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in proc.stdout
    for action in ("version.registered", "version.transitioned", "version.approved", LONG_ACTION):
        assert any(action in line.split() for line in lines), (action, proc.stdout)
    assert "churn/1" in proc.stdout and "monitor-bot" in proc.stdout


def test_audit_log_on_a_wide_terminal_keeps_the_hash(home: Path) -> None:
    wide = _govflow(home, "audit", "log", COLUMNS="160")
    events = json.loads(_govflow(home, "audit", "log", "--json").stdout)
    assert wide.returncode == 0 and events
    assert all(e["hash"][:12] in wide.stdout for e in events)
    assert max(len(line) for line in wide.stdout.splitlines()) <= 160


# --- start-up loads only what the command needs -----------------------------------------------

_PROBE = """
import json, sys
heavy = {heavy!r}
sys.argv = ["govflow", *{args!r}]
import govflow.cli as cli
{before}
at_import = [m for m in heavy if m in sys.modules]
try:
    cli.main()
except SystemExit as exc:
    code = exc.code
print("PROBE " + json.dumps({{"code": code, "at_import": at_import,
    "loaded": [m for m in heavy if m in sys.modules],
    "flows_cli": "govflow.cli.flows" in sys.modules}}))
"""


def _probe(home: Path, *args: str, before: str = "") -> dict:
    code = _PROBE.format(heavy=HEAVY, args=list(args), before=before)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(home), capture_output=True, text=True, timeout=60
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")), None)
    assert line, proc.stdout + proc.stderr
    return json.loads(line[len("PROBE ") :])


def test_show_loads_no_heavy_library(home: Path) -> None:
    probe = _probe(home, "show", "churn@production")
    assert probe["code"] == 0
    assert probe["at_import"] == [] and probe["loaded"] == []
    assert probe["flows_cli"] is False  # only the command's own module was imported


def test_help_lists_every_command_without_loading_heavy_libraries(home: Path) -> None:
    probe = _probe(home, "--help")
    assert probe["code"] == 0 and probe["loaded"] == [] and probe["flows_cli"] is True


def test_a_command_missing_from_the_map_still_runs(home: Path) -> None:
    # A command someone adds without a map entry costs start-up time, never correctness.
    probe = _probe(home, "show", "churn@production", before='del cli.COMMAND_MODULES["show"]')
    assert probe["code"] == 0 and probe["flows_cli"] is True


def test_command_map_names_each_commands_modules() -> None:
    def modules(cmd: Command) -> set[str]:
        found = {cmd.callback.__module__} if cmd.callback is not None else set()
        for sub in getattr(cmd, "commands", {}).values():
            found |= modules(sub)
        return found - {"govflow.cli"}

    tree = _tree()
    assert set(tree.commands) == set(cli.COMMAND_MODULES)
    for name, cmd in tree.commands.items():
        assert modules(cmd) <= set(cli.COMMAND_MODULES[name]), name


# --- config schema ----------------------------------------------------------------------------


def test_config_schema_prints_the_model_schema(home: Path) -> None:
    proc = _govflow(home, "config", "schema")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == PipelineConfig.model_json_schema()
    assert "model_name" in json.loads(proc.stdout)["required"]
