"""Studies, their sites and their members."""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin
from app.models.user import UserRole


class StudyStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class ConsentMode(StrEnum):
    BUILTIN = "builtin"
    EXTERNAL = "external"
    NONE = "none"


class MemberRole(StrEnum):
    RESEARCHER = "researcher"
    COORDINATOR = "coordinator"
    READ_ONLY = "read_only"


# A caller's role in one study: their membership's, or administrator in every study.
StudyRole = MemberRole | Literal[UserRole.ADMIN]


class Study(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "studies"
    __table_args__ = (Index("uq_studies_code", "code", unique=True),)

    code: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    pi_name: Mapped[str | None] = mapped_column(String(255))
    pi_email: Mapped[str | None] = mapped_column(String(320))
    start_date: Mapped[date | None]
    end_date: Mapped[date | None]
    status: Mapped[StudyStatus] = mapped_column(
        EnumString(StudyStatus, 20), default=StudyStatus.DRAFT
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    supported_languages: Mapped[list[str]] = mapped_column(JSONType, default=lambda: ["en"])
    consent_mode: Mapped[ConsentMode] = mapped_column(
        EnumString(ConsentMode, 20), default=ConsentMode.BUILTIN
    )
    redcap_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # IANA zone: a participant's default when neither they nor their site have one.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class Site(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "study_sites"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")


class StudyMember(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "study_members"
    __table_args__ = (UniqueConstraint("study_id", "user_id"),)

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[MemberRole] = mapped_column(EnumString(MemberRole, 20))
    # A member with a site sees only that site's participants.
    site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("study_sites.id", ondelete="RESTRICT")
    )
