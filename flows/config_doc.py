"""The pipeline config reference (docs/config.md), generated from the pydantic model.

``python -m flows.config_doc > docs/config.md`` rewrites the page; tests/flows/test_config_doc.py
fails when the page and the model disagree, so a new key cannot go undocumented.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, get_args

from pydantic import BaseModel

from flows.config import PipelineConfig

ROOT = "PipelineConfig"

# A short config that validates (the test parses it): the smallest useful retrain.
MINIMAL = """\
model_name: churn
target: churned
data:
  train: data/train.csv
  eval: data/eval.csv
"""

# One example value per key, as it would be written in YAML. Keys with a telling default may be
# left out: the default then stands as the example. A required key must have one here.
EXAMPLES: dict[str, str] = {
    "PipelineConfig.model_name": "credit-risk",
    "PipelineConfig.data": "{train: data/train.csv, eval: data/eval.csv}",
    "PipelineConfig.target": "default",
    "PipelineConfig.task": "regression",
    "PipelineConfig.positive_label": "'yes'",
    "PipelineConfig.features": "[age, income, region]",
    "PipelineConfig.sensitive_features": "[sex]",
    "PipelineConfig.contract": "{min_rows: 500, columns: [{name: age, dtype: int, min: 18}]}",
    "PipelineConfig.estimator": "{import_path: sklearn.ensemble.RandomForestClassifier}",
    "PipelineConfig.gates": "{metrics: {roc_auc: {min: 0.65}}, champion: null}",
    "PipelineConfig.monitor": "{source: data/recent/}",
    "PipelineConfig.policy": "policy.yaml",
    "PipelineConfig.approval_timeout": "86400",
    "PipelineConfig.approval_poll": "2",
    "PipelineConfig.deploy": "{kind: serving, url: 'http://127.0.0.1:8080'}",
    "PipelineConfig.registry_url": "postgresql+psycopg://govflow@db/govflow",
    "PipelineConfig.artifact_root": "s3://models/govflow",
    "PipelineConfig.base_dir": "/srv/pipelines/credit-risk",
    "DataSpec.train": "data/train.csv",
    "DataSpec.eval": "data/eval.parquet",
    "DataSpec.reference": "data/reference.csv",
    "DataSpec.path": "data/all.csv",
    "DataSpec.split": "{eval_fraction: 0.2, seed: 7}",
    "DataSpec.example": "credit-risk",
    "SplitRule.eval_fraction": "0.2",
    "SplitRule.seed": "7",
    "EstimatorSpec.import_path": "sklearn.ensemble.HistGradientBoostingClassifier",
    "EstimatorSpec.params": "{max_iter: 1000, C: 1.0}",
    "EstimatorSpec.preprocess": "false",
    "GatesSpec.metrics": "{roc_auc: {min: 0.65}, accuracy: {min: 0.6}}",
    "GatesSpec.fairness": "{max_dp_diff: 0.1, max_eo_diff: 0.15}",
    "GatesSpec.champion": "{metric: roc_auc, margin: 0.02}",
    "MetricThreshold.min": "0.65",
    "MetricThreshold.max": "0.2",
    "FairnessSpec.max_dp_diff": "0.05",
    "FairnessSpec.max_eo_diff": "0.15",
    "FairnessSpec.min_group_size": "50",
    "ChampionSpec.metric": "accuracy",
    "ChampionSpec.margin": "0.02",
    "MonitorSpec.source": "{path: data/recent/, pick: newest}",
    "SourceSpec.path": "s3://landing/scores/*.parquet",
    "SourceSpec.pick": "newest",
    "SourceSpec.format": "parquet",
    "SourceSpec.rows": "50000",
    "SourceSpec.time_column": "scored_at",
    "SourceSpec.last": "7d",
    "SourceSpec.until": "newest",
    "DataContract.name": "credit-applications",
    "DataContract.columns": "[{name: age, dtype: int, nullable: false, min: 18, max: 100}]",
    "DataContract.min_rows": "500",
    "DataContract.max_rows": "1000000",
    "DataContract.extra_columns": "forbid",
    "ColumnSpec.name": "age",
    "ColumnSpec.dtype": "int",
    "ColumnSpec.required": "false",
    "ColumnSpec.nullable": "false",
    "ColumnSpec.min": "18",
    "ColumnSpec.max": "100",
    "ColumnSpec.allowed": "[north, south, east, west]",
    "ColumnSpec.unique": "true",
    "ColumnSpec.mostly": "0.99",
    "ServingTargetSpec.kind": "serving",
    "ServingTargetSpec.url": "http://scoring.internal:8080",
    "ServingTargetSpec.timeout": "60",
    "ManifestTargetSpec.kind": "manifest",
    "ManifestTargetSpec.path": "s3://releases/credit-risk.json",
    "NoTargetSpec.kind": "none",
}


def schema() -> dict[str, Any]:
    """The pipeline config's JSON Schema, as ``govflow config schema`` prints it."""
    return PipelineConfig.model_json_schema()


def models() -> dict[str, type[BaseModel]]:
    """Every pydantic model the config is made of, by class name (the schema's ``$defs`` keys)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ in found:
                return
            found[annotation.__name__] = annotation
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for arg in get_args(annotation):
            visit(arg)

    visit(PipelineConfig)
    return found


def sections(root: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(definition name, key path, schema) per object, breadth first from the top level."""
    defs = root.get("$defs", {})
    seen = {ROOT}
    queue: list[tuple[str, str, dict[str, Any]]] = [(ROOT, "", root)]
    while queue:
        name, path, node = queue.pop(0)
        yield name, path, node
        for key, prop in node.get("properties", {}).items():
            for ref, suffix in _refs(prop):
                target = ref.rsplit("/", 1)[-1]
                if target not in seen:
                    seen.add(target)
                    queue.append((target, f"{path}{'.' if path else ''}{key}{suffix}", defs[target]))


def _refs(prop: dict[str, Any], suffix: str = "") -> Iterator[tuple[str, str]]:
    """The ``$ref``s a property leads to, with how its path continues (``[]``, ``.<key>``)."""
    if "$ref" in prop:
        yield prop["$ref"], suffix
    for alt in prop.get("anyOf", []) + prop.get("oneOf", []):
        yield from _refs(alt, suffix)
    if isinstance(prop.get("items"), dict):
        yield from _refs(prop["items"], suffix + "[]")
    if isinstance(prop.get("additionalProperties"), dict):
        yield from _refs(prop["additionalProperties"], suffix + ".<key>")


def type_text(prop: dict[str, Any]) -> str:
    """A JSON Schema type in words, linking nested sections."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " or ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "oneOf" in prop or "anyOf" in prop:
        alts = prop.get("oneOf") or prop["anyOf"]
        text = " or ".join(type_text(a) for a in alts)
        if "discriminator" in prop:
            text += f", chosen by `{prop['discriminator']['propertyName']}`"
        return text
    kind = prop.get("type")
    if kind == "array":
        return f"list of {type_text(prop.get('items', {}))}"
    if kind == "object":
        values = prop.get("additionalProperties")
        return f"map of name to {type_text(values)}" if isinstance(values, dict) else "mapping"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}.get(
        kind or "", kind or "any"
    )


_BOUNDS = (
    ("exclusiveMinimum", "> {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMaximum", "< {}"),
    ("maximum", "≤ {}"),
    ("minLength", "at least {} character(s)"),
)


def bounds_text(prop: dict[str, Any]) -> str:
    """Numeric and length bounds of a property (nullable ones included)."""
    parts = []
    for node in [prop, *prop.get("anyOf", [])]:
        parts += [fmt.format(node[key]) for key, fmt in _BOUNDS if key in node]
    return ", ".join(parts)


def default_text(model: type[BaseModel] | None, key: str, prop: dict[str, Any], required: bool) -> str:
    """The default as YAML-ish JSON, also for defaults made by a factory; ``required`` if none."""
    if required:
        return "required"
    if "default" in prop:
        value = prop["default"]
    elif model is not None and key in model.model_fields:
        value = model.model_fields[key].get_default(call_default_factory=True, validated_data={})
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        elif isinstance(value, dict):
            value = {
                k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in value.items()
            }
    else:
        return "-"
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def example_text(def_name: str, key: str, prop: dict[str, Any], required: bool) -> str:
    """This key's example: from EXAMPLES, else its default; empty when it has neither."""
    example = EXAMPLES.get(f"{def_name}.{key}")
    if example is not None:
        return f"`{key}: {example}`"
    if not required and prop.get("default") is not None:
        return f"`{key}: {json.dumps(prop['default'])}`"
    return ""


def missing_examples() -> list[str]:
    """Keys the page would show without an example (each needs an EXAMPLES entry)."""
    out = []
    for def_name, _, node in sections(schema()):
        for key, prop in node.get("properties", {}).items():
            if not example_text(def_name, key, prop, key in node.get("required", [])):
                out.append(f"{def_name}.{key}")
    return out


def _cell(text: str) -> str:
    # One line per row; docstrings' RST ``code`` becomes Markdown `code`.
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def _where(path: str, node: dict[str, Any]) -> str:
    """A section's key path, with the ``kind`` that selects it when there are several."""
    kind = node.get("properties", {}).get("kind", {}).get("const")
    return f"`{path}` (`kind: {kind}`)" if kind else f"`{path}`"


def render() -> str:
    """The whole reference page as Markdown."""
    root = schema()
    classes = models()
    lines = [
        "# Pipeline config reference",
        "",
        "<!-- Generated by `python -m flows.config_doc > docs/config.md` from flows/config.py;",
        "     tests/flows/test_config_doc.py fails when this page is out of date. -->",
        "",
        "The YAML file that `govflow run retrain --config FILE` and `govflow run monitor` read. Every key",
        "below comes from the pydantic model `flows.config.PipelineConfig`; `govflow config schema` prints",
        "the same model as JSON Schema (for editors and CI). Relative paths resolve against the config",
        "file's folder (`base_dir`).",
        "",
        "The smallest useful config:",
        "",
        "```yaml",
        MINIMAL.rstrip("\n"),
        "```",
        "",
        "A complete one, with a data contract, gates, a monitor source and a deploy target, is the demo's",
        "[flows/examples/credit-risk.yaml](../flows/examples/credit-risk.yaml).",
        "",
        "Sections:",
        "",
    ]
    listed = list(sections(root))
    for name, path, node in listed:
        lines.append(f"- [{_where(path, node) if path else 'top level'}](#{name.lower()}) ({name})")
    for name, path, node in listed:
        lines += ["", f"## {name}", ""]
        where = _where(path, node) if path else "the top level of the file"
        description = _cell(node.get("description", ""))
        extra = "refused" if node.get("additionalProperties") is False else "ignored"
        lines += [f"At {where}. {description} Unknown keys here are {extra}.", ""]
        lines += ["| Key | Type | Default | Description | Example |", "|---|---|---|---|---|"]
        required = set(node.get("required", []))
        for key, prop in node.get("properties", {}).items():
            bounds = bounds_text(prop)
            text = prop.get("description", "") + (f" ({bounds})" if bounds else "")
            row = (
                f"`{key}`",
                type_text(prop),
                default_text(classes.get(name), key, prop, key in required),
                text,
                example_text(name, key, prop, key in required),
            )
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
