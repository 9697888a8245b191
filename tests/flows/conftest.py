"""A small pipeline (generated data, example config) on a fresh SQLite registry per test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from flows.demo_data import write_demo_data

EXAMPLE = Path(__file__).resolve().parents[2] / "flows" / "examples" / "credit-risk.yaml"
PIPELINE_ACTOR = "ml-pipeline"


@dataclass
class Pipeline:
    folder: Path
    base: Path
    later: Path
    drifted: Path
    stable: Path
    url: str
    artifacts: str

    def registry(self):
        from registry import Policy, Registry

        return Registry(url=self.url, artifact_root=self.artifacts, policy=Policy())


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict[str, Path]:
    return write_demo_data(tmp_path_factory.mktemp("data"), rows=1200)


@pytest.fixture
def pipeline(prefect_api: str, demo_data, tmp_path: Path, monkeypatch) -> Pipeline:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    artifacts = str(tmp_path / "artifacts")
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", url)
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", artifacts)
    monkeypatch.setenv("GOVFLOW_ACTOR", PIPELINE_ACTOR)
    monkeypatch.setenv("GOVFLOW_CARDS", str(tmp_path / "cards"))
    base = yaml.safe_load(EXAMPLE.read_text())
    base["approval_poll"] = 1
    base["deploy"] = {"kind": "manifest", "path": str(tmp_path / "releases" / "release.json")}
    base["contract"]["min_rows"] = 100
    paths = {}
    for period in ("base", "later"):
        cfg = dict(
            base, data={"train": str(demo_data[f"{period}_train"]), "eval": str(demo_data[f"{period}_eval"])}
        )
        paths[period] = tmp_path / f"{period}.yaml"
        paths[period].write_text(yaml.safe_dump(cfg))
    return Pipeline(
        tmp_path, paths["base"], paths["later"], demo_data["drifted"], demo_data["stable"], url, artifacts
    )


def with_config(path: Path, **changes) -> Path:
    """A copy of a pipeline config with top-level keys changed."""
    cfg = yaml.safe_load(path.read_text())
    cfg.update(changes)
    out = path.with_name(path.stem + "-changed.yaml")
    out.write_text(yaml.safe_dump(cfg))
    return out
