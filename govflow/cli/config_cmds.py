"""Pipeline config commands: its JSON Schema, and checking a file before anything runs.

``govflow config check FILE`` reads the config, its data files and runs the preflight checks
(the retrain's data gate) without training, registering or starting Prefect. It exits 0 with
a short summary, or 2 with one line naming what is wrong.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from govflow.cli import app
from govflow.cli.common import console, emit_json
from registry.errors import InvalidInput

config_app = typer.Typer(help="The pipeline config (YAML) that retrain and monitor read.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def config_schema() -> None:
    """Print the pipeline config's JSON Schema (every key, its type, default and description)."""
    # Imported here: the config model pulls in pandas through the data contract.
    from flows.config import PipelineConfig

    print(json.dumps(PipelineConfig.model_json_schema(), indent=2))


@config_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Pipeline config (YAML).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Validate a config, its data files, columns and the preflight checks; nothing is trained or registered.

    Refuses (exit 2, one line): an invalid config or an unquoted Yes/No where text is meant;
    a data file that is missing or unreadable; a data gate that would fail.
    """
    from flows import preflight
    from flows.config import PipelineConfig
    from flows.data import feature_columns, load

    config = PipelineConfig.load(path)
    pending = _check_files(config)
    summary: dict[str, Any] = {
        "config": str(path),
        "model": config.model_name,
        "task": config.task,
        "target": config.target,
        "gates": [*config.gates.metrics, *(["fairness"] if config.gates.fairness else [])]
        + (["champion"] if config.gates.champion else []),
    }
    if pending:
        # The example data set is written on the first run; writing it here would be a side effect.
        summary["data"] = f"example {config.data.example} will be written on the first run: {', '.join(pending)}"
    else:
        data = load(config)
        reference = (
            {str(c): str(t) for c, t in data.reference.dtypes.items()} if config.data.reference else None
        )
        gate, positive = preflight.data_gate(config, data, reference)
        if not gate.passed:
            raise InvalidInput(f"{path}: the data gate would fail: {gate.message}", field="data")
        summary |= {
            "positive_label": positive,
            "features": feature_columns(config, data.train),
            "train_rows": len(data.train),
            "eval_rows": len(data.eval),
            "data": gate.message,
        }
    if json_out:
        emit_json(summary)
        return
    console.print(f"config ok: {path}", markup=False, highlight=False, soft_wrap=True)  # a path stays whole
    for key, value in summary.items():
        if key == "config":
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        console.print(f"  {key}: {shown}", markup=False, highlight=False)


def _check_files(config: Any) -> list[str]:
    """Refuse a local data file that is missing or unreadable; list those the example data will write."""
    pending = []
    for field in ("train", "eval", "path", "reference"):
        given = getattr(config.data, field)
        if given is None:
            continue
        if "://" in given and not given.startswith("file://"):
            raise InvalidInput(f"data.{field}: {given!r}: only local files are read for training", field=f"data.{field}")
        local = config.resolve(given.removeprefix("file://"))
        if not local.exists() and config.data.example:
            pending.append(f"data.{field}")
        elif not local.is_file() or not os.access(local, os.R_OK):
            raise InvalidInput(f"data.{field}: {local} is not a readable file", field=f"data.{field}")
    return pending
