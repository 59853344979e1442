"""Personal access tokens (docs/accounts.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["read", "export", "write"]


class AccessTokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=3,
        description="`read` (required), `export` (raw data downloads), `write` (other methods)",
    )
    expires_in_days: int = Field(ge=1, le=365)


class AccessTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart")
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    revoked_at: datetime | None


class AccessTokenCreated(AccessTokenRead):
    token: str = Field(description="The secret: shown this once, never again")
