"""Decision commands: approve (or print an approval code), waive, reject; each resumes a waiting run."""

from __future__ import annotations

from typing import Annotated

import typer

from govflow.cli import app
from govflow.cli.common import console, emit_json, err_console, open_registry
from govflow.cli.registry_cmds import ActorOpt, JsonOpt, VersionArg
from registry.errors import InvalidInput


@app.command()
def approve(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    stage: Annotated[str, typer.Option("--stage", help="Target stage of the approval.")] = "production",
    code: Annotated[
        bool,
        typer.Option(
            "--code", help="Print a one-time approval code for the approval form instead of approving."
        ),
    ] = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Approve a version for STAGE (default production). The registrant may not approve.

    With --code, approve nothing now: print a one-time code bound to you and this version, to
    paste into the Code field of the Prefect approval form.
    """
    if code:
        _print_code(name, version, reason=reason, stage=stage, actor=actor, json_out=json_out)
        return
    a = open_registry().approve(name, version, reason=reason, actor=actor, stage=stage)
    resumed = _resume_waiting(name, version, approve=True, actor=a.actor, reason=reason)
    if json_out:
        emit_json(
            {"model": name, "version": version, **a.model_dump(mode="json"), "resumed_flow_run": resumed}
        )
    else:
        console.print(f"{name}/{version} approved by {a.actor} for {a.target_stage.value}")
        if resumed:
            console.print(f"resumed paused flow run {resumed}")


CODE_VALID_FOR = 600  # seconds: long enough to switch to the browser, short enough to be useless later


def _print_code(
    name: str, version: int, *, reason: str | None, stage: str, actor: str | None, json_out: bool
) -> None:
    # The form carries the reason and decides production only; say so rather than drop the options.
    if reason is not None:
        raise InvalidInput("--reason: with --code, give the reason in the approval form", field="reason")
    if stage != "production":
        raise InvalidInput("--stage: an approval code is for production only", field="stage")
    text = open_registry().approval_code(name, version, actor=actor, valid_for=CODE_VALID_FOR)
    minutes = CODE_VALID_FOR // 60
    if json_out:
        emit_json({"model": name, "version": version, "code": text, "valid_for": CODE_VALID_FOR})
        return
    # Plain print: the code is meant to be copied, so no markup or wrapping.
    print(text)
    print(
        f"one-time approval code for {name}/{version}, valid {minutes} minutes: paste it into the Code "
        "field of the paused run's approval form, switch Approve on and resume"
    )


@app.command()
def waive(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg,
    gate: Annotated[str, typer.Argument(help="The gate whose failed result is waived.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the failure is accepted (required).")],
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Waive the failed latest result of GATE on a version (approver; audited; policy may forbid it)."""
    w = open_registry().waive(name, version, gate, reason=reason, actor=actor)
    if json_out:
        emit_json({"model": name, "version": version, **w.model_dump(mode="json")})
    else:
        console.print(f"{name}/{version}: gate {w.gate} waived by {w.actor}: {w.reason}", markup=False)


@app.command()
def reject(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    stage: Annotated[str, typer.Option("--stage", help="Target stage of the decision.")] = "production",
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reject a version; a staged version goes back to development."""
    a = open_registry().reject(name, version, reason=reason, actor=actor, stage=stage)
    resumed = _resume_waiting(name, version, approve=False, actor=a.actor, reason=reason)
    if json_out:
        emit_json(
            {"model": name, "version": version, **a.model_dump(mode="json"), "resumed_flow_run": resumed}
        )
    else:
        console.print(f"{name}/{version} rejected by {a.actor}: {reason}")


def _resume_waiting(name: str, version: int, *, approve: bool, actor: str, reason: str | None) -> str | None:
    """Resume a retrain run waiting on this version, when the flows are installed.

    With no Prefect API configured, warn when the registry says a run waits on this version:
    the decision is recorded, and the run sees it when it is resumed, times out or is reconciled.
    """
    try:
        from flows.approval import resume_waiting_run
    except ImportError:
        return None
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        _warn_unreachable_run(name, version)
        return None
    return resume_waiting_run(name, version, approve=approve, approver=actor, reason=reason)


def _warn_unreachable_run(name: str, version: int) -> None:
    from registry import waiting

    reg = open_registry()
    try:
        wait = waiting.current_wait(reg, reg.get_version(name, version))
    finally:
        reg.close()
    if wait is None or not wait.run_id:
        return
    deadline = f"{wait.deadline:%Y-%m-%d %H:%M} UTC"
    if wait.orchestrator != "prefect":
        text = (
            f"note: {wait.orchestrator} run {wait.run_id} waits for a decision on {name}/{version}. The "
            "decision is recorded in the registry; the run honours it when its approval task is answered "
            f"or times out, and `govflow reconcile {name}` settles the version after {deadline}."
        )
    else:
        # reconcile resumes a paused run the registry decided, as soon as it can reach Prefect.
        text = (
            f"warning: run {wait.run_id} waits for a decision on {name}/{version}, but PREFECT_API_URL is "
            "not set, so it was not resumed. The decision is recorded in the registry. To resume the run "
            f"now: `PREFECT_API_URL=<the run's Prefect API> govflow reconcile {name}` (`govflow run` "
            "prints that address when it starts a temporary server). Otherwise the run sees the decision "
            f"when it is resumed, and `govflow reconcile {name}` settles the version after {deadline}."
        )
    err_console.print(text, soft_wrap=True, markup=False, highlight=False)
