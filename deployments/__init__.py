"""Deployments: serve the production model with hot swap, and deploy targets for the flows.

``from deployments import make_target, create_app``. The serving side (FastAPI, uvicorn, pandas)
is imported on first use, so flows that only need a target stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployments.targets import (
    DeployResult,
    DeployTarget,
    ManifestTargetSpec,
    NoTargetSpec,
    ServingTargetSpec,
    TargetSpec,
    make_target,
)

if TYPE_CHECKING:
    from deployments.server import ServerThread, serve
    from deployments.serving import create_app

_LAZY = {
    "create_app": "deployments.serving",
    "serve": "deployments.server",
    "ServerThread": "deployments.server",
}

__all__ = [
    "DeployResult",
    "DeployTarget",
    "ManifestTargetSpec",
    "NoTargetSpec",
    "ServerThread",
    "ServingTargetSpec",
    "TargetSpec",
    "create_app",
    "make_target",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deployments' has no attribute {name!r}")
