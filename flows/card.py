"""Markdown for people: the model card and the approval form's description (no Prefect here)."""

from __future__ import annotations

from checks.result import GateReport
from registry.entities import ModelVersion


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def gate_table(report: GateReport) -> str:
    """A Markdown table of gate results."""
    lines = ["| gate | passed | value | threshold | summary |", "|---|---|---:|---:|---|"]
    for r in report.results:
        mark = "yes" if r.passed else "**NO**"
        summary = r.message.replace("|", "/")
        lines.append(f"| {r.name} | {mark} | {_fmt(r.value)} | {_fmt(r.threshold)} | {summary} |")
    return "\n".join(lines)


def metric_diff(version: ModelVersion, champion: ModelVersion | None) -> str:
    """Metrics of the candidate beside the current champion's."""
    if champion is None:
        return "_No model is in production: this would be the first._"
    keys = sorted(set(version.metrics) | set(champion.metrics))
    lines = [
        f"| metric | v{version.version} (candidate) | v{champion.version} (production) | change |",
        "|---|---:|---:|---:|",
    ]
    for k in keys:
        a, b = version.metrics.get(k), champion.metrics.get(k)
        change = f"{a - b:+.4g}" if a is not None and b is not None else "-"
        lines.append(f"| {k} | {_fmt(a)} | {_fmt(b)} | {change} |")
    return "\n".join(lines)


def lineage(version: ModelVersion) -> str:
    """Data, code and run lineage as a bullet list."""
    code = version.lineage.code
    out = [
        f"- artifact: `{version.artifact.sha256[:16]}…` ({version.artifact.format}, {version.artifact.size} bytes)",
        f"- code: `{code.commit or 'unknown'}`{' (dirty work tree)' if code.dirty else ''}",
        f"- run: `{version.lineage.run.flow_run_id or '-'}` ({version.lineage.run.flow_name or '-'})",
    ]
    for d in version.lineage.datasets:
        out.append(f"- {d.role.value} data: `{d.uri}` sha256 `{(d.sha256 or '-')[:16]}…`, {d.rows} rows")
    return "\n".join(out)


FORM_HOW = "Leaving the form as it is **rejects**: switch *Approve* on, give your name and a reason."


def approval_description(
    version: ModelVersion,
    report: GateReport,
    champion: ModelVersion | None,
    note: str | None = None,
    how: str = FORM_HOW,
) -> str:
    """What the approver reads above the form; ``how`` says how to answer in this channel."""
    head = f"## Approve {version.model} v{version.version} for production?\n\n"
    if note:
        head += f"> **{note}**\n\n"
    head += f"Registered by **{version.registered_by}**, who may not approve it. {how}\n\n"
    return (
        head
        + "### Gates\n\n"
        + gate_table(report)
        + "\n\n### Against production\n\n"
        + metric_diff(version, champion)
        + "\n\n### Lineage\n\n"
        + lineage(version)
        + "\n"
    )


def model_card(version: ModelVersion, report: GateReport | None = None) -> str:
    """The model card: identity, metrics, gates, approvals, lineage."""
    parts = [
        f"# Model card: {version.model} v{version.version}",
        "",
        f"- stage: **{version.stage.value}**" + (" (rolled back)" if version.rolled_back else ""),
        f"- registered by {version.registered_by} at {version.registered_at.isoformat(timespec='seconds')}",
        "",
        "## Metrics",
        "",
        "\n".join(f"- {k}: {_fmt(v)}" for k, v in sorted(version.metrics.items())) or "_none_",
        "",
        "## Gates",
        "",
    ]
    if report is not None:
        parts.append(gate_table(report))
    else:
        parts.append(
            "\n".join(
                f"- {e.gate}: {'passed' if e.passed else 'FAILED'} ({_fmt(e.value)})"
                for e in version.evidence
            )
            or "_none_"
        )
    parts += ["", "## Approvals", ""]
    parts.append(
        "\n".join(
            f"- {a.decision.value} by {a.actor} for {a.target_stage.value}: {a.reason or ''}"
            for a in version.approvals
        )
        or "_none_"
    )
    parts += ["", "## Lineage", "", lineage(version), ""]
    return "\n".join(parts)
