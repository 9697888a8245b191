"""What the users API returns: a user's public record, and a new token shown once."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class UserInfo(BaseModel):
    """An API user as listed: never any token material."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The user's name, as the audit records it.")
    roles: list[str] = Field(description="Roles held: reader, pipeline, approver, operator, admin.")
    created_at: datetime = Field(description="When the user was added (UTC).")
    created_by: str = Field(description="Who added the user.")
    rotated_at: datetime | None = Field(default=None, description="When the token was last replaced.")
    expires_at: datetime | None = Field(default=None, description="When the token stops working, if ever.")
    revoked_at: datetime | None = Field(default=None, description="When the user was revoked, if so.")
    active: bool = Field(description="Whether the token works now (not revoked, not expired).")


class NewToken(BaseModel):
    """A token just issued; the only time it is shown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The user the token belongs to.")
    roles: list[str] = Field(description="Roles the token carries.")
    token: str = Field(repr=False, description="The API token (gft_…); store it now, it is not shown again.")
