"""A GOVFLOW_* setting left as an unrendered prefect.yaml template is refused, never a fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from registry import Registry
from registry.config import env
from registry.errors import InvalidInput


@pytest.mark.parametrize(
    "name", ["GOVFLOW_REGISTRY_URL", "GOVFLOW_ARTIFACT_ROOT", "GOVFLOW_POLICY", "GOVFLOW_TOKEN_FILE"]
)
def test_an_unrendered_template_is_refused_naming_the_variable(monkeypatch, name) -> None:
    monkeypatch.setenv(name, "{{ $" + name + " }}")
    with pytest.raises(InvalidInput, match=f"{name}: .* never filled in"):
        env(name)


def test_empty_and_unset_mean_the_default(monkeypatch) -> None:
    monkeypatch.setenv("GOVFLOW_POLICY", "")
    assert env("GOVFLOW_POLICY") is None
    monkeypatch.delenv("GOVFLOW_POLICY")
    assert env("GOVFLOW_POLICY") is None
    monkeypatch.setenv("GOVFLOW_POLICY", "policies/strict.yaml")  # braces elsewhere are fine
    assert env("GOVFLOW_POLICY") == "policies/strict.yaml"


def test_the_registry_does_not_fall_back_to_the_default_database(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", "{{ $GOVFLOW_REGISTRY_URL }}")
    with pytest.raises(InvalidInput, match="GOVFLOW_REGISTRY_URL"):
        Registry()
    assert not (tmp_path / ".govflow").exists()  # no default SQLite registry was created


def test_the_cli_says_so_in_one_line(tmp_path) -> None:
    env_vars = dict(os.environ, GOVFLOW_REGISTRY_URL="{{ $GOVFLOW_REGISTRY_URL }}")
    out = subprocess.run(
        [sys.executable, "-m", "govflow", "models"], cwd=tmp_path, env=env_vars, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "GOVFLOW_REGISTRY_URL" in out.stderr and "Traceback" not in out.stderr
