"""Running the Prefect flows directly: ``govflow run retrain|monitor|rollback``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from govflow.cli import app
from govflow.cli.common import console, emit_json
from registry.errors import InvalidInput

run_app = typer.Typer(
    help="Run a govflow flow in this process (needs a Prefect API or starts a temporary one).",
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")

ConfigOpt = Annotated[Path, typer.Option("--config", help="Pipeline config (YAML).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the flow's result as JSON.")]


def _check(path: Path) -> str:
    """Validate the config before a flow starts, so bad input is one line, not a flow traceback."""
    from flows.config import PipelineConfig

    if not path.is_file():
        raise InvalidInput(f"--config: {path} is not a readable file", field="config")
    PipelineConfig.load(path)
    return str(path)


def _show(result: dict, json_out: bool) -> None:
    if json_out:
        emit_json(result)
    else:
        for key, value in result.items():
            console.print(f"{key}: {value}")


@run_app.command("retrain")
def run_retrain(config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Train, gate and register a version, then pause for approval in the Prefect UI."""
    from flows.retrain import retrain

    _show(retrain(_check(config)), json_out)


@run_app.command("monitor")
def run_monitor(
    config: ConfigOpt,
    data: Annotated[Path, typer.Option("--data", help="New data to compare with the training data.")],
    json_out: JsonOpt = False,
) -> None:
    """Check new data for drift against the production version's reference."""
    from flows.monitor import monitor

    if not data.is_file():
        raise InvalidInput(f"--data: {data} is not a readable file", field="data")
    _show(monitor(_check(config), str(data.resolve())), json_out)


@run_app.command("rollback")
def run_rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Pipeline config, for the deploy target.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll back to the last approved version and deploy it."""
    from flows.config import PipelineConfig
    from flows.rollback import rollback
    from flows.steps import open_registry
    from registry import Registry

    path = _check(config) if config else None
    reg = open_registry(PipelineConfig.load(path)) if path else Registry()
    reg.resolve(f"{model}@production")  # unknown model or nothing live: one line, exit 2
    reg.close()
    _show(rollback(model, reason, path), json_out)
