"""A working folder for the Airflow demo and tests: pipeline configs, data and an embedded registry.

Three configs from the example one, each its own model (so its own three DAGs): ``main`` (the
example's gates), ``strict`` (a ROC AUC no model here reaches, so its gates fail) and
``timeout`` (an approval that waits only a few seconds).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from flows.config import PipelineConfig
from flows.demo_data import write_example
from registry.registry import Registry

EXAMPLE = Path(__file__).resolve().parents[2] / "flows" / "examples" / "credit-risk.yaml"
MODELS = {"main": "credit-risk", "strict": "credit-risk-strict", "timeout": "credit-risk-timeout"}


@dataclass(frozen=True)
class Story:
    folder: Path
    configs: dict[str, Path]

    @property
    def registry_url(self) -> str:
        return f"sqlite:///{self.folder / 'registry.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.folder / "artifacts"

    @property
    def drifted(self) -> Path:
        return self.folder / "data" / "drifted.csv"

    def model(self, key: str) -> str:
        return MODELS[key]

    def env(self) -> dict[str, str]:
        """What Airflow's task processes need: the configs to build DAGs from, cards, scratch."""
        return {
            "GOVFLOW_AIRFLOW_CONFIGS": ":".join(str(p) for p in self.configs.values()),
            "GOVFLOW_AIRFLOW_MONITOR_SCHEDULE": "none",
            "GOVFLOW_CARDS": str(self.folder / "cards"),
            "GOVFLOW_AIRFLOW_SCRATCH": str(self.folder / "scratch"),
            "GOVFLOW_ACTOR": "airflow-pipeline",
        }

    def drift_arrives(self) -> Path:
        """Put a drifted day into the monitor's source folder, as the newest file it reads."""
        target = self.folder / "data" / "recent" / "9999-12-31.csv"
        shutil.copyfile(self.drifted, target)
        return target

    def registry(self) -> Registry:
        return Registry(url=self.registry_url, artifact_root=str(self.artifact_root))


def prepare(folder: Path, *, approval_timeout: int = 8) -> Story:
    """Write the configs and their data under ``folder``; the registry is created on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    configs: dict[str, Path] = {}
    for key, model in MODELS.items():
        doc = dict(base)
        doc["model_name"] = model
        doc["registry_url"] = f"sqlite:///{folder / 'registry.db'}"
        doc["artifact_root"] = str(folder / "artifacts")
        doc["deploy"] = {"kind": "manifest", "path": f"releases/{model}.json"}
        if key == "strict":
            doc["gates"] = {**base["gates"], "metrics": {"roc_auc": {"min": 0.99}}}
        if key == "timeout":
            doc["approval_timeout"] = approval_timeout
        path = folder / f"{model}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        configs[key] = path
    # Written once here: parallel task processes must not race to write the example data.
    write_example(PipelineConfig.load(configs["main"]))
    return Story(folder=folder, configs=configs)
