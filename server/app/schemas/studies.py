from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.models.participant import ParticipantStatus
from app.models.study import ConsentMode, MemberRole, Study, StudyRole, StudyStatus
from app.schemas.common import Reference


class StudyCreate(BaseModel):
    code: str = Field(min_length=2, max_length=50, examples=["NEURO-2024-001"])
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    pi_name: str | None = Field(default=None, max_length=255)
    pi_email: EmailStr | None = None
    start_date: date | None = None
    end_date: date | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    supported_languages: list[str] = Field(
        default_factory=lambda: ["en"], min_length=1, max_length=20
    )
    consent_mode: ConsentMode = ConsentMode.BUILTIN
    redcap_enabled: bool = False
    timezone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA time zone: the default of sites and participants without one",
    )


class StudyUpdate(BaseModel):
    code: str | None = Field(default=None, min_length=2, max_length=50)
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    pi_name: str | None = Field(default=None, max_length=255)
    pi_email: EmailStr | None = None
    start_date: date | None = None
    end_date: date | None = None
    config: dict[str, Any] | None = None
    supported_languages: list[str] | None = Field(default=None, min_length=1, max_length=20)
    consent_mode: ConsentMode | None = None
    redcap_enabled: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=1000)


class StudyStatusChange(BaseModel):
    status: StudyStatus
    reason: str | None = Field(default=None, max_length=1000)


class StudyStatsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    participants_by_status: dict[ParticipantStatus, int]
    participants_total: int
    sessions_total: int
    sessions_completed: int
    completion_rate: float


class StudyRead(BaseModel):
    """A study as every route answers it (list, get, create, update, status change)."""

    id: uuid.UUID
    code: str
    name: str
    description: str | None
    pi_name: str | None
    pi_email: str | None
    start_date: date | None
    end_date: date | None
    status: StudyStatus
    config: dict[str, Any]
    supported_languages: list[str]
    consent_mode: ConsentMode
    redcap_enabled: bool
    timezone: str
    created_at: datetime
    updated_at: datetime
    my_role: StudyRole = Field(description="The caller's role here; `admin` for administrators")
    stats: StudyStatsRead = Field(description="Counted within the caller's site if site-scoped")

    @classmethod
    def from_study(cls, study: Study, my_role: StudyRole, stats: StudyStatsRead) -> Self:
        columns = {name: getattr(study, name) for name in _STUDY_COLUMNS}
        return cls.model_validate({**columns, "my_role": my_role, "stats": stats})


_STUDY_COLUMNS = tuple(name for name in StudyRead.model_fields if name not in ("my_role", "stats"))


class SiteCreate(BaseModel):
    code: str = Field(min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=255)
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA time zone; default: the study's"
    )


class SiteUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    timezone: str | None = Field(default=None, max_length=64)


class SiteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    study_id: uuid.UUID
    code: str
    name: str
    timezone: str


class MemberCreate(BaseModel):
    user_id: uuid.UUID
    role: MemberRole
    site_id: Reference | None = Field(default=None, description="The site's UUID or code")


class MemberUpdate(BaseModel):
    role: MemberRole | None = None
    site_id: Reference | None = Field(
        default=None, description="The site's UUID or code; null lifts the site scope"
    )


class MemberRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    name: str
    role: MemberRole
    site_id: uuid.UUID | None
