"""Staff invitations (docs/accounts.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.models.study import MemberRole
from app.models.user import UserRole

InvitationStatusValue = Literal["pending", "accepted", "revoked", "expired"]


class InvitationCreate(BaseModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    role: UserRole = Field(description="The global role of the account")
    study_id: uuid.UUID | None = Field(
        default=None, description="A study the account joins on acceptance"
    )
    member_role: MemberRole | None = Field(default=None, description="Its role in that study")
    site: str | None = Field(
        default=None,
        max_length=100,
        description="The site (UUID or code) the membership is limited to",
    )
    two_factor_required: bool = Field(
        default=False,
        description="The person must enrol two-factor authentication to accept",
    )


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: UserRole
    study_id: uuid.UUID | None
    member_role: MemberRole | None
    site_id: uuid.UUID | None
    two_factor_required: bool
    status: InvitationStatusValue
    expires_at: datetime
    invited_by: uuid.UUID | None
    sent_count: int
    last_sent_at: datetime
    accepted_at: datetime | None
    accepted_user_id: uuid.UUID | None
    revoked_at: datetime | None
    created_at: datetime


class InvitationTokenRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class InvitationPreviewRead(BaseModel):
    email: str
    name: str
    role: UserRole
    study_id: uuid.UUID | None
    member_role: MemberRole | None
    site_id: uuid.UUID | None
    expires_at: datetime
    two_factor_required: bool
    totp_secret: str | None = Field(
        description="When two-factor is required: a new secret to enrol; send it back on accept"
    )
    otpauth_uri: str | None


class InvitationAcceptRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    totp_secret: str | None = Field(default=None, max_length=64)
    totp_code: str | None = Field(default=None, min_length=6, max_length=10)
