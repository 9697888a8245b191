"""monitor on real data, approval from the terminal, and `make demo` itself."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from flows.monitor import monitor
from flows.retrain import retrain
from registry import Stage
from tests.fixtures.prefect import in_background, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _promote_v1(pipeline) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.approval import paused_runs

    def approve() -> None:
        run = wait_for(lambda: paused_runs("credit-risk", 1), timeout=90, what="pause")[0]
        resume_flow_run(run.id, run_input={"approve": True, "approver": "risk-officer", "reason": "ok"})

    bot = in_background(approve)
    assert retrain(str(pipeline.base))["outcome"] == "promoted"
    bot.join(5)


def test_monitor_flags_drift_and_ignores_stable_data(pipeline) -> None:
    _promote_v1(pipeline)
    stable = monitor(str(pipeline.base), str(pipeline.stable))
    assert stable["verdict"] in ("ok", "warn") and stable["version"] == 1
    drifted = monitor(str(pipeline.base), str(pipeline.drifted))
    assert drifted["verdict"] == "act" and drifted["psi"] > 0.25
    assert "roc_auc" in str(drifted["performance"])  # labels present: performance measured too
    reg = pipeline.registry()
    gates = [e.gate for e in reg.get_version("credit-risk", 1).evidence]
    assert gates.count("monitor.drift") == 2


def test_cli_approve_resumes_the_paused_run(pipeline) -> None:
    def approve_from_terminal() -> None:
        from flows.approval import paused_runs

        wait_for(lambda: paused_runs("credit-risk", 1), timeout=90, what="pause")
        env = dict(os.environ, GOVFLOW_ACTOR="risk-officer")
        out = subprocess.run(
            [sys.executable, "-m", "govflow", "approve", "credit-risk", "1", "--reason", "fine", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert '"resumed_flow_run": "' in out.stdout

    bot = in_background(approve_from_terminal)
    result = retrain(str(pipeline.base))
    bot.join(10)
    assert not bot.errors, bot.errors
    assert (result["outcome"], result["approver"]) == ("promoted", "risk-officer")
    v = pipeline.registry().get_version("credit-risk", 1)
    assert v.stage == Stage.PRODUCTION and [a.actor for a in v.approvals] == ["risk-officer"]


def test_make_demo_tells_the_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "GOVFLOW_"))}
    env.update(GOVFLOW_DEMO_DIR=str(tmp_path / "demo"), COLUMNS="130")
    proc = subprocess.run(["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "resumed paused run" in out and "resumed paused flow run" in out
    assert re.search(r"RolledBack: v2 -> v1", out)
    assert re.search(r"v1 still drifted: Ignored", out)  # once per episode
    assert re.search(r"audit verify: OK \(\d+ events\)", out)
    assert "production: credit-risk v1" in out
    card = re.search(r"model card: (\S+)", out)
    assert card and Path(card.group(1)).read_text().startswith("# Model card: credit-risk v1")
    pack = re.search(r"evidence pack: (\S+)", out)
    assert (
        pack
        and 'id="decisions"' in Path(pack.group(1)).read_text()
        and "risk-officer" in Path(pack.group(1)).read_text()
    )
    # The printed export line points the CLI at the demo's registry: pasted, it shows v1 live.
    exported = re.search(r"^  export (GOVFLOW_REGISTRY_URL=.*)$", out, re.MULTILINE)
    assert exported, out[-2000:]
    pairs = dict(item.split("=", 1) for item in shlex.split(exported.group(1)))
    assert set(pairs) == {"GOVFLOW_REGISTRY_URL", "GOVFLOW_ARTIFACT_ROOT"}
    assert pairs["GOVFLOW_REGISTRY_URL"] == f"sqlite:///{tmp_path / 'demo' / 'registry.db'}"
    show = subprocess.run(
        [sys.executable, "-m", "govflow", "show", "credit-risk@production", "--json"],
        env={**env, **pairs},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert show.returncode == 0 and json.loads(show.stdout)["version"] == 1, show.stderr
