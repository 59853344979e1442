"""Service accounts for integrations (docs/accounts.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.user import UserRole, UserStatus


class ServiceAccountCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    # Not admin: an integration never administers the deployment.
    role: Literal["researcher", "coordinator", "read_only"] = "read_only"


class ServiceAccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    role: UserRole
    status: UserStatus
    owner_id: uuid.UUID | None = Field(description="The administrator who owns the account")
    created_at: datetime
