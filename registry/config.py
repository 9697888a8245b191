"""Configuration from the ``GOVFLOW_*`` environment."""

from __future__ import annotations

import getpass
import os

from pydantic import BaseModel, Field

from registry.validate import check_actor

DEFAULT_URL = "sqlite:///.govflow/registry.db"
DEFAULT_ARTIFACT_ROOT = ".govflow/artifacts"


class Settings(BaseModel):
    """Where the registry lives and who is acting."""

    url: str = Field(default=DEFAULT_URL, description="SQLAlchemy URL (GOVFLOW_REGISTRY_URL).")
    artifact_root: str = Field(
        default=DEFAULT_ARTIFACT_ROOT,
        description="Local folder or s3://bucket/prefix (GOVFLOW_ARTIFACT_ROOT).",
    )
    policy: str | None = Field(default=None, description="Policy file path (GOVFLOW_POLICY).")

    @classmethod
    def from_env(cls) -> Settings:
        """Read the environment, falling back to the embedded defaults."""
        return cls(
            url=os.environ.get("GOVFLOW_REGISTRY_URL") or DEFAULT_URL,
            artifact_root=os.environ.get("GOVFLOW_ARTIFACT_ROOT") or DEFAULT_ARTIFACT_ROOT,
            policy=os.environ.get("GOVFLOW_POLICY") or None,
        )


def resolve_actor(explicit: str | None = None) -> str:
    """The acting identity: explicit, else ``GOVFLOW_ACTOR``, else the OS user."""
    actor = explicit if explicit is not None else os.environ.get("GOVFLOW_ACTOR") or _os_user()
    return check_actor(actor)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
