"""The pipeline config: what to train, on which data, judged by which gates, deployed where."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from checks.data import DataContract
from deployments.targets import ManifestTargetSpec, TargetSpec
from registry.entities import check_name
from registry.errors import InvalidInput, first_invalid
from registry.policy import _DURATION, _UNITS  # the policy's duration grammar (7d, 12h, 30m, seconds)

GLOB_CHARS = frozenset("*?[")
BOOL_HINT = "an unquoted Yes/No/on/off/true/false in YAML is a boolean; quote it ('No')"


def _invalid(message: str) -> PydanticCustomError:
    # A custom error keeps the message as written (no "Value error, " prefix) under the field's name.
    return PydanticCustomError("invalid", message)


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
    example: Literal["credit-risk"] | None = Field(
        default=None,
        description="A built-in synthetic data set written to the (local) data paths when they are missing.",
    )

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
    """Fairness gate thresholds (fairlearn definitions); an omitted or null limit is not checked."""

    max_dp_diff: float | None = Field(
        default=None, ge=0, description="Max demographic parity difference; omit or null to not check it."
    )
    max_eo_diff: float | None = Field(
        default=None, ge=0, description="Max equalized odds difference; omit or null to not check it."
    )
    min_group_size: int = Field(default=30, ge=1, description="Smaller groups are reported and excluded.")

    @model_validator(mode="after")
    def _some_limit(self) -> FairnessSpec:
        # No silent default limit: a fairness section that checks nothing is a mistake.
        if self.max_dp_diff is None and self.max_eo_diff is None:
            raise _invalid("a fairness gate needs max_dp_diff, max_eo_diff or both")
        return self


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
        default=None, description="Fairness gate; needs `sensitive_features` (and they need it)."
    )
    champion: ChampionSpec | None = Field(
        default_factory=ChampionSpec, description="Champion gate; null disables it."
    )


def parse_duration(value: Any) -> Any:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s`` or a bare number of seconds; others pass through."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise _invalid(f"{value!r} is not a duration such as 7d, 12h, 30m or a number of seconds")
        return int(match[1]) * _UNITS[match[2] or "s"]
    return value


class SourceSpec(_Strict):
    """Where recent data lives and which slice of it to read (no file is touched at load time)."""

    path: str = Field(
        description="A file, a glob (`recent/*.csv`), or a folder ending in `/`; local (relative to the "
        "config's folder) or `s3://bucket/key`."
    )
    pick: Literal["all", "newest"] = Field(
        default="all",
        description="`all`: every matching file, concatenated in name order; `newest`: only the newest "
        "file or partition folder (greatest name) at the first level the path leaves open.",
    )
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="File format; default from each file's suffix (.csv, .parquet, .pq)."
    )
    rows: int | None = Field(
        default=None, gt=0, strict=True, description="Keep only the last N rows (after ordering by time)."
    )
    time_column: str | None = Field(
        default=None, min_length=1, description="Timestamp column: orders the rows and bounds `last`."
    )
    last: int | None = Field(
        default=None,
        gt=0,
        strict=True,
        description="Time window: keep rows whose `time_column` lies within this long before the "
        "window's end (7d, 12h, 30m or seconds). Naive timestamps are taken as UTC.",
    )
    until: Literal["now", "newest"] = Field(
        default="now",
        description="Where the time window ends: the current time, or the newest timestamp in the data.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise _invalid("must not be empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise _invalid("contains a control character")
        if value.startswith("s3://"):
            bucket = value[len("s3://") :].partition("/")[0]
            if len(bucket) < 3:
                raise _invalid(f"{value!r}: a bucket name has at least 3 characters (s3://bucket/key)")
        elif "://" in value and not value.startswith("file://"):
            raise _invalid(f"{value!r}: only local paths, file:// and s3:// are read")
        return value

    @field_validator("last", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and not info.data.get("time_column"):
            raise _invalid("a time window needs `time_column`")
        return parse_duration(value)

    @property
    def is_glob(self) -> bool:
        """The path holds a wildcard."""
        return any(c in GLOB_CHARS for c in self.path)


class MonitorSpec(_Strict):
    """What the monitor flow reads when it is not given a data path."""

    source: SourceSpec | None = Field(
        default=None, description="Where recent data lives; a plain string is taken as its `path`."
    )

    @field_validator("source", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class PipelineConfig(_Strict):
    """Everything a retrain or monitor run needs."""

    model_name: str = Field(description="Registered model name.")
    data: DataSpec = Field(description="Data sources.")
    target: str = Field(description="Target column (binary or numeric).")
    task: Literal["classification", "regression"] = Field(
        default="classification", description="What the target is."
    )
    positive_label: str | int | None = Field(
        default=None,
        description="The target value that counts as positive (quote Yes/No in YAML); needed when a "
        "classification target is not 0/1 or boolean.",
    )
    features: list[str] | None = Field(default=None, description="Feature columns; default all others.")
    sensitive_features: list[str] = Field(
        default_factory=list, description="Columns for the fairness gate (not used as features)."
    )
    contract: DataContract | None = Field(default=None, description="Data contract for the data gate.")
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec, description="What to train.")
    gates: GatesSpec = Field(default_factory=GatesSpec, validate_default=True, description="Gate thresholds.")
    monitor: MonitorSpec = Field(default_factory=MonitorSpec, description="The monitor flow's data source.")
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

    @field_validator("gates")
    @classmethod
    def _fairness_pairs(cls, gates: GatesSpec, info: ValidationInfo) -> GatesSpec:
        # Either half alone is a silent no-op: sensitive columns nobody checks, or a gate on nothing.
        sensitive = info.data.get("sensitive_features")
        if sensitive and gates.fairness is None:
            raise _invalid(
                "sensitive_features are set but gates.fairness is not: add gates.fairness with "
                "max_dp_diff and/or max_eo_diff, or drop sensitive_features"
            )
        if gates.fairness is not None and not sensitive:
            raise _invalid("gates.fairness needs sensitive_features: name the columns it compares groups on")
        return gates

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_not_bool(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool):
            raise _invalid(f"got the boolean {value}: {BOOL_HINT}")
        if value is not None and info.data.get("task") == "regression":
            raise _invalid("positive_label is for classification; this task is regression")
        return value

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

    def resolve_uri(self, location: str) -> str:
        """A data location with local paths resolved against ``base_dir``; ``s3://`` kept as given.

        A trailing ``/`` (a folder) and wildcards survive.
        """
        if location.startswith("s3://"):
            return location
        if location.startswith("file://"):
            location = location[len("file://") :]
        folder = location.endswith("/")
        resolved = str(self.resolve(location))
        return resolved + "/" if folder and not resolved.endswith("/") else resolved

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
            err = exc.errors()[0]
            if err["type"] == "string_type" and isinstance(err.get("input"), bool):
                # PyYAML turns unquoted Yes/No/on/off into booleans where text was meant.
                field = ".".join(str(x) for x in err["loc"])
                raise InvalidInput(
                    f"{source}: {field}: got the boolean {err['input']}: {BOOL_HINT}", field=field
                ) from None
            raise first_invalid(exc, source, "config") from None
