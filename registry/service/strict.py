"""The server's policy rule, applied at start-up: typed names count only when an admin said so here.

``govflow server`` (and each worker from ``app_from_env``) calls ``hold_to_server_rules`` before
serving. An empty registry is seeded with the server's defaults. A stored policy that counts typed
names (``authenticated_approvals = false``) and was not set on a server by an authenticated admin
with a reason (an embedded registry now served, or a lax seed from before this rule) is tightened
by an audited ``policy.set``. One an admin set here is kept, and reported as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from registry import identity, policy_record
from registry.base import RegistryBase, now
from registry.policy import Policy

TIGHTENED = (
    "server mode: only authenticated approvals count (authenticated_approvals = true); the stored "
    "policy counted typed names and was not set on a server by an admin"
)


@dataclass(frozen=True)
class ServerRules:
    """What start-up found: lines to print, and warnings to print on stderr."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def hold_to_server_rules(reg: RegistryBase) -> ServerRules:
    """Seed an empty registry, or tighten a stored policy counting typed names that no admin set
    on a server; one transaction. Refuses a ``GOVFLOW_POLICY`` that differs from the policy the
    server will hold (``PolicyError``), with nothing written."""
    if not reg.server_mode:
        raise ValueError("hold_to_server_rules is for a registry opened with server=True")
    at = now()
    with identity.acting(channel="server"):
        who = identity.actor_for(None)

        def work(conn: Connection) -> str:
            stored = policy_record.current(conn)
            if stored is None:
                reg._policy_in_force(conn, who, at)  # seeds: the file or the server's defaults
                return "seeded"
            sha, policy = stored
            if policy.authenticated_approvals or policy_record.lax_allowed(conn, sha):
                reg._check_explicit(stored)
                return "kept"
            strict = Policy.from_dict({**policy.model_dump(mode="json"), "authenticated_approvals": True})
            reg._check_explicit((policy_record.digest(strict)[0], strict))  # before anything is written
            policy_record.set_current(conn, strict, actor=who, at=at, reason=TIGHTENED, append=reg._audit)
            return "tightened"

        outcome = reg.db.transact(work)
    info: Any = reg.policy_info()
    short = info.sha256[:12]
    if info.document.get("authenticated_approvals") is not False:
        said = {
            "seeded": f"policy: {info.reason}; authenticated approvals required",
            "kept": "policy: authenticated approvals required",
            "tightened": f"policy: authenticated approvals required; {TIGHTENED}: tightened (policy.set)",
        }[outcome]
        return ServerRules(lines=[f"{said} [sha256 {short}]"])
    return ServerRules(lines=[f"policy: typed names count [sha256 {short}]"], warnings=list(info.warnings))
