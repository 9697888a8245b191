"""The approve and reject commands a waiting run prints: ready to paste into the shell it runs in.

The shell that started the run holds the run's own identity (``GOVFLOW_ACTOR`` or the pipeline's
token), so a bare ``govflow approve`` pasted there would be refused as the registrant approving
its own version. The hint therefore names an approver (``--actor`` embedded, an approver's token
behind a server), and prefixes what that shell lacks to reach the same registry and the same
Prefect API: a config's ``registry_url``, or the temporary Prefect server of ``govflow run``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from registry.config import Settings
from registry.entities import ModelVersion
from registry.stages import Stage
from registry.validate import same_actor

NAME_PLACEHOLDER = "YOUR-NAME"
TOKEN_PLACEHOLDER = "YOUR-APPROVER-TOKEN-FILE"


@dataclass(frozen=True)
class Shell:
    """What the run knows about where it runs and what the shell it came from would reach."""

    embedded: bool  # the flow names actors itself (no server token)
    registry_url: str  # the registry the run uses
    shell_registry_url: str  # the one a bare `govflow` in the run's environment would open
    approvers: tuple[str, ...] = ()  # the policy's listed production approvers, if any
    prefect_api: str | None = None  # the run's Prefect API, when the environment does not name it


def decision_commands(version: ModelVersion, shell: Shell) -> tuple[str, str]:
    """The approve and reject commands for ``version`` that work pasted into ``shell``."""
    env: list[str] = []
    if shell.registry_url.rstrip("/") != shell.shell_registry_url.rstrip("/"):
        env.append(f"GOVFLOW_REGISTRY_URL={shlex.quote(_shown(shell.registry_url))}")
    if shell.prefect_api:
        env.append(f"PREFECT_API_URL={shlex.quote(shell.prefect_api)}")
    who = ""
    if shell.embedded:
        listed = [a for a in shell.approvers if not same_actor(a, version.registered_by)]
        who = f" --actor {shlex.quote(listed[0]) if listed else NAME_PLACEHOLDER}"
    else:
        env.append(f"GOVFLOW_TOKEN_FILE={TOKEN_PLACEHOLDER}")  # the run's own token cannot approve
    head = " ".join([*env, "govflow"])
    ref = f"{version.model} {version.version}"
    return (
        f"{head} approve {ref}{who} --reason TEXT",
        f"{head} reject {ref}{who} --reason TEXT",
    )


def _shown(url: str) -> str:
    """A registry URL fit for a log line: any password replaced by ***."""
    if url.startswith(("http://", "https://")):
        import httpx

        parsed = httpx.URL(url)
        return str(parsed.copy_with(password="***")) if parsed.password else url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def shell_of(reg: Any) -> Shell:
    """The ``Shell`` of a run using ``reg``, read from its environment and the Prefect client."""
    from flows.approval import names_actor

    embedded = names_actor(reg)
    rule = reg.policy.rule(Stage.PRODUCTION) if embedded else None
    return Shell(
        embedded=embedded,
        registry_url=str(reg.url),
        shell_registry_url=Settings.from_env().url,
        approvers=tuple(rule.approvers or ()) if rule is not None else (),
        prefect_api=_unnamed_prefect_api(),
    )


def _unnamed_prefect_api() -> str | None:
    """The Prefect API this run talks to, when PREFECT_API_URL does not name it (a temporary server)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None  # the shell reaches the same API already
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        url = str(client.api_url)
    # An in-process app (no port) cannot be reached from another terminal.
    return url if url.startswith(("http://", "https://")) and "ephemeral-prefect" not in url else None
