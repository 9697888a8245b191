"""Configuration from the ``GOVFLOW_*`` environment."""

from __future__ import annotations

import getpass
import os
import re

from pydantic import BaseModel, Field

from registry.errors import InvalidInput
from registry.validate import check_actor

DEFAULT_URL = "sqlite:///.govflow/registry.db"
DEFAULT_ARTIFACT_ROOT = ".govflow/artifacts"


_TEMPLATE = re.compile(r"\{\{\s*\$?[A-Za-z_][A-Za-z0-9_]*\s*\}\}")


def env(name: str) -> str | None:
    """A GOVFLOW_* setting, None when unset or empty.

    Refuses a value that is still a ``{{ $NAME }}`` template: ``prefect deploy`` keeps an unset
    variable as that literal text, and a run must not quietly fall back to another registry.
    """
    value = os.environ.get(name)
    if value and _TEMPLATE.search(value):
        raise InvalidInput(
            f"{name}: {value!r} is a prefect.yaml template that was never filled in; export {name} "
            "(empty for the default) where `prefect deploy` runs, then deploy again",
            field=name,
        )
    return value or None


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
            url=env("GOVFLOW_REGISTRY_URL") or DEFAULT_URL,
            artifact_root=env("GOVFLOW_ARTIFACT_ROOT") or DEFAULT_ARTIFACT_ROOT,
            policy=env("GOVFLOW_POLICY"),
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
