"""Code lineage names the running code's commit, wherever the config lives; an image uses its env."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.lineage import code_ref
from registry.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def no_checkout(tmp_path: Path, monkeypatch) -> Path:
    """A folder git cannot place in any repository (as in a container image)."""
    folder = tmp_path / "image"
    folder.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("GOVFLOW_CODE_COMMIT", raising=False)
    monkeypatch.delenv("GOVFLOW_CODE_REPO", raising=False)
    return folder


def test_config_outside_the_repository_still_records_the_running_commit(tmp_path: Path) -> None:
    # A fresh interpreter whose working folder (and config) is outside the checkout.
    config_dir = tmp_path / "elsewhere"
    config_dir.mkdir()
    code = "from flows.lineage import code_ref; r = code_ref(); print(r.commit, r.repo)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=config_dir,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "GIT_CEILING_DIRECTORIES": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    commit, repo = out.stdout.split()
    assert commit == head.strip()
    assert repo != "None"


def test_the_config_folder_is_not_what_is_read(no_checkout: Path, monkeypatch) -> None:
    # Running from a folder with no checkout changes nothing: the code's own repository counts.
    monkeypatch.chdir(no_checkout)
    assert code_ref().commit is not None
    assert code_ref(no_checkout).commit is None


def test_no_git_uses_the_image_commit(no_checkout: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVFLOW_CODE_COMMIT", COMMIT.upper())
    monkeypatch.setenv("GOVFLOW_CODE_REPO", "https://git.example.com/risk/govflow.git")
    ref = code_ref(no_checkout)
    assert ref.commit == COMMIT
    assert ref.repo == "https://git.example.com/risk/govflow.git"
    assert ref.dirty is False


def test_no_git_without_repo_variable_records_commit_only(no_checkout: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVFLOW_CODE_COMMIT", COMMIT[:12])
    ref = code_ref(no_checkout)
    assert (ref.commit, ref.repo) == (COMMIT[:12], None)


def test_no_git_and_no_variable_gives_an_empty_record(no_checkout: Path) -> None:
    ref = code_ref(no_checkout)
    assert (ref.repo, ref.commit, ref.dirty) == (None, None, False)


@pytest.mark.parametrize(
    "value",
    ["main", "v1.2.3", "0123456789abcdefg", "01234", "0123456789abcdef\n; rm -rf /", "１２３４５６７８９"],
)
def test_a_commit_variable_that_is_not_a_hex_commit_is_refused(no_checkout: Path, monkeypatch, value) -> None:
    monkeypatch.setenv("GOVFLOW_CODE_COMMIT", value)
    with pytest.raises(InvalidInput) as err:
        code_ref(no_checkout)
    assert err.value.field == "GOVFLOW_CODE_COMMIT"
    assert "\n" not in str(err.value) and "GOVFLOW_CODE_COMMIT" in str(err.value)


def test_a_repo_variable_with_a_line_break_is_refused(no_checkout: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVFLOW_CODE_COMMIT", COMMIT)
    monkeypatch.setenv("GOVFLOW_CODE_REPO", "https://example.com/a\u2028forged: yes")
    with pytest.raises(InvalidInput, match="GOVFLOW_CODE_REPO"):
        code_ref(no_checkout)


def test_a_checkout_wins_over_the_variable(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    (repo / "a.txt").write_text("one\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    monkeypatch.setenv("GOVFLOW_CODE_COMMIT", COMMIT)
    head = subprocess.run([*git[:3], "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    ref = code_ref(repo)
    assert ref.commit == head and ref.dirty is False
    (repo / "a.txt").write_text("two\n")
    assert code_ref(repo).dirty is True
