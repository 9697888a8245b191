"""docs/config.md is the pipeline config model, rendered: it fails here when the two disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field, create_model

import flows.config_doc as config_doc
from flows.config import PipelineConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _all_keys(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(definition, key) for every property of the config and of every nested section."""
    nodes = {"PipelineConfig": schema, **schema["$defs"]}
    return [(name, key) for name, node in nodes.items() for key in node.get("properties", {})]


def test_page_is_up_to_date() -> None:
    assert PAGE.read_text(encoding="utf-8") == config_doc.render(), (
        "docs/config.md is out of date with flows/config.py: run python -m flows.config_doc > docs/config.md"
    )


def test_every_key_of_every_section_has_a_row_with_type_default_and_example() -> None:
    page = config_doc.render()
    schema = PipelineConfig.model_json_schema()
    sections = page.split("\n## ")[1:]
    by_name = {s.splitlines()[0]: s for s in sections}
    # Nested sections (data, split, monitor, gates, fairness, champion, estimator, deploy targets,
    # the data contract and its columns) each get a table.
    assert set(by_name) == {"PipelineConfig", *schema["$defs"]}
    for name, key in _all_keys(schema):
        rows = [line for line in by_name[name].splitlines() if line.startswith(f"| `{key}` |")]
        assert len(rows) == 1, (name, key)
        cells = [c.strip() for c in rows[0].strip("|").split(" | ")]
        assert len(cells) == 5 and all(cells), (name, key, cells)  # type, default, description, example
    assert config_doc.missing_examples() == []


def test_contract_column_keys_and_factory_defaults_are_documented() -> None:
    page = config_doc.render()
    columns = page.split("\n## ColumnSpec\n")[1].split("\n## ")[0]
    for key in ("name", "dtype", "required", "nullable", "min", "max", "allowed", "unique", "mostly"):
        assert f"| `{key}` |" in columns
    assert "At `contract.columns[]`." in columns
    # Defaults made by a factory are shown as values, not left blank.
    deploy = next(line for line in page.splitlines() if line.startswith("| `deploy` |"))
    assert '"kind": "manifest"' in deploy
    assert "(> 0, < 1)" in page  # eval_fraction's bounds


def test_a_new_key_changes_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    # Adding a field to the model must make the committed page stale, so the first test fails.
    grown = create_model(
        "PipelineConfig",
        __base__=PipelineConfig,
        retries=(int, Field(default=3, ge=0, description="How often a failed step is retried.")),
    )
    monkeypatch.setattr(config_doc, "PipelineConfig", grown)
    page = config_doc.render()
    assert page != PAGE.read_text(encoding="utf-8")
    assert "| `retries` | integer | `3` | How often a failed step is retried. (≥ 0) | `retries: 3` |" in page


def test_a_required_key_without_an_example_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    grown = create_model(
        "PipelineConfig", __base__=PipelineConfig, owner=(str, Field(description="Team that owns it."))
    )
    monkeypatch.setattr(config_doc, "PipelineConfig", grown)
    assert config_doc.missing_examples() == ["PipelineConfig.owner"]


def test_examples_name_real_keys_and_are_yaml() -> None:
    keys = {f"{name}.{key}" for name, key in _all_keys(PipelineConfig.model_json_schema())}
    assert set(config_doc.EXAMPLES) <= keys, set(config_doc.EXAMPLES) - keys
    for where, text in config_doc.EXAMPLES.items():
        yaml.safe_load(f"{where.split('.')[1]}: {text}")


def test_the_minimal_example_is_a_valid_config() -> None:
    config = PipelineConfig.parse(yaml.safe_load(config_doc.MINIMAL))
    assert config.model_name == "churn"
