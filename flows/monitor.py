"""monitor: the production version's drift reference against new data, plus performance when labelled."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from flows import events
from flows.artifacts import publish_drift
from flows.config import PipelineConfig
from flows.outcomes import finish, refused
from flows.steps import open_registry
from flows.watch import check
from registry import Registry
from registry.errors import GovflowError, InvalidInput


@flow(name="monitor", log_prints=True)
def monitor(config_path: str, data_path: str | None = None) -> State:
    """Run the drift gate on ``data_path``, else on the config's ``monitor.source``.

    Ends in a state named after the verdict (DriftOk, DriftWarn, DriftAct, NoProduction); above
    the act threshold it emits ``drift-detected``. Refused (a Failed run, one line) when neither
    a data path nor ``monitor.source`` is given, or when the data cannot be read.
    """
    log = get_run_logger()
    try:
        return finish(_check(config_path, data_path, log))
    except GovflowError as exc:
        log.error("monitor refused: %s", " ".join(str(exc).split()))
        return refused(exc)


def _check(config_path: str, data_path: str | None, log: Any) -> dict[str, Any]:
    config = PipelineConfig.load(config_path)
    if data_path is None and config.monitor.source is None:
        raise InvalidInput(
            "monitor.source: no data to monitor: give a data path or set monitor.source in the config",
            field="monitor.source",
        )
    reg = open_registry(config)
    try:
        return _run(reg, config, config_path, data_path, log)
    finally:
        reg.close()


def _run(
    reg: Registry, config: PipelineConfig, config_path: str, data_path: str | None, log: Any
) -> dict[str, Any]:
    out, drift = check(reg, config, data_path, log)
    if drift is None:
        return out
    publish_drift(out["model"], out["version"], drift)
    if out["verdict"] == "act":
        events.emit(
            "drift-detected",
            out["model"],
            out["version"],
            reg.whoami(),
            psi=out["psi"],
            drifted_features=out["drifted_features"],
            missing_inputs=out["missing_inputs"],
            verdict=out["verdict"],
            data=out["data"],
            config_path=config_path,
        )
    return out
