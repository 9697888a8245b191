"""Code lineage: the commit of the code that is running, from its git checkout or the image's env.

The record describes the running code (the folder holding the ``flows`` package), never the
config file's folder: a config kept outside the repository must not lose the commit. A
container image has no checkout, so its build sets ``GOVFLOW_CODE_COMMIT`` (and optionally
``GOVFLOW_CODE_REPO``). With neither, the record is empty.
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from pathlib import Path

from registry.entities import CodeRef
from registry.errors import InvalidInput

# The folder holding the flows package: the root of the code that is running.
CODE_ROOT = Path(__file__).resolve().parent.parent
COMMIT_ENV = "GOVFLOW_CODE_COMMIT"
REPO_ENV = "GOVFLOW_CODE_REPO"
_HEX_COMMIT = re.compile(r"[0-9a-f]{7,64}")


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _from_git(folder: Path, own_code: bool) -> CodeRef | None:
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return None
    # Installed into a venv that sits inside some other checkout: that commit is not ours.
    if own_code and _git(folder, "ls-files", "--error-unmatch", "flows/lineage.py") is None:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    repo = _git(folder, "config", "--get", "remote.origin.url") or _git(
        folder, "rev-parse", "--show-toplevel"
    )
    return CodeRef(repo=repo, commit=commit, dirty=bool(status))


def _from_env() -> CodeRef:
    """The commit an image was built from, as its build recorded it; refuses a value that is not one."""
    commit = os.environ.get(COMMIT_ENV, "").strip()
    if not commit:
        return CodeRef()
    if not _HEX_COMMIT.fullmatch(commit.lower()):
        raise InvalidInput(
            f"{COMMIT_ENV}: {commit[:80]!r} is not a git commit (7 to 64 hex digits)", field=COMMIT_ENV
        )
    repo = os.environ.get(REPO_ENV, "").strip() or None
    if repo is not None and any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in repo):
        raise InvalidInput(f"{REPO_ENV}: contains control or line-break characters", field=REPO_ENV)
    return CodeRef(repo=repo, commit=commit.lower(), dirty=False)


def code_ref(folder: str | Path | None = None) -> CodeRef:
    """The running code's commit, dirty flag and origin; ``folder`` overrides where to look (tests).

    Without a git checkout it uses ``GOVFLOW_CODE_COMMIT``/``GOVFLOW_CODE_REPO``; with neither
    it returns an empty record. Refuses (``InvalidInput``) a GOVFLOW_CODE_COMMIT that is not a
    hex commit.
    """
    own_code = folder is None
    found = _from_git(CODE_ROOT if folder is None else Path(folder), own_code)
    return found if found is not None else _from_env()
