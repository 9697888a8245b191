"""How a govflow flow run ends: a named final state, an outcome artifact, and the CLI's exit code.

Every flow returns ``finish(...)`` or ``refused(...)``, so the Prefect UI shows *what happened*
(``Promoted``, ``GatesFailed``…) instead of a green "Completed" for every outcome, and a user
error is a Failed run with a one-line message rather than an engine traceback.
"""

from __future__ import annotations

from typing import Any

from prefect.states import Completed, Failed, State

from registry.errors import GovflowError

# outcome -> (state name, `govflow run` exit code)
OUTCOMES: dict[str, tuple[str, int]] = {
    # retrain
    "promoted": ("Promoted", 0),
    "gates-failed": ("GatesFailed", 3),
    "rejected": ("Rejected", 3),
    "timed-out": ("TimedOut", 3),
    # monitor
    "ok": ("DriftOk", 0),
    "warn": ("DriftWarn", 0),
    "act": ("DriftAct", 4),
    "no-production": ("NoProduction", 0),
    # rollback
    "rolled-back": ("RolledBack", 0),
    "ignored": ("Ignored", 0),
    "skipped": ("RollbackSkipped", 3),
    # reconcile
    "reconciled": ("Reconciled", 0),
}
REFUSED_EXIT = 2


def state_name(outcome: str) -> str:
    """The final state's name for ``outcome``."""
    return OUTCOMES[outcome][0]


def exit_code(outcome: str) -> int:
    """The ``govflow run`` exit status for ``outcome``."""
    return OUTCOMES[outcome][1]


def finish(result: dict[str, Any], message: str | None = None) -> State:
    """A Completed state named after ``result["outcome"]``, carrying ``result``."""
    outcome = result["outcome"]
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return Completed(name=state_name(outcome), message=message or result.get("reason") or outcome, data=result)


def refused(exc: GovflowError) -> State:
    """A Failed state whose message is the refusal's one line (no traceback in the run's log)."""
    # Carrying the exception itself: calling the flow directly raises it again, class and fields intact.
    return Failed(message=" ".join(str(exc).split()), data=exc)
