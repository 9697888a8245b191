"""Pipeline config commands: its JSON Schema (and checking a file against it)."""

from __future__ import annotations

import json

import typer

from govflow.cli import app

config_app = typer.Typer(help="The pipeline config (YAML) that retrain and monitor read.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def config_schema() -> None:
    """Print the pipeline config's JSON Schema (every key, its type, default and description)."""
    # Imported here: the config model pulls in pandas through the data contract.
    from flows.config import PipelineConfig

    print(json.dumps(PipelineConfig.model_json_schema(), indent=2))
