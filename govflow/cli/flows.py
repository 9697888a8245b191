"""Running the Prefect flows directly: ``govflow run retrain|monitor|rollback``.

The exit status says how the run ended (``flows.outcomes``): 0 promoted / drift ok or warn /
rolled back, 3 gates failed, rejected, timed out or rollback skipped, 4 drift calls for action,
2 refused input (one ``error:`` line, never an engine traceback).
"""

from __future__ import annotations

import inspect
import logging
import os
import tomllib
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer

from govflow.cli import app
from govflow.cli.common import console, emit_json, err_console
from registry.errors import FlowError, GovflowError, InvalidInput

# --- quiet Prefect ------------------------------------------------------------------------------
# Set before Prefect is imported (it reads them at import), and only where the user set nothing.

STARTUP_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
STARTUP_ENV = "GOVFLOW_PREFECT_STARTUP_TIMEOUT"
STARTUP_DEFAULT = "120"  # Prefect's 20 s is not enough on a loaded 2-core machine

QUIET_DEFAULTS = {
    # The temporary server's telemetry heartbeat ("database is locked" on TELEMETRY_SESSION).
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    # Prefect's own loggers at WARNING; the flow run's logger (approve command, UI URL) at INFO.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL": "INFO",
}


def _profile_settings(environ: MutableMapping[str, str]) -> set[str]:
    """Setting names the active Prefect profile sets (a profile counts as the user's choice)."""
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    name = environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = data.get("profiles", {}).get(name, {})
    return {key.upper() for key in profile} if isinstance(profile, dict) else set()


def quiet_prefect(environ: MutableMapping[str, str] = os.environ) -> None:
    """Default Prefect to quiet CLI runs and a generous temporary-server startup timeout.

    A value already in the environment or the active Prefect profile is left alone.
    ``GOVFLOW_PREFECT_STARTUP_TIMEOUT`` is the govflow spelling of the startup timeout.
    """
    chosen = _profile_settings(environ)
    for key, value in QUIET_DEFAULTS.items():
        if key not in environ and key not in chosen:
            environ[key] = value
    if STARTUP_SETTING not in environ and (STARTUP_SETTING not in chosen or STARTUP_ENV in environ):
        # A bad value is refused by the run commands (_startup_seconds), not handed to Prefect.
        given = environ.get(STARTUP_ENV, "").strip()
        environ[STARTUP_SETTING] = given if given.isdigit() and int(given) > 0 else STARTUP_DEFAULT
    # Queue-drain warnings at exit from this non-Prefect-named logger ("Still processing items").
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)


quiet_prefect()


class _OneLineRefusals(logging.Filter):
    """Drop the engine's traceback for a govflow refusal and its final-state line: the CLI prints both."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, GovflowError):
            return False
        # Great Expectations sets its own loggers to INFO at import (temporary docs folders).
        if record.name.startswith("great_expectations") and record.levelno < logging.WARNING:
            return False
        return not (record.name == "prefect.flow_runs" and str(record.msg).startswith("Finished in state"))


# --- running a flow -----------------------------------------------------------------------------

run_app = typer.Typer(
    help="Run a govflow flow in this process (needs a Prefect API or starts a temporary one).",
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")

ConfigOpt = Annotated[Path, typer.Option("--config", help="Pipeline config (YAML).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the flow's result (and final state) as JSON.")]


def _startup_seconds() -> int:
    """The temporary server's startup timeout; refuses a value that is not whole seconds > 0."""
    seconds = 0
    for name in (STARTUP_ENV, STARTUP_SETTING):
        value = os.environ.get(name)
        if value is None:
            continue
        if not value.strip().isdigit() or int(value) <= 0:
            raise InvalidInput(f"{name}: {value[:40]!r} is not a whole number of seconds above 0", field=name)
        seconds = int(value)  # the Prefect setting, when set, is the one Prefect reads
    return seconds or int(STARTUP_DEFAULT)


def _load(path: Path) -> Any:
    """Validate the settings and config before a flow starts, so bad input is one line, not a flow run."""
    _startup_seconds()
    from flows.config import PipelineConfig

    if not path.is_file():
        raise InvalidInput(f"--config: {path} is not a readable file", field="config")
    return PipelineConfig.load(path)


def _check_training_data(config: Any) -> None:
    """Refuse a missing data file up front, unless the config's example data set will write it."""
    if getattr(config.data, "example", None):
        return
    for field in ("train", "eval", "path", "reference"):
        given = getattr(config.data, field, None)
        path = config.resolve(given) if given else None
        if path is not None and "://" not in str(given) and not path.is_file():
            raise InvalidInput(f"config data.{field}: {path} is not a readable file", field=f"data.{field}")


def _temporary_server(announce: bool) -> None:
    """With no PREFECT_API_URL, start Prefect's temporary server now (the one its client reuses).

    Started here, a server that does not come up is one line naming the setting that raises the
    timeout, and a run that waits can say where another terminal reaches it to approve.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    timeout = int(os.environ.get(STARTUP_SETTING, STARTUP_DEFAULT))
    server = SubprocessASGIServer()
    try:
        server.start(timeout=timeout)
    except RuntimeError:
        raise FlowError(
            f"the temporary Prefect server did not start within {timeout} s; raise {STARTUP_SETTING} "
            f"(or {STARTUP_ENV}), or point PREFECT_API_URL at a running server",
            reason="prefect server",
        ) from None
    if announce:
        err_console.print(
            f"temporary Prefect server for this run: {server.api_url} "
            f"(to approve from another terminal, set PREFECT_API_URL={server.api_url} there)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _call(flow_fn: Callable[..., Any], *args: Any, announce: bool = False) -> Any:
    """Run the flow for its final state; a refusal is raised as itself, a dead server as one line."""
    _temporary_server(announce)
    handlers = logging.getLogger().handlers
    quiet = _OneLineRefusals()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        state = flow_fn(*args, return_state=True)
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result  # a GovflowError exits 2 with one line; anything else is a bug, shown in full
    if not isinstance(result, dict):
        raise FlowError(f"the flow run ended {state.name} without a result", reason="no result")
    return state, result


def _finish(state: Any, result: dict[str, Any], json_out: bool) -> None:
    from flows.outcomes import OUTCOMES, exit_code

    if json_out:
        emit_json({**result, "state": state.name})
    else:
        console.print(f"state: {state.name}")
        for key, value in result.items():
            console.print(f"{key}: {value}")
    outcome = result.get("outcome")
    if outcome not in OUTCOMES:  # every flow names its outcome; anything else is a bug, not bad input
        err_console.print(f"error: the run ended {state.name} with unknown outcome {outcome!r}", markup=False)
        raise typer.Exit(1)
    raise typer.Exit(exit_code(outcome))


@run_app.command("retrain")
def run_retrain(config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Train, gate and register a version, then wait for approval (Prefect UI or `govflow approve`)."""
    loaded = _load(config)
    _check_training_data(loaded)
    from flows.retrain import retrain

    _finish(*_call(retrain, str(config), announce=True), json_out)


@run_app.command("monitor")
def run_monitor(
    config: ConfigOpt,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="New data to compare; default the config's monitor.source."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check new data for drift against the production version's reference."""
    loaded = _load(config)
    from flows.monitor import monitor

    if data is not None:
        if not data.is_file():
            raise InvalidInput(f"--data: {data} is not a readable file", field="data")
        _finish(*_call(monitor, str(config), str(data.resolve())), json_out)
        return
    takes_source = (
        inspect.signature(monitor.fn).parameters["data_path"].default is not inspect.Parameter.empty
    )
    if not takes_source or getattr(getattr(loaded, "monitor", None), "source", None) is None:
        raise InvalidInput("--data: required when the config has no monitor.source", field="data")
    _finish(*_call(monitor, str(config)), json_out)


@run_app.command("rollback")
def run_rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Pipeline config, for the deploy target.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Roll back to the last approved version and deploy it."""
    _startup_seconds()
    loaded = _load(config) if config else None
    from flows.rollback import rollback
    from flows.steps import open_registry
    from registry import Registry

    reg = open_registry(loaded) if loaded else Registry()
    try:
        reg.resolve(f"{model}@production")  # unknown model or nothing live: one line, exit 2
    finally:
        reg.close()
    _finish(*_call(rollback, model, reason, str(config) if config else None), json_out)
