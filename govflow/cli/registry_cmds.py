"""Registry commands: register, list, show, move through stages, roll back, ask (decisions: decision_cmds)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from govflow.cli import app
from govflow.cli.common import (
    console,
    emit_json,
    fmt_time,
    open_registry,
    parse_pair_list,
    parse_pairs,
    parse_param,
)
from registry import registration, serialization
from registry.datasets import dataset_ref
from registry.entities import ModelVersion
from registry.errors import InvalidInput
from registry.validate import parse_version

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _version(text: str) -> int:
    # ASCII digits only: int() would also take "1_0" and "١".
    try:
        return parse_version(text)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


VersionArg = Annotated[int, typer.Argument(help="Version number.", parser=_version)]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who is acting (default: GOVFLOW_ACTOR, then OS user).")
]


@app.command()
def register(
    name: Annotated[str, typer.Argument(help="Model name, e.g. credit-risk.")],
    artifact: Annotated[Path, typer.Option("--artifact", help="Model file to store.")],
    metric: Annotated[list[str] | None, typer.Option("--metric", help="K=V, finite number.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="K=V hyperparameter.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="K=V tag.")] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", help="ROLE=PATH_OR_URI (train, eval, reference); a local path is hashed."),
    ] = None,
    commit: Annotated[str | None, typer.Option("--commit", help="Git commit SHA of the code.")] = None,
    repo: Annotated[str | None, typer.Option("--repo", help="Code repository.")] = None,
    dirty: Annotated[bool, typer.Option("--dirty", help="The work tree had local changes.")] = False,
    description: Annotated[str | None, typer.Option("--description")] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="skops, joblib, pickle or file (default: detected from the content, then the extension).",
        ),
    ] = None,
    input_example: Annotated[
        Path | None,
        typer.Option(
            "--input-example", help="CSV or Parquet sample: its column names and dtypes (rows not stored)."
        ),
    ] = None,
    input_schema: Annotated[
        Path | None,
        typer.Option("--input-schema", help='JSON list of {"name": ..., "dtype": ...} the model expects.'),
    ] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Store an artifact and register it as the next version of NAME.

    The format is read from the file (a skops archive, a joblib dump, a pickle stream, else
    file); --format names it, and is refused if the content says otherwise. Pickle and joblib
    load only with both opt-ins: under a policy without allow_pickle they register with a
    warning and cannot enter production. A version serves only with an input schema
    (--input-example or --input-schema), or under govflow serve --no-schema.
    """
    _readable(artifact, "--artifact")
    if input_example is not None and input_schema is not None:
        raise InvalidInput(
            "--input-schema: give --input-example or --input-schema, not both", field="input_schema"
        )
    artifact_format = serialization.resolve_format(artifact, fmt)
    columns: list[dict[str, str]] = []
    for path, option in ((input_example, "--input-example"), (input_schema, "--input-schema")):
        if path is not None:
            _readable(path, option)
            columns = registration.schema_from_file(path, option)
    if commit is not None and len(commit) > MAX_COMMIT:
        raise InvalidInput(
            f"--commit: {len(commit)} characters; a commit id has at most {MAX_COMMIT}", field="commit"
        )
    metrics = {k: parse_metric(k, v) for k, v in parse_pairs(metric, "--metric").items()}
    datasets = [dataset_ref(role, target) for role, target in parse_pair_list(dataset, "--dataset")]
    reg = open_registry()
    # Lineage goes in as plain data: the registry checks it and names a bad field in one line.
    code = {"repo": repo, "commit": commit, "dirty": dirty}
    v = reg.register(
        name,
        artifact,
        actor=actor,
        artifact_format=artifact_format,
        input_schema=columns,
        metrics=metrics,
        params={k: parse_param(v) for k, v in parse_pairs(param, "--param").items()},
        tags=parse_pairs(tag, "--tag"),
        lineage={"datasets": datasets, "code": code},
        description=description,
    )
    if json_out:
        emit_json(
            {
                "model": v.model,
                "version": v.version,
                "stage": v.stage.value,
                "artifact_sha256": v.artifact.sha256,
                "artifact_uri": v.artifact.uri,
                "artifact_format": v.artifact.format,
                "input_columns": len(v.input_schema),
                "registered_by": v.registered_by,
            }
        )
    else:
        console.print(
            f"registered [bold]{v.ref}[/] ({v.stage.value}) sha256 {v.artifact.sha256[:12]}"
            f" format {v.artifact.format}, {len(v.input_schema)} input columns"
        )


MAX_COMMIT = 64  # a SHA-256 git object id; SHA-1 ids have 40
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_metric(key: str, text: str) -> float:
    """A ``--metric`` value: a decimal number in ASCII digits (not nan, inf, ``1_0`` or ``١``)."""
    value = float(text) if _NUMBER.fullmatch(text.strip()) else math.nan
    if not math.isfinite(value):  # also 1e999, which float() reads as inf
        raise InvalidInput(f"--metric {key}: {text!r} is not a finite number", field=f"metric {key}")
    return value


def _readable(path: Path, option: str) -> None:
    try:
        readable = path.is_file()
    except OSError:  # e.g. a name too long for the file system
        readable = False
    if not readable:
        raise InvalidInput(
            f"{option}: {path} is not a readable file", field=option.lstrip("-").replace("-", "_")
        )


LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most this many rows (1..10000).")]
TokenOpt = Annotated[
    str | None, typer.Option("--page-token", help="Continue a listing: the next_page_token it printed.")
]
StageOpt = Annotated[str | None, typer.Option("--stage", help="Only versions in this stage.")]
AliasOpt = Annotated[str | None, typer.Option("--alias", help="Only the version this alias points at.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE; repeatable, all must hold.")]
MetricOpt = Annotated[
    list[str] | None, typer.Option("--metric", help="NAME OP NUMBER, OP one of > >= < <= = (e.g. 'auc>=0.8').")
]
_OPTIONS = {"limit", "page_token", "stage", "alias", "tag", "metric", "before"}


def _listing(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run a listing call; a refused argument is named as its command-line option."""
    try:
        return call(*args, **kwargs)
    except InvalidInput as exc:
        if exc.field not in _OPTIONS:
            raise
        option = "--" + exc.field.replace("_", "-")
        raise InvalidInput(option + str(exc)[len(exc.field) :], field=option) from None


def _next_page(token: str | None) -> None:
    if token:
        console.print(f"more: --page-token {token}")


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Model name.")],
    limit: LimitOpt = None,
    page_token: TokenOpt = None,
    stage: StageOpt = None,
    alias: AliasOpt = None,
    tag: TagOpt = None,
    metric: MetricOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Also read approvals, evidence and waivers.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the versions of NAME, newest first, a page at a time with --limit."""
    rows = _listing(
        open_registry().versions,
        name,
        limit=limit,
        page_token=page_token,
        stage=stage,
        alias=alias,
        tags=tag or None,
        metrics=metric or None,
        with_decisions=full,
    )
    if json_out:
        # Without --full, approvals, evidence and waivers were not read: left out, not shown empty.
        drop = set() if full else {"approvals", "evidence", "waivers"}
        emit_json(
            {
                "versions": [v.model_dump(mode="json", exclude=drop) for v in rows],
                "next_page_token": rows.next_page_token,
            }
        )
        return
    table = Table(title=f"{name} versions")
    cols = ["version", "stage", "aliases", "registered by", "registered at", "metrics"]
    for col in cols + (["approvals", "gates"] if full else []):
        table.add_column(col)
    for v in rows:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        stage_text = v.stage.value + (" (rolled back)" if v.rolled_back else "")
        cells = [str(v.version), stage_text, ", ".join(v.aliases), v.registered_by, fmt_time(v.registered_at)]
        cells.append(metrics)
        if full:
            cells.append(", ".join(f"{a.decision.value}:{a.actor}" for a in v.approvals or []) or "-")
            latest = {e.gate: e.passed for e in v.evidence or []}
            cells.append(", ".join(f"{g}:{'ok' if p else 'FAILED'}" for g, p in sorted(latest.items())) or "-")
        table.add_row(*cells)
    console.print(table)
    _next_page(rows.next_page_token)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS.")], json_out: JsonOpt = False
) -> None:
    """Show one version: stage, aliases, metrics, params, tags, input schema, lineage, approvals
    and evidence."""
    v = open_registry().get(ref)
    if json_out:
        emit_json(v)
        return
    print_version(v)


def print_version(v: ModelVersion) -> None:
    """Human view of a version."""
    console.print(f"[bold]{v.ref}[/]  stage={v.stage.value}  aliases={','.join(v.aliases) or '-'}")
    console.print(f"artifact {v.artifact.uri} ({v.artifact.format}, {v.artifact.size} bytes)")
    console.print(f"sha256   {v.artifact.sha256}")
    console.print(f"registered by {v.registered_by} at {fmt_time(v.registered_at)}")
    if v.rolled_back:
        console.print(f"[red]rolled back[/]: {v.rollback_reason}")
    if v.metrics:
        console.print("metrics  " + ", ".join(f"{k}={val:.6g}" for k, val in sorted(v.metrics.items())))
    if v.params:
        params = ", ".join(f"{k}={json.dumps(val)}" for k, val in sorted(v.params.items()))
        console.print(f"params   {params}", markup=False)
    if v.tags:
        console.print("tags     " + ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items())), markup=False)
    console.print(f"input    {input_summary(v)}", markup=False)
    code = v.lineage.code
    if code.commit:
        console.print(f"code     {code.repo or ''} {code.commit}{' (dirty)' if code.dirty else ''}")
    for d in v.lineage.datasets:
        console.print(f"data     {d.role.value}: {d.uri} sha256={(d.sha256 or '-')[:12]} rows={d.rows}")
    for a in v.approvals:
        mark = "" if a.current else " (earlier review)"
        how = f" via {a.channel}" if a.channel else ""
        claim = f", typed name {a.claimed_by!r}" if a.claimed_by else ""
        console.print(
            f"decision {a.decision.value} by {a.actor}{how}{claim} for {a.target_stage.value}"
            f" at {fmt_time(a.at)}{mark}: {a.reason or ''}",
            markup=False,
        )
    for e in v.evidence:
        console.print(
            f"gate     {e.gate}: {'passed' if e.passed else 'FAILED'} value={e.value} threshold={e.threshold}"
        )
    for w in v.waivers:
        console.print(f"waiver   {w.gate} by {w.actor} at {fmt_time(w.at)}: {w.reason}", markup=False)


SHOWN_COLUMNS = 8  # `show` lists this many input columns; --json has them all


def input_summary(v: ModelVersion) -> str:
    """The input schema in one line: the column count, then the first columns as name:dtype."""
    cols = v.input_schema
    if not cols:
        return "no input schema (serves only under govflow serve --no-schema)"
    shown = ", ".join(f"{c.name}:{c.dtype}" for c in cols[:SHOWN_COLUMNS])
    more = f", … {len(cols) - SHOWN_COLUMNS} more (--json lists all)" if len(cols) > SHOWN_COLUMNS else ""
    return f"{len(cols)} column{'s' if len(cols) != 1 else ''}: {shown}{more}"


@app.command()
def transition(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg,
    stage: Annotated[str, typer.Argument(help="development|staging|production|archived")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Move a version to STAGE; production enforces approvals and gates."""
    v = open_registry().transition(name, version, stage, reason=reason, actor=actor)
    if json_out:
        emit_json(v)
    else:
        console.print(f"{v.ref} is now in {v.stage.value}")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Demote the production version and restore the last approved one."""
    r = open_registry().rollback(name, reason=reason, actor=actor)
    if json_out:
        emit_json(r)
    else:
        console.print(f"{name}: rolled back {r.demoted} -> {r.restored} ({reason})")


@app.command("production-at")
def production_at(
    name: Annotated[str, typer.Argument(help="Model name.")],
    iso_time: Annotated[str, typer.Argument(help="ISO 8601 time (no zone means UTC), or now.")],
    json_out: JsonOpt = False,
) -> None:
    """Which version was in production at a time (or now), and who approved it."""
    if iso_time.strip().lower() == "now":
        at = datetime.now(UTC)
    else:
        try:
            at = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"time: {iso_time!r} is not an ISO 8601 time (or now)", field="time"
            ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        at.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+14:00 lies before the first representable UTC instant
        raise InvalidInput(f"time: {iso_time!r} is out of range in UTC", field="time") from None
    p = open_registry().production_at(name, at)
    if json_out:
        emit_json(p)
    elif p.version is None:
        console.print(f"{name}: no version was in production at {at.isoformat()}")
    else:
        console.print(
            f"{name}/{p.version} was in production at {at.isoformat()} (since {fmt_time(p.since)}, "
            f"by {p.how} by {p.promoted_by}; approved by {', '.join(p.approved_by) or 'nobody'})"
        )


@app.command()
def impact(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Path, URI or sha256 of a dataset.")
    ] = None,
    commit: Annotated[str | None, typer.Option("--commit", help="Commit SHA or prefix.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Which versions used a dataset or a code commit."""
    if (dataset is None) == (commit is None):
        raise InvalidInput("impact: give exactly one of --dataset or --commit", field="dataset")
    reg = open_registry()
    if commit is not None:
        hits = reg.impact(commit=commit)
    else:
        ref = dataset_ref("train", dataset) if dataset else None
        assert ref is not None
        hits = reg.impact(dataset=ref.uri, digest=ref.sha256)
    if json_out:
        emit_json(hits)
        return
    table = Table(title="impact")
    cols = list(hits[0].keys()) if hits else ["model", "version", "stage"]
    for col in cols:
        table.add_column(col)
    for h in hits:
        table.add_row(*(str(h[c]) for c in cols))
    console.print(table)


@app.command()
def models(
    limit: LimitOpt = None,
    page_token: TokenOpt = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only models with a version in this stage.")] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Only models where this alias is set.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="KEY=VALUE: only models with a version tagged so.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="NAME OP NUMBER: only models with a version meeting it.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List models with their latest and production versions, by name, a page at a time with --limit."""
    rows = _listing(
        open_registry().models,
        limit=limit,
        page_token=page_token,
        stage=stage,
        alias=alias,
        tags=tag or None,
        metrics=metric or None,
    )
    if json_out:
        emit_json({"models": [m.model_dump(mode="json") for m in rows], "next_page_token": rows.next_page_token})
        return
    table = Table(title="models")
    for col in ("name", "latest", "production", "aliases"):
        table.add_column(col)
    for m in rows:
        table.add_row(
            m.name,
            str(m.latest_version),
            str(m.production_version or "-"),
            ", ".join(f"{k}->{v}" for k, v in sorted(m.aliases.items())),
        )
    console.print(table)
    _next_page(rows.next_page_token)
