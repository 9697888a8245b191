"""The rollback flow on a real Prefect server: named outcomes, one rollback per drift episode."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest

from checks.drift import DriftReference, drift_gate
from flows.rollback import rollback
from registry import Registry, Stage
from registry.episodes import IGNORED, SKIPPED
from registry.errors import RollbackRefused
from tests.fixtures.prefect import wait_for
from tests.flows.conftest import Pipeline, with_config

MODEL = "credit-risk"
DRIFT = "drift detected: max PSI 0.9"


def _line(reg: Registry, pipeline: Pipeline, n: int, name: str = MODEL) -> None:
    """n versions of ``name`` promoted in turn, each with the training data's drift reference."""
    train = pd.read_csv(_train_path(pipeline))
    reference = DriftReference.fit(train.drop(columns=["default"])).model_dump(mode="json")
    for i in range(n):
        blob = pipeline.folder / f"{name}-{i}.bin"
        blob.write_bytes(f"{name} model {i}".encode())
        v = reg.register(name, blob, actor="alice", drift_reference=reference).version
        reg.transition(name, v, "staging", actor="alice")
        reg.approve(name, v, actor="risk-officer")
        reg.transition(name, v, "production", actor="risk-officer")


def _train_path(pipeline: Pipeline) -> Path:
    import yaml

    return Path(yaml.safe_load(pipeline.base.read_text())["data"]["train"])


def _run_state(state):
    """The run's final state as the server holds it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).state


def _manifest_version(pipeline: Pipeline) -> int:
    return json.loads((pipeline.folder / "releases" / "release.json").read_text())["version"]


def test_each_outcome_is_a_named_completed_state(pipeline: Pipeline) -> None:
    reg = pipeline.registry()
    _line(reg, pipeline, 3)
    config = str(pipeline.base)
    rolled = rollback(MODEL, DRIFT, config, 3, return_state=True)
    assert rolled.name == "RolledBack" and rolled.is_completed()
    out = rolled.result()
    assert (out["outcome"], out["demoted"], out["restored"]) == ("rolled-back", 3, 2)
    assert out["deployed"]["target"] == "manifest" and _manifest_version(pipeline) == 2

    again = rollback(MODEL, DRIFT, config, 2, return_state=True)
    assert again.name == "Ignored" and again.is_completed()
    assert "episode already handled at" in again.message and "deployed" not in again.result()
    stale = rollback(MODEL, DRIFT, config, 3, return_state=True)
    assert stale.name == "Ignored" and "not in production (version 2 is)" in stale.message
    assert reg.audit_log(model=MODEL)[-1].action == IGNORED

    solo = with_config(pipeline.base, model_name="solo")
    _line(reg, pipeline, 1, name="solo")
    skipped = rollback("solo", DRIFT, str(solo), 1, return_state=True)
    assert skipped.name == "RollbackSkipped" and skipped.is_completed()
    assert skipped.result()["outcome"] == "skipped" and reg.audit_log(model="solo")[-1].action == SKIPPED
    for state in (rolled, again, stale, skipped):
        server = _run_state(state)
        assert server.name == state.name and not server.is_failed()
    assert reg.resolve(f"{MODEL}@production").version == 2 and reg.resolve("solo@production").version == 1
    reg.close()


def test_refusals_are_one_line_failures_not_tracebacks(pipeline: Pipeline) -> None:
    reg = pipeline.registry()
    _line(reg, pipeline, 1)
    manual = rollback(MODEL, "operator asked", return_state=True)  # no expected_version: manual
    assert manual.is_failed() and "\n" not in manual.message
    assert "no earlier production version may be restored" in manual.message
    with pytest.raises(RollbackRefused):
        rollback(MODEL, "operator asked")
    spoofed = rollback(MODEL, DRIFT, "", 7, return_state=True)  # "" config: a trigger's missing field
    assert spoofed.is_failed() and "7" in spoofed.message
    assert reg.resolve(f"{MODEL}@production").version == 1
    assert not any(e.action in (IGNORED, SKIPPED) for e in reg.audit_log(model=MODEL))
    reg.close()


def test_hourly_drift_on_still_drifted_data_rolls_back_once(pipeline: Pipeline) -> None:
    reg = pipeline.registry()
    _line(reg, pipeline, 3)
    drifted = pd.read_csv(pipeline.drifted)
    names = []
    for _hour in range(3):
        live = reg.get(f"{MODEL}@production")  # what the monitor measures each hour
        gate = drift_gate(live.drift_reference, drifted)
        assert gate.details["verdict"] == "act", gate.message  # still drifted, every hour
        state = rollback(
            MODEL,
            f"drift on {live.version}: {gate.message}",
            str(pipeline.base),
            live.version,
            return_state=True,
        )
        names.append(state.name)
        assert not _run_state(state).is_failed()
    assert names == ["RolledBack", "Ignored", "Ignored"]
    assert [e.action for e in reg.audit_log(model=MODEL)].count("model.rolled_back") == 1
    assert reg.resolve(f"{MODEL}@production").version == 2
    assert reg.get_version(MODEL, 1).stage == Stage.ARCHIVED
    reg.close()


def _events(api: str, name: str, run_id: str) -> list[dict]:
    body = {
        "filter": {
            "event": {"name": [f"govflow.model.{name}"]},
            "related": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 10,
    }
    reply = httpx.post(f"{api}/events/filter", json=body, timeout=10)
    reply.raise_for_status()
    return reply.json()["events"]


def test_rollback_skipped_reaches_the_server_with_config_path(pipeline: Pipeline, prefect_api: str) -> None:
    reg = pipeline.registry()
    _line(reg, pipeline, 1)
    state = rollback(MODEL, DRIFT, str(pipeline.base), 1, return_state=True)
    assert state.name == "RollbackSkipped"
    run_id = str(state.state_details.flow_run_id)
    found = wait_for(lambda: _events(prefect_api, "rollback-skipped", run_id), timeout=30, what="the event")
    event = found[0]
    assert event["resource"]["prefect.resource.id"] == f"govflow.model.{MODEL}"
    payload = event["payload"]
    assert payload["config_path"] == str(pipeline.base)  # the retrain trigger templates this
    assert payload["version"] == 1 and payload["model"] == MODEL
    assert payload["reason"].startswith(f"drift on {MODEL}/1: nothing approved to restore")
    # The next hour's event in the same episode is ignored, and says so on the server.
    later = rollback(MODEL, DRIFT, "", 1, return_state=True)
    assert later.name == "Ignored"
    seen = wait_for(
        lambda: _events(prefect_api, "drift-ignored", str(later.state_details.flow_run_id)),
        timeout=30,
        what="it",
    )
    assert seen[0]["payload"]["production"] == 1 and "rollback skipped" in seen[0]["payload"]["reason"]
    assert _events(prefect_api, "rollback-skipped", str(later.state_details.flow_run_id)) == []
    reg.close()
