"""Governance policy: approvals, separation of duties, required gates, drift thresholds.

Loaded from a TOML or YAML file (``GOVFLOW_POLICY``) or the defaults: production needs one
approval from someone other than the registrant, all approvers distinct. A registry server fills
the keys a file leaves out from ``SERVER_DEFAULTS`` instead, so a seed file cannot loosen them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from registry.errors import PolicyError, first_invalid
from registry.stages import Stage


class StageRule(BaseModel):
    """What a version needs before it may enter one stage."""

    model_config = ConfigDict(extra="forbid")

    approvals: int | None = Field(
        default=None,
        ge=0,
        description="Distinct approve decisions required; unset means the stage's default (production 1, others 0).",
    )
    approvers: list[str] | None = Field(
        default=None, description="If set, only these actors may approve for this stage."
    )
    gates: list[str] = Field(
        default_factory=list, description="Gates whose latest evidence must exist and pass."
    )
    input_schema: bool = Field(
        default=False,
        description="A version must record its input schema (columns and dtypes) to enter this stage; "
        "set it for production when govflow serve serves the model.",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out while false, so a policy written before this option keeps its sha256.
        out: dict[str, Any] = handler(self)
        if not self.input_schema:
            out.pop("input_schema", None)
        return out


class DriftPolicy(BaseModel):
    """Thresholds for the drift gate (PSI / Jensen–Shannon)."""

    model_config = ConfigDict(extra="forbid")

    warn: float = Field(default=0.1, gt=0, description="Per-feature score that warns.")
    act: float = Field(default=0.25, gt=0, description="Per-feature score that acts (rollback).")
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that makes the set drift."
    )

    @model_validator(mode="after")
    def _ordered(self) -> DriftPolicy:
        if self.act < self.warn:
            raise ValueError(f"act ({self.act}) must be >= warn ({self.warn})")
        return self


_DURATION = re.compile(r"([0-9]{1,9})\s*([dhms]?)")
_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}

# A policy file must say ``approvals = 0`` to drop these; listing a stage does not drop them.
DEFAULT_APPROVALS = {Stage.PRODUCTION: 1}


# What a registry server holds to when a policy leaves a key out. The other defaults are
# already strict: a failed gate blocks production until an audited waiver, approvals expire.
SERVER_DEFAULTS: dict[str, Any] = {"authenticated_approvals": True}


def _default_stages() -> dict[Stage, StageRule]:
    return {Stage.PRODUCTION: StageRule(approvals=1)}


class Policy(BaseModel):
    """The governance rules the registry enforces."""

    model_config = ConfigDict(extra="forbid")

    separation_of_duties: bool = Field(
        default=True, description="The registrant of a version may not approve it."
    )
    stages: dict[Stage, StageRule] = Field(
        default_factory=_default_stages, description="Rules per target stage."
    )
    drift: DriftPolicy = Field(default_factory=DriftPolicy, description="Drift thresholds.")
    approval_timeout_seconds: int = Field(
        default=86_400, gt=0, description="How long an approval pause waits before rejecting."
    )
    allow_pickle: bool = Field(
        default=False, description="Permit raw pickle/joblib loads when the caller also opts in."
    )
    trusted_types: list[str] = Field(
        default_factory=list, description="Extra fully qualified types skops may load."
    )
    approval_valid_for: int = Field(
        default=7 * 86_400,
        gt=0,
        strict=True,
        description="Seconds an approve decision counts for (also 7d, 12h, 30m); older ones are expired.",
    )
    waivers: bool = Field(
        default=True,
        description="An approver may waive a failed gate (audited); false: a failed gate always blocks production.",
    )
    authenticated_approvals: bool = Field(
        default=False,
        description="Only approvals by an authenticated identity count; a name typed into a form does not "
        "(the default in server mode).",
    )

    @field_validator("approval_valid_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DURATION.fullmatch(value.strip())
            if match is None:
                raise ValueError(f"{value!r} is not a duration such as 7d, 12h, 30m or a number of seconds")
            return int(match[1]) * _UNITS[match[2] or "s"]
        return value

    def rule(self, stage: Stage) -> StageRule:
        """The rule for entering ``stage``; a rule that leaves ``approvals`` unset, or no rule at
        all, gets the stage's default (production needs one approval)."""
        rule = self.stages.get(stage, StageRule())
        if rule.approvals is None:
            rule = rule.model_copy(update={"approvals": DEFAULT_APPROVALS.get(stage, 0)})
        return rule

    @classmethod
    def server_default(cls) -> Policy:
        """The policy a new registry gets from ``govflow server``: only authenticated approvals count."""
        return cls.model_validate(SERVER_DEFAULTS)

    @classmethod
    def load(cls, path: str | Path | None, *, defaults: dict[str, Any] | None = None) -> Policy:
        """Load a policy file (.toml, .yaml, .yml); ``None`` gives the defaults.

        Top-level keys the file leaves out take ``defaults`` (e.g. ``SERVER_DEFAULTS``), then the
        built-in defaults. Refuses an unreadable file, unknown keys and out-of-range values,
        naming the field.
        """
        if path is None or str(path) == "":
            return cls.from_dict({}, defaults=defaults)
        return cls.from_dict(cls.read(path), source=str(Path(path)), defaults=defaults)

    @staticmethod
    def read(path: str | Path) -> Any:
        """The settings a policy file holds, as written (not yet validated); refuses an unreadable
        file or one that does not parse."""
        p = Path(path)
        try:
            if p.exists() and not p.is_file():
                # Reading a FIFO or a device would block or never end.
                raise PolicyError(f"policy {p}: not a regular file", field="policy")
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"policy {p}: cannot read: {exc.strerror or exc}", field="policy") from exc
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"policy {p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
                field="policy",
            ) from exc
        try:
            data: Any = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise PolicyError(f"policy {p}: not valid {p.suffix.lstrip('.')}: {exc}", field="policy") from exc
        return data or {}

    @classmethod
    def coerce(cls, policy: Any, *, defaults: dict[str, Any] | None = None) -> Policy:
        """A Policy from a Policy, a mapping or a policy file path; refuse anything else.

        A mapping or a file leaves out keys that then take ``defaults``; a Policy is taken whole.
        """
        if isinstance(policy, Policy):
            return policy
        if isinstance(policy, dict):
            return cls.from_dict(policy, defaults=defaults)
        if isinstance(policy, str | Path) and str(policy).strip():
            return cls.load(policy, defaults=defaults)
        raise PolicyError(f"policy: {policy!r} is not a policy, a mapping or a file", field="policy")

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "policy", *, defaults: dict[str, Any] | None = None
    ) -> Policy:
        """Validate a policy mapping (keys it leaves out take ``defaults``); refuse it with the
        first bad field named."""
        try:
            merged = {**defaults, **data} if defaults and isinstance(data, dict) else data
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise first_invalid(exc, source, "policy", PolicyError) from None
