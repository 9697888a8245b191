"""Code lineage from git (commit, dirty flag, remote); absent git gives an empty record."""

from __future__ import annotations

import subprocess
from pathlib import Path

from registry.entities import CodeRef


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_ref(folder: str | Path = ".") -> CodeRef:
    """The commit checked out in ``folder``, whether the work tree is dirty, and its origin."""
    path = Path(folder)
    commit = _git(path, "rev-parse", "HEAD")
    if commit is None:
        return CodeRef()
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    repo = _git(path, "config", "--get", "remote.origin.url") or _git(path, "rev-parse", "--show-toplevel")
    return CodeRef(repo=repo, commit=commit, dirty=bool(status))
