"""The monitor flow on the real Prefect test server, reading the config's monitor.source.

The example config is copied into a temp folder (never the repo tree): its data is written on
first use, v1 is trained and approved through the pause form, and the monitor then reads the
newest daily file without being given a data path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from checks.drift_reference import DriftReference
from flows.demo_data import make_period
from flows.monitor import monitor
from flows.retrain import retrain
from registry import Policy, Registry
from registry.errors import InvalidInput
from tests.fixtures.prefect import in_background, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "flows" / "examples" / "credit-risk.yaml"


@pytest.fixture
def example(prefect_api: str, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the example config in a temp folder, on a fresh SQLite registry."""
    monkeypatch.setenv("GOVFLOW_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("GOVFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("GOVFLOW_ACTOR", "ml-pipeline")
    monkeypatch.setenv("GOVFLOW_CARDS", str(tmp_path / "cards"))
    monkeypatch.delenv("GOVFLOW_POLICY", raising=False)
    config = yaml.safe_load(EXAMPLE.read_text())
    config["approval_poll"] = 1
    (tmp_path / "example").mkdir()
    path = tmp_path / "example" / "credit-risk.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.chdir(tmp_path / "example")
    return path


def _promote_v1(config: str) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.approval import paused_runs

    def approve() -> None:
        run = wait_for(lambda: paused_runs("credit-risk", 1), timeout=90, what="pause")[0]
        resume_flow_run(run.id, run_input={"approve": True, "approver": "risk-officer", "reason": "ok"})

    bot = in_background(approve)
    assert retrain(config)["outcome"] == "promoted"
    bot.join(10)
    assert not bot.errors, bot.errors


def _drift_events(since: datetime) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    flt = EventFilter(
        event=EventNameFilter(name=["govflow.model.drift-detected"]),
        occurred=EventOccurredFilter(since=since),
    )
    with get_client(sync_client=True) as client:
        return list(client.read_events(filter=flt, limit=10).events)


def test_monitor_reads_the_config_source_and_names_its_state(example: Path) -> None:
    config = "credit-risk.yaml"  # relative, as a deployment parameter would give it
    data = example.parent / "data"

    state = monitor(config, return_state=True)
    assert state.name == "NoProduction" and state.result()["outcome"] == "no-production"
    assert not (data / "recent").exists()  # nothing to monitor: no data was read or written

    _promote_v1(config)  # the retrain wrote the example data on first use
    today = data / "recent" / f"{datetime.now(UTC).date().isoformat()}.csv"
    assert today.is_file() and (data / "base_train.csv").is_file()

    state = monitor(config, return_state=True)
    result = state.result()
    assert (state.name, result["outcome"]) in (("DriftOk", "ok"), ("DriftWarn", "warn"))
    assert result["data"] == f"file://{today}" and result["version"] == 1

    # A newer day arrives with a changed population: the newest file is the one read.
    drifted = data / "recent" / "9999-12-31.csv"
    make_period(1000, 7, shift=0.08, drift=True).to_csv(drifted, index=False)
    since = datetime.now(UTC)
    state = monitor(config, return_state=True)
    result = state.result()
    assert (state.name, result["outcome"]) == ("DriftAct", "act")
    assert result["data"] == f"file://{drifted}"

    reg = Registry(policy=Policy())
    drift = [e for e in reg.get_version("credit-risk", 1).evidence if e.gate == "monitor.drift"]
    assert [e.details["data"] for e in drift] == [f"file://{today}", f"file://{drifted}"]
    assert drift[-1].details["data_files"] == [f"file://{drifted}"] and drift[-1].details["rows"] == 1000
    reg.close()

    event = wait_for(lambda: _drift_events(since), timeout=30, what="the drift-detected event")[0]
    assert event.payload["config_path"] == config  # as given, for the rollback trigger to template
    assert (event.payload["version"], event.payload["data"]) == (1, f"file://{drifted}")

    # An explicit data path still wins over the source.
    state = monitor(config, str(today), return_state=True)
    assert state.name in ("DriftOk", "DriftWarn") and state.result()["data"] == f"file://{today}"


def test_monitor_without_data_or_source_is_refused_in_one_line(example: Path) -> None:
    config = yaml.safe_load(example.read_text())
    del config["monitor"]
    bare = example.with_name("bare.yaml")
    bare.write_text(yaml.safe_dump(config))
    state = monitor(str(bare), return_state=True)
    assert state.is_failed() and state.name == "Failed"
    assert state.message.startswith("monitor.source: no data to monitor") and "\n" not in state.message
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, InvalidInput) and exc.field == "monitor.source"
    with pytest.raises(InvalidInput, match="monitor.source"):
        monitor(str(bare))


def test_a_source_that_matches_nothing_fails_the_run_naming_the_field(example: Path) -> None:
    config = yaml.safe_load(example.read_text())
    config["monitor"]["source"] = {"path": "data/none/*.parquet"}
    del config["data"]["example"]  # nothing is written on first use
    odd = example.with_name("odd.yaml")
    odd.write_text(yaml.safe_dump(config))
    # A production version with a drift reference, put there through the registry directly.
    reg = Registry(policy=Policy())
    blob = example.parent / "m.bin"
    blob.write_bytes(b"model")
    reference = DriftReference.fit(make_period(500, 1)[["age", "income"]]).model_dump(mode="json")
    reg.register("credit-risk", blob, actor="ml-pipeline", drift_reference=reference)
    reg.transition("credit-risk", 1, "staging", actor="ml-pipeline")
    reg.approve("credit-risk", 1, actor="risk-officer")
    reg.transition("credit-risk", 1, "production", actor="risk-officer")
    reg.close()
    state = monitor(str(odd), return_state=True)
    where = f"file://{example.parent}/data/none/*.parquet"
    assert state.is_failed() and state.message == f"monitor.source.path: no file matches {where}"
    assert not (example.parent / "data").exists()
