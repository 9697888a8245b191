"""Deploy what the registry has in production now: recovery after a manual fix, or a promotion
or rollback made outside a flow (``govflow deploy NAME``).

The version is never chosen by the caller: it is the model's current production version, so a
redeploy cannot push a version the registry does not stand behind. The target audits the deploy
(``model.deployed`` / ``model.deploy_failed``) as in a flow.
"""

from __future__ import annotations

from typing import Any

from deployments.targets import DeployResult, TargetSpec, make_target
from registry import Registry
from registry.errors import AliasNotFound, DeployError, NotFound


def redeploy(
    registry: Registry, model: str, target: TargetSpec | dict[str, Any], *, actor: str | None = None
) -> DeployResult:
    """Deploy ``model``'s current production version through ``target``.

    Refuses: an unknown model (``ModelNotFound``), a model with nothing in production
    (``NotFound``), a bad target spec (``InvalidInput``), and a deploy that fails or does not
    converge (``DeployError``, audited by the target).
    """
    chosen = make_target(target)  # a bad spec is refused before anything is read or written
    try:
        live = registry.resolve(f"{model}@production")
    except AliasNotFound:
        raise NotFound(
            f"{model} has no version in production; nothing to deploy", model=model, reason="no production"
        ) from None
    result = chosen.deploy(registry, model, live.version, actor=actor)
    if not result.converged:
        raise DeployError(
            f"{result.target} target did not converge to {model}/{live.version}",
            model=model,
            version=live.version,
            reason="not converged",
        )
    return result


def summary(result: DeployResult) -> str:
    """One line: what was deployed, where, and its digest."""
    where = result.location or "nowhere (target none)"
    return f"deployed {result.model}/{result.version} to {result.target} {where} sha256 {result.sha256}"
