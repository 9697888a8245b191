"""``govflow deploy NAME``: deploy the current production version through the configured target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from govflow.cli import app
from govflow.cli.common import console, emit_json
from registry.errors import InvalidInput


@app.command("deploy")
def deploy(
    name: Annotated[str, typer.Argument(help="Model name.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Pipeline config: its registry and deploy target (default manifest)."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who is acting (default: GOVFLOW_ACTOR, then OS user).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the deploy result as JSON.")] = False,
) -> None:
    """Deploy NAME's production version (after a manual fix, or a promotion or rollback outside a flow)."""
    from deployments.redeploy import redeploy, summary
    from flows.config import PipelineConfig
    from registry import Registry

    if config is not None and not config.is_file():
        raise InvalidInput(f"--config: {config} is not a readable file", field="config")
    # Without a file: the registry from GOVFLOW_*, the default target (a manifest under .govflow/).
    loaded = PipelineConfig.load(config) if config else PipelineConfig.parse(_defaults(name))
    if loaded.model_name != name:
        raise InvalidInput(
            f"NAME: {name!r} is not the config's model_name {loaded.model_name!r}", field="model_name"
        )
    # As flows.steps.open_registry does, without importing Prefect for a deploy.
    reg = Registry(
        url=loaded.registry_url, artifact_root=loaded.artifact_root, policy=loaded.resolve(loaded.policy)
    )
    try:
        result = redeploy(reg, name, loaded.deploy, actor=actor)
    finally:
        reg.close()
    if json_out:
        emit_json(result)
    else:
        console.print(summary(result), markup=False, highlight=False)


def _defaults(name: str) -> dict[str, object]:
    """The smallest valid pipeline config for ``name``: only its registry and target matter here."""
    return {"model_name": name, "target": "-", "data": {"path": "-"}, "base_dir": str(Path.cwd())}
