"""The pipeline config: what to train, on which data, judged by which gates, deployed where."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from checks.data import DataContract
from deployments.targets import ManifestTargetSpec, TargetSpec
from registry.entities import check_name
from registry.errors import InvalidInput, first_invalid


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitRule(_Strict):
    """How one file is split into train and eval rows."""

    eval_fraction: float = Field(default=0.25, gt=0, lt=1, description="Share of rows held out for eval.")
    seed: int = Field(default=0, description="Shuffle seed, so the split is reproducible.")


class DataSpec(_Strict):
    """Where the data is: CSV or Parquet paths, or one file and a split rule."""

    train: str | None = Field(default=None, description="Training data file.")
    eval: str | None = Field(default=None, description="Evaluation data file.")
    reference: str | None = Field(default=None, description="Reference data for drift; default train.")
    path: str | None = Field(default=None, description="One file to split into train and eval.")
    split: SplitRule = Field(default_factory=SplitRule, description="Split rule used with `path`.")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.path is None and (self.train is None or self.eval is None):
            raise ValueError("give `path`, or both `train` and `eval`")
        if self.path is not None and (self.train or self.eval):
            raise ValueError("give either `path` or `train`/`eval`, not both")
        return self


class EstimatorSpec(_Strict):
    """The estimator: an import path and its params; the default is a scikit-learn pipeline."""

    import_path: str = Field(
        default="sklearn.linear_model.LogisticRegression",
        description="Class of the final estimator, e.g. sklearn.ensemble.RandomForestClassifier.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Constructor params.")
    preprocess: bool = Field(
        default=True, description="Wrap in impute/scale/one-hot preprocessing for mixed tabular data."
    )


class MetricThreshold(_Strict):
    """A bound on one metric."""

    min: float | None = Field(default=None, description="Lowest acceptable value.")
    max: float | None = Field(default=None, description="Highest acceptable value.")


class FairnessSpec(_Strict):
    """Fairness gate thresholds (fairlearn definitions)."""

    max_dp_diff: float = Field(default=0.1, ge=0, description="Max demographic parity difference.")
    max_eo_diff: float = Field(default=0.1, ge=0, description="Max equalized odds difference.")
    min_group_size: int = Field(default=30, ge=1, description="Smaller groups are reported and excluded.")


class ChampionSpec(_Strict):
    """Champion vs challenger: the challenger must reach the champion's score minus a margin."""

    metric: str = Field(default="roc_auc", description="Metric both models are scored on.")
    margin: float = Field(default=0.01, ge=0, description="Tolerated drop against the champion.")


class GatesSpec(_Strict):
    """Gate thresholds for a retrain."""

    metrics: dict[str, MetricThreshold] = Field(
        default_factory=lambda: {"roc_auc": MetricThreshold(min=0.7)}, description="Metric gates."
    )
    fairness: FairnessSpec | None = Field(
        default_factory=FairnessSpec, description="Fairness gate; null disables it."
    )
    champion: ChampionSpec | None = Field(
        default_factory=ChampionSpec, description="Champion gate; null disables it."
    )


class PipelineConfig(_Strict):
    """Everything a retrain or monitor run needs."""

    model_name: str = Field(description="Registered model name.")
    data: DataSpec = Field(description="Data sources.")
    target: str = Field(description="Target column (binary or numeric).")
    task: Literal["classification", "regression"] = Field(
        default="classification", description="What the target is."
    )
    features: list[str] | None = Field(default=None, description="Feature columns; default all others.")
    sensitive_features: list[str] = Field(
        default_factory=list, description="Columns for the fairness gate (not used as features)."
    )
    contract: DataContract | None = Field(default=None, description="Data contract for the data gate.")
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec, description="What to train.")
    gates: GatesSpec = Field(default_factory=GatesSpec, description="Gate thresholds.")
    policy: str | None = Field(default=None, description="Policy file; default GOVFLOW_POLICY.")
    approval_timeout: int | None = Field(
        default=None, gt=0, description="Seconds to wait for approval; default from the policy."
    )
    approval_poll: int = Field(default=5, ge=1, description="Seconds between checks while paused.")
    deploy: TargetSpec = Field(
        default_factory=lambda: ManifestTargetSpec(kind="manifest", path=".govflow/releases/release.json"),
        description="Where an approved version is deployed.",
    )
    registry_url: str | None = Field(default=None, description="Registry URL; default from env.")
    artifact_root: str | None = Field(default=None, description="Artifact root; default from env.")
    base_dir: str = Field(default=".", description="Relative paths resolve against this folder.")

    @model_validator(mode="after")
    def _names(self) -> PipelineConfig:
        check_name(self.model_name, "model_name")
        if self.target in self.sensitive_features:
            raise ValueError("the target cannot be a sensitive feature")
        if isinstance(self.deploy, ManifestTargetSpec) and "://" not in self.deploy.path:
            resolved = self.resolve(self.deploy.path)
            self.deploy = self.deploy.model_copy(update={"path": str(resolved)})
        return self

    def resolve(self, path: str | None) -> Path | None:
        """A data path resolved against ``base_dir``."""
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        """Load a YAML config; relative paths in it resolve against the file's folder.

        Refuses an unreadable file or an invalid config, naming the field.
        """
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise InvalidInput(f"config {p}: cannot read: {exc.strerror or exc}", field="config") from exc
        except yaml.YAMLError as exc:
            raise InvalidInput(f"config {p}: not valid YAML: {exc}", field="config") from exc
        if not isinstance(data, dict):
            raise InvalidInput(f"config {p}: expected a mapping at the top", field="config")
        data.setdefault("base_dir", str(p.resolve().parent))
        return cls.parse(data, source=str(p))

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "config") -> PipelineConfig:
        """Validate a config mapping, naming the first bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise first_invalid(exc, source, "config") from None
