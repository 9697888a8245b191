"""Reading, verifying and exporting the audit trail."""

from __future__ import annotations

from pathlib import Path

from registry import audit
from registry.base import RegistryBase
from registry.entities import AuditEvent, VerifyReport
from registry.errors import AuditChainBroken, InvalidInput


class AuditTrail(RegistryBase):
    """The hash-chained audit trail, for auditors."""

    def audit_log(self, model: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Audit events in chain order, optionally for one model, the last ``limit`` of them."""
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit: {limit} must be at least 1", field="limit")
        with self.db.read() as conn:
            events = [audit.to_event(r) for r in audit.iter_events(conn, model)]
        return events[-limit:] if limit else events

    def verify_audit(self, *, raise_on_error: bool = False) -> VerifyReport:
        """Recompute the hash chain; report (or raise on) the first bad seq."""
        with self.db.snapshot() as conn:
            report = audit.verify(conn)
        if raise_on_error and not report.ok:
            raise AuditChainBroken(
                f"audit chain broken at seq {report.first_bad_seq}: {report.problem}",
                seq=report.first_bad_seq or 0,
            )
        return report

    def export_audit(self, path: str | Path) -> int:
        """Write the chain as JSONL (one canonical event per line); return the count."""
        out = Path(path)
        try:
            usable = not out.is_dir() and out.parent.is_dir()
        except OSError as exc:
            raise InvalidInput(
                f"path: cannot use {str(out)[:80]}: {exc.strerror or exc}", field="path"
            ) from None
        if not usable:
            raise InvalidInput(f"path: {out} is a folder or its folder does not exist", field="path")
        tmp = out.with_name(out.name + ".tmp")
        count = 0
        try:
            with self.db.snapshot() as conn, open(tmp, "w", encoding="utf-8") as fh:
                for row in audit.iter_events(conn):
                    fh.write(audit.to_event(row).model_dump_json() + "\n")
                    count += 1
            tmp.replace(out)
        except OSError as exc:
            raise InvalidInput(f"path: cannot write {out}: {exc.strerror or exc}", field="path") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return count
