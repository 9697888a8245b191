"""Prefect UI artifacts: the gate report, the model card and drift, keyed by model."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from checks.result import GateReport, GateResult


def artifact_key(model: str, what: str) -> str:
    """An artifact key: lowercase letters, digits and dashes only (Prefect refuses others)."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{model}-{what}".lower()).strip("-")


def publish_gates(model: str, version: int, report: GateReport) -> None:
    """The gate report as a table."""
    rows = [
        {
            "gate": r.name,
            "passed": r.passed,
            "metric": r.metric,
            "value": r.value,
            "threshold": r.threshold,
            "summary": r.message,
        }
        for r in report.results
    ]
    create_table_artifact(
        table=rows, key=artifact_key(model, "gates"), description=f"Gate results for {model} v{version}"
    )


def publish_card(model: str, markdown: str) -> None:
    """The model card as Markdown."""
    create_markdown_artifact(
        markdown=markdown, key=artifact_key(model, "model-card"), description=f"Model card for {model}"
    )


def publish_drift(model: str, version: int, result: GateResult) -> None:
    """Per-feature drift as a table."""
    features: dict[str, Any] = result.details.get("features", {})
    rows = [
        {"feature": name, **{k: v for k, v in info.items() if not isinstance(v, dict | list)}}
        for name, info in features.items()
    ]
    create_table_artifact(
        table=rows or [{"feature": "-", "status": "no features"}],
        key=artifact_key(model, "drift"),
        description=f"Drift of {model} v{version}: {result.details.get('verdict')}",
    )


def publish_outcome(result: dict[str, Any]) -> None:
    """The retrain's outcome as Markdown: what happened to which version, who decided, why."""
    from flows.outcomes import state_name

    model, version = result["model"], result.get("version")
    which = f"v{version}" if version is not None else "(no version registered)"
    lines = [
        f"# {model} {which}: {state_name(result['outcome'])}",
        "",
        f"- outcome: **{result['outcome']}**",
        f"- decided by: {result.get('approver') or '-'}",
        f"- reason: {result.get('reason') or '-'}",
        f"- gates passed: {result.get('gates_passed')}",
    ]
    deployed = result.get("deployed")
    if deployed:
        lines.append(f"- deployed: {deployed.get('target')} at {deployed.get('location')}")
    create_markdown_artifact(
        markdown="\n".join(lines) + "\n",
        key=artifact_key(model, "outcome"),
        description=f"Outcome of the retrain of {model} {which}",
    )
