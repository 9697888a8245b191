"""Garbage collection of artifact blobs that no version references.

A crash between upload and commit (invariant 7) leaves a blob no version row points at. GC
lists the store, asks the database which digests versions reference, and deletes the rest,
except blobs written within the grace period: an upload in flight is not garbage yet.

Order matters: the store is listed before the references are read, so a version committed
during the listing is seen. Then, for each candidate, the blob is looked up again (a register
that re-uses an old orphan refreshes its time) and, last thing before the delete, the database
is asked again whether a version references it. What remains is the few milliseconds between
that query and the delete, for a register that re-uses this exact orphan at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel, Field

from registry.artifacts.base import Blob
from registry.db.tables import versions
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.registry import Registry

DEFAULT_GRACE = timedelta(hours=1)
_AUDIT_DIGESTS = 1000  # cap on digests listed in the audit payload; the count is always exact
_IN_BATCH = 500


class GcReport(BaseModel):
    """What a GC run found and did."""

    root: str = Field(description="The artifact root that was collected.")
    dry_run: bool = Field(description="Nothing was deleted; ``orphans`` is what would go.")
    older_than_seconds: int = Field(description="Grace period: younger blobs are kept.")
    scanned: int = Field(description="Blobs listed in the store.")
    referenced: int = Field(description="Listed blobs that some version references.")
    young: int = Field(description="Unreferenced blobs kept because they are within the grace period.")
    orphans: list[Blob] = Field(default_factory=list, description="Unreferenced blobs past the grace.")
    deleted: list[str] = Field(default_factory=list, description="Digests deleted.")
    deleted_bytes: int = Field(default=0, description="Bytes freed.")
    temp_removed: int = Field(default=0, description="Partial uploads (temp files/objects) removed.")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``7d`` (or a bare number of seconds); refuse anything else."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in units else (raw, "s")
    try:
        value = float(number)
    except ValueError:
        raise InvalidInput(
            f"--older-than: {text!r} is not a duration like 1h, 30m, 90s", field="older_than"
        ) from None
    if value < 0 or value != value:
        raise InvalidInput(f"--older-than: {text!r} must not be negative", field="older_than")
    if value * units[unit] > 100 * 365 * 86400:
        raise InvalidInput(f"--older-than: {text!r} is more than 100 years", field="older_than")
    return timedelta(seconds=value * units[unit])


def referenced_digests(registry: Registry, only: Iterable[str] | None = None) -> set[str]:
    """Digests some version references (all of them, or those among ``only``)."""
    col = versions.c.artifact_sha256
    with registry.db.read() as conn:
        if only is None:
            return set(conn.execute(sa.select(col).distinct()).scalars())
        wanted = sorted(set(only))
        found: set[str] = set()
        for i in range(0, len(wanted), _IN_BATCH):
            batch = wanted[i : i + _IN_BATCH]
            found.update(conn.execute(sa.select(col).where(col.in_(batch)).distinct()).scalars())
        return found


def collect_garbage(
    registry: Registry,
    *,
    older_than: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> GcReport:
    """Delete blobs no version references and older than ``older_than``; return the report.

    Never deletes a referenced blob, nor one written within the grace period. ``dry_run`` only
    reports. A real run is audited as ``artifacts.gc``. ``progress`` is called once per listed
    blob (for a progress bar on long listings).
    """
    if older_than < timedelta(0):
        raise InvalidInput("older_than must not be negative", field="older_than")
    store = registry.artifacts
    cutoff = (now or datetime.now(UTC)) - older_than
    listed: list[Blob] = []
    for blob in store.list_blobs():
        listed.append(blob)
        if progress is not None:
            progress(1)
    refs = referenced_digests(registry)
    unreferenced = [b for b in listed if b.sha256 not in refs]
    # A blob of unknown age counts as young: when in doubt, keep.
    orphans = [b for b in unreferenced if b.modified is not None and b.modified < cutoff]
    report = GcReport(
        root=store.root,
        dry_run=dry_run,
        older_than_seconds=int(older_than.total_seconds()),
        scanned=len(listed),
        referenced=len(listed) - len(unreferenced),
        young=len(unreferenced) - len(orphans),
        orphans=orphans,
    )
    if dry_run:
        return report
    complete = False
    try:
        for blob in orphans:
            current = store.stat(blob.sha256)
            if current is None or current.modified is None or current.modified >= cutoff:
                continue  # gone already, or re-used (its time refreshed) by a register in flight
            if referenced_digests(registry, [blob.sha256]):
                continue  # a version was committed since the listing
            store.delete(blob.sha256)
            report.deleted.append(blob.sha256)
            report.deleted_bytes += current.size
        report.temp_removed = store.sweep_temp(cutoff)
        complete = True
    finally:
        # Audited even when a delete failed half-way: what did go is on the record.
        registry.record(
            "artifacts.gc",
            payload={
                "root": report.root,
                "complete": complete,
                "older_than_seconds": report.older_than_seconds,
                "scanned": report.scanned,
                "referenced": report.referenced,
                "young": report.young,
                "deleted_count": len(report.deleted),
                "deleted_bytes": report.deleted_bytes,
                "deleted": report.deleted[:_AUDIT_DIGESTS],
                "temp_removed": report.temp_removed,
            },
            actor=actor,
        )
    return report
