from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, EmailStr, Field

from app.models.participant import ParticipantActor, ParticipantStatus, WithdrawalScope
from app.schemas.common import Reference

PARTICIPANT_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ParticipantCreate(BaseModel):
    study_id: uuid.UUID
    participant_id: str = Field(min_length=1, max_length=64, pattern=PARTICIPANT_CODE_PATTERN)
    site_id: Reference | None = Field(default=None, description="The site's UUID or code")
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()-]{4,32}$")
    enrollment_date: date | None = None
    status: ParticipantStatus = ParticipantStatus.ENROLLED
    actor: ParticipantActor = ParticipantActor.PATIENT
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone; default: the site's, else the study's",
    )
    anchor_date: date | None = Field(
        default=None,
        description="The participant's own day zero for schedule events anchored on it",
    )


class ParticipantUpdate(BaseModel):
    participant_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=PARTICIPANT_CODE_PATTERN
    )
    site_id: Reference | None = Field(default=None, description="The site's UUID or code")
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()-]{4,32}$")
    enrollment_date: date | None = None
    status: ParticipantStatus | None = None
    actor: ParticipantActor | None = None
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    anchor_date: date | None = Field(
        default=None,
        description="The participant's own day zero for schedule events anchored on it",
    )
    reason: str | None = Field(default=None, max_length=1000)


class ParticipantRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    participant_id: str
    site_id: uuid.UUID | None
    email: str | None
    phone: str | None
    enrollment_date: date | None
    status: ParticipantStatus
    actor: ParticipantActor
    language: str
    timezone: str
    anchor_date: date | None
    withdrawn_at: datetime | None
    withdrawal_scope: WithdrawalScope | None
    has_access_code: bool
    created_at: datetime
    updated_at: datetime


class WithdrawRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    scope: WithdrawalScope = WithdrawalScope.STOP_COLLECTION


class AccessCodeRead(BaseModel):
    participant_id: str
    access_code: str = Field(description="Shown once; only its hash is stored.")
    study_code: str
