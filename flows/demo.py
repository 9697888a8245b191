"""``make demo``: the governed loop end to end on embedded defaults.

SQLite, local artifacts and a temporary Prefect server. v1 is trained, gated, paused for approval
and approved by a second identity through the pause form; v2 is trained on a later period and
approved from the terminal (`govflow approve`, which resumes the pause); monitoring on a drifted
period emits ``drift-detected``, and the rollback flow runs with the parameters the trigger in
prefect.yaml would template from that event. Prints the versions, the audit trail and its
verification.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from registry.reports.evidence_pack import build_pack
from registry.reports.render import write_pack

WORK = Path(os.environ.get("GOVFLOW_DEMO_DIR", ".govflow/demo")).resolve()
PIPELINE_ACTOR = "ml-pipeline"
APPROVER = "risk-officer"
EXAMPLE = Path(__file__).resolve().parent / "examples" / "credit-risk.yaml"

console = Console(width=130)


def _environment() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    os.environ.update(
        GOVFLOW_REGISTRY_URL=f"sqlite:///{WORK / 'registry.db'}",
        GOVFLOW_ARTIFACT_ROOT=str(WORK / "artifacts"),
        GOVFLOW_ACTOR=PIPELINE_ACTOR,
        GOVFLOW_CARDS=str(WORK / "cards"),
        PREFECT_HOME=str(WORK / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    for var in ("GOVFLOW_POLICY", "PREFECT_API_URL"):
        os.environ.pop(var, None)


def _configs() -> dict[str, Path]:
    from flows.demo_data import write_demo_data

    data = write_demo_data(WORK / "data")
    base = yaml.safe_load(EXAMPLE.read_text())
    out = {}
    for period in ("base", "later"):
        cfg = dict(base, data={"train": str(data[f"{period}_train"]), "eval": str(data[f"{period}_eval"])})
        cfg["deploy"] = {"kind": "manifest", "path": str(WORK / "releases" / "credit-risk.json")}
        out[period] = WORK / f"{period}.yaml"
        out[period].write_text(yaml.safe_dump(cfg, sort_keys=False))
    out["drifted"] = data["drifted"]
    return out


def _when_paused(version: int, act: Callable[[str], None]) -> threading.Thread:
    """In the background, wait for the retrain run to pause on ``version`` and then ``act``."""
    from flows.approval import paused_runs

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = paused_runs("credit-risk", version)
            if runs:
                act(str(runs[0].id))
                return
            time.sleep(0.5)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _approve_in_form(run_id: str) -> None:
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(
        run_id, run_input={"approve": True, "approver": APPROVER, "reason": "gates green, card reviewed"}
    )
    console.print(
        f"  [green]resumed paused run {run_id[:8]} through its approval form as {APPROVER}: approve[/]"
    )


def _approve_from_terminal(run_id: str) -> None:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), GOVFLOW_ACTOR=APPROVER)
    cmd = [
        sys.executable,
        "-m",
        "govflow",
        "approve",
        "credit-risk",
        "2",
        "--reason",
        "better on the later period",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    console.print(f"  $ GOVFLOW_ACTOR={APPROVER} govflow approve credit-risk 2 --reason '…'")
    for line in (out.stdout + out.stderr).strip().splitlines():
        console.print(f"    {line}")


def _story(paths: dict[str, Path]) -> int:
    from flows.monitor import monitor
    from flows.outcomes import state_name
    from flows.retrain import retrain
    from flows.rollback import rollback
    from registry import Registry

    console.rule("1. retrain v1 on the base period: gates, then pause for approval")
    watcher = _when_paused(1, _approve_in_form)
    r1 = retrain(str(paths["base"]))
    watcher.join(timeout=5)
    console.print(
        f"  v{r1['version']}: {state_name(r1['outcome'])} (approver {r1.get('approver')}), metrics {r1['metrics']}"
    )
    console.rule("2. v1 deployed")
    console.print(f"  release manifest: {r1.get('deployed', {}).get('location')}")

    console.rule("3. retrain v2 on the later period, approved from the terminal")
    watcher = _when_paused(2, _approve_from_terminal)
    r2 = retrain(str(paths["later"]))
    watcher.join(timeout=5)
    console.print(
        f"  v{r2['version']}: {state_name(r2['outcome'])} (approver {r2.get('approver')}), deployed to "
        f"{r2.get('deployed', {}).get('location')}"
    )

    console.rule("4. monitor the drifted period; drift-detected triggers rollback, once per episode")
    m = monitor(str(paths["later"]), str(paths["drifted"]))
    console.print(f"  monitor v{m['version']}: {m['verdict']} — {m['message']}")
    if m["verdict"] == "act":
        # The same parameters the prefect.yaml trigger templates from the drift-detected event.
        reason = f"drift detected on version {m['version']}: max PSI {m['psi']:.3f}"
        console.print(
            "  govflow.model.drift-detected emitted; running the rollback flow with the trigger's parameters"
        )
        rb = rollback("credit-risk", reason, str(paths["later"]), expected_version=m["version"])
        console.print(
            f"  {state_name(rb['outcome'])}: v{rb['demoted']} -> v{rb['restored']}; "
            f"redeployed {rb['deployed']['location']}"
        )
        # An hour later the data is still drifted: the restored version is in the same episode.
        again = monitor(str(paths["later"]), str(paths["drifted"]))
        if again["verdict"] == "act":
            rb2 = rollback(
                "credit-risk",
                f"drift detected on version {again['version']}",
                expected_version=again["version"],
            )
            console.print(
                f"  next monitor run, v{again['version']} still drifted: {state_name(rb2['outcome'])} — {rb2['reason']}"
            )

    console.rule("5. the record")
    reg = Registry()
    table = Table(title="credit-risk versions")
    for col in ("version", "stage", "registered by", "approved by", "roc_auc", "rolled back"):
        table.add_column(col)
    for v in reg.versions("credit-risk"):
        approvers = ", ".join(
            a.actor
            for a in reg.get_version("credit-risk", v.version).approvals
            if a.decision.value == "approve"
        )
        table.add_row(
            str(v.version),
            v.stage.value,
            v.registered_by,
            approvers or "-",
            f"{v.metrics.get('roc_auc', float('nan')):.3f}",
            v.rollback_reason or "",
        )
    console.print(table)
    trail = Table(title="audit trail")
    for col in ("seq", "actor", "action", "version", "hash"):
        trail.add_column(col)
    for e in reg.audit_log(model="credit-risk"):
        trail.add_row(str(e.seq), e.actor, e.action, str(e.version or "-"), e.hash[:12])
    console.print(trail)
    report = reg.verify_audit()
    live = reg.resolve("credit-risk@production")
    console.print(
        f"audit verify: {'OK' if report.ok else 'BROKEN at seq ' + str(report.first_bad_seq)} "
        f"({report.events} events)"
    )
    console.print(f"production: credit-risk v{live.version}")
    console.print(f"model card: {r1['card']}")
    pack = write_pack(build_pack(reg, "credit-risk/1"), WORK / "evidence", "html")
    console.print(f"evidence pack: {pack}")
    reg.close()
    return 0 if report.ok else 1


def main() -> int:
    """Run the demo; exit status 0 when the story ends with an intact audit chain."""
    start = time.perf_counter()
    _environment()
    paths = _configs()
    console.print(f"govflow demo in {WORK} (SQLite, local artifacts, temporary Prefect server)")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # The demo's flows run in this process and end with it: heartbeats would only add ~1 s per flow.
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        status = _story(paths)
    console.print(f"demo finished in {time.perf_counter() - start:.1f} s")
    # The line to paste so that govflow commands in this shell read the demo's registry.
    env_line = " ".join(
        f"{var}={shlex.quote(os.environ[var])}" for var in ("GOVFLOW_REGISTRY_URL", "GOVFLOW_ARTIFACT_ROOT")
    )
    print(f"explore it with the CLI (e.g. govflow audit log) after:\n  export {env_line}")
    return status


if __name__ == "__main__":
    sys.exit(main())
