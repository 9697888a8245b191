"""The audit trail, custom events and the policy, over HTTP (a mixin of ``RemoteRegistry``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from registry import entities
from registry.entities import AuditEvent, VerifyReport
from registry.errors import AuditChainBroken, InvalidInput
from registry.policy import Policy
from registry.remote.transport import many


class Trail:
    """Audit log, verify, export, custom events, deployments, pickle loads and the policy."""

    _call: Any
    transport: Any

    # --- events and audit -------------------------------------------------------------------

    def record(
        self,
        action: str,
        *,
        model: str | None = None,
        version: int | None = None,
        payload: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        body = {"action": action, "model": model, "version": version, "payload": payload, "actor": actor}
        return AuditEvent.model_validate_json(self._call("POST", "/api/v1/events", body))

    def record_deployment(
        self,
        model: str,
        version: int,
        *,
        target: str,
        ok: bool,
        payload: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        body = {
            "model": model,
            "version": version,
            "target": target,
            "ok": ok,
            "payload": payload,
            "actor": actor,
        }
        return AuditEvent.model_validate_json(self._call("POST", "/api/v1/deployments", body))

    def note_pickle_load(
        self, model: str, version: int, *, ref: str, sha256: str, fmt: str, actor: str | None = None
    ) -> AuditEvent:
        body = {"model": model, "version": version, "ref": ref, "sha256": sha256, "fmt": fmt, "actor": actor}
        return AuditEvent.model_validate_json(self._call("POST", "/api/v1/pickle-loads", body))

    def audit_log(self, model: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        return many(AuditEvent, self._call("GET", "/api/v1/audit", params={"model": model, "limit": limit}))

    def verify_audit(self, *, raise_on_error: bool = False) -> VerifyReport:
        report = VerifyReport.model_validate_json(self._call("GET", "/api/v1/audit/verify"))
        if raise_on_error and not report.ok:
            raise AuditChainBroken(
                f"audit chain broken at seq {report.first_bad_seq}: {report.problem}",
                seq=report.first_bad_seq or 0,
            )
        return report

    def export_audit(self, path: str | Path) -> int:
        """Stream the chain as JSONL into ``path``; return the count."""
        out = Path(path)
        if out.is_dir() or not out.parent.is_dir():
            raise InvalidInput(f"path: {out} is a folder or its folder does not exist", field="path")
        tmp = out.with_name(out.name + ".tmp")
        count = 0
        try:
            with self.transport.stream("/api/v1/audit/export") as response, open(tmp, "wb") as fh:
                for line in response.iter_lines():
                    if line:
                        fh.write(line.encode("utf-8") + b"\n")
                        count += 1
            tmp.replace(out)
        except OSError as exc:
            raise InvalidInput(f"path: cannot write {out}: {exc.strerror or exc}", field="path") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return count

    # --- policy -----------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The policy in force on the server."""
        return Policy.model_validate_json(self._call("GET", "/api/v1/policy/in-force"))

    def policy_info(self) -> Any:
        return entities.PolicyInfo.model_validate_json(self._call("GET", "/api/v1/policy"))

    def policy_history(self) -> list[Any]:
        return many(entities.PolicyInfo, self._call("GET", "/api/v1/policy/history"))

    def policy_document(self, sha256: str) -> dict[str, Any] | None:
        if not isinstance(sha256, str) or not sha256.isalnum():
            return None
        return TypeAdapter(dict[str, Any] | None).validate_json(
            self._call("GET", f"/api/v1/policies/{sha256}")
        )

    def set_policy(
        self,
        policy: Policy | str | Path | dict[str, Any],
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Any:
        """Put ``policy`` (a Policy, a file, or a mapping) in force on the server (admin only);
        keys a file or mapping leaves out take the server's defaults there."""
        # Sent as written, so the server fills what it leaves out; refused here first, naming the file.
        document: Any
        if isinstance(policy, Policy):
            document = policy.model_dump(mode="json")
        elif isinstance(policy, str | Path) and str(policy).strip():
            document = Policy.read(policy)
            Policy.from_dict(document, source=str(Path(policy)))
        else:
            Policy.coerce(policy)  # a mapping, or refused
            document = policy
        body = {"document": document, "reason": reason, "actor": actor}
        return entities.PolicyInfo.model_validate_json(self._call("PUT", "/api/v1/policy", body))
