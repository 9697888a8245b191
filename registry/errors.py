"""The one exception tree of govflow.

Every refusal is a ``GovflowError`` subclass whose message names what is wrong. Lower libraries'
errors (SQLAlchemy, botocore, skops, Great Expectations) are translated at the edge where we call
them, with ``map_exceptions``; they never leak out of the public API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class GovflowError(Exception):
    """Base of every govflow error; carries the model, version and reason when known."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        version: int | None = None,
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.version = version
        self.reason = reason
        self.fields = fields

    def __str__(self) -> str:
        return self.message


# --- input --------------------------------------------------------------------------------


class InvalidInput(GovflowError):
    """A value given by the caller is malformed: a bad name, a non-finite metric, a bad field."""

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field


class PolicyError(InvalidInput):
    """The policy file cannot be read or does not validate."""


# --- lookups ------------------------------------------------------------------------------


class NotFound(GovflowError):
    """A model, version, alias or flow run that was asked for does not exist."""


class ModelNotFound(NotFound):
    """No model with that name; ``suggestion`` is the nearest stored name, ``registry`` the one read.

    ``message`` holds what any side may say (with the suggestion); the registry is named by the
    side the caller opened (a database path or URL without credentials, or the server's URL).
    """

    def __init__(
        self, message: str, *, suggestion: str | None = None, registry: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.suggestion = suggestion
        self.registry = registry

    def __str__(self) -> str:
        return f"{self.message} (registry: {self.registry})" if self.registry else self.message


class VersionNotFound(NotFound):
    """No such version of the model."""


class AliasNotFound(NotFound):
    """The alias is not set on the model."""


# --- governance refusals ------------------------------------------------------------------


class Refused(GovflowError):
    """A governance rule refused the operation; nothing was written."""


class Forbidden(Refused):
    """The authenticated caller's roles or identity do not allow the operation."""

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field


class IllegalTransition(Refused):
    """The stage move is not in the transition graph."""


class ApprovalRequired(Refused):
    """The policy's approvals for the target stage are not present."""


class SeparationOfDuties(Refused):
    """The actor may not decide on this version (the registrant, or a repeat decision)."""


class NotAnApprover(Refused):
    """The policy restricts approvers and the actor is not one of them."""


class GateFailed(Refused):
    """A gate the policy requires for the target stage is missing or failed."""


class RollbackRefused(Refused):
    """No production version to demote, or no earlier version to restore."""


class UnsafeModel(Refused):
    """A model file would need untrusted types or raw pickle to load."""


class NotServable(Refused):
    """The version could not be served from production under the policy (``reason`` says why)."""


# --- integrity ----------------------------------------------------------------------------


class IntegrityError(GovflowError):
    """Stored bytes or records do not match their recorded digest."""


class DigestMismatch(IntegrityError):
    """An artifact's bytes do not hash to the digest the version records."""


class AuditChainBroken(IntegrityError):
    """The audit hash chain does not verify; ``seq`` names the first bad event."""

    def __init__(self, message: str, *, seq: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.seq = seq


# --- infrastructure -----------------------------------------------------------------------


class Unauthenticated(GovflowError):
    """No credential, or one that is unknown, revoked, expired or badly signed."""


class StorageError(GovflowError):
    """The registry database failed or could not be reached."""


class SchemaOutdated(StorageError):
    """The database schema is behind this code; run ``govflow db upgrade``."""


class ArtifactStoreError(GovflowError):
    """The artifact store (local folder or S3) failed; the location is named."""

    def __init__(self, message: str, *, location: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.location = location


class ArtifactNotFound(ArtifactStoreError, NotFound):
    """No blob with that digest in the artifact store."""


class DeployError(GovflowError):
    """A deploy target failed or did not converge."""


class FlowError(GovflowError):
    """A Prefect flow run could not be found, resumed or completed."""


# --- warnings -----------------------------------------------------------------------------


class GovflowWarning(UserWarning):
    """Base of govflow's warnings: allowed now, but a later step will refuse it."""

    def __init__(
        self, message: str, *, model: str | None = None, version: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.version = version
        self.reason = reason

    def __str__(self) -> str:
        return self.message


class ServingWarning(GovflowWarning):
    """A version was registered that the policy in force would keep out of production."""


def first_invalid(
    exc: Any, source: str, default_field: str, cls: type[InvalidInput] = InvalidInput
) -> InvalidInput:
    """One clear error from a pydantic ``ValidationError``: its first complaint, naming the field."""
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or default_field
    prefix = f"{source}: " if source else ""
    return cls(f"{prefix}{field}: {err['msg']}", field=field)


@contextmanager
def map_exceptions(
    mapping: dict[type[BaseException], Callable[[BaseException], GovflowError]],
) -> Iterator[None]:
    """Translate lower-library exceptions into govflow errors at the boundary.

    ``mapping`` maps an exception type to a factory building the govflow error; the first
    matching type wins, and the original is kept as ``__cause__``.
    """
    try:
        yield
    except GovflowError:
        raise
    except BaseException as exc:  # noqa: BLE001 - re-raised unchanged when unmapped
        for exc_type, factory in mapping.items():
            if isinstance(exc, exc_type):
                raise factory(exc) from exc
        raise
