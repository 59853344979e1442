"""Participants, their sign-in credentials and their login sessions."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, TimestampMixin, UUIDPrimaryKeyMixin


class ParticipantStatus(StrEnum):
    SCREENED = "screened"
    ENROLLED = "enrolled"
    WITHDRAWN = "withdrawn"
    COMPLETED = "completed"


class ParticipantActor(StrEnum):
    PATIENT = "patient"
    CAREGIVER = "caregiver"


class WithdrawalScope(StrEnum):
    STOP_COLLECTION = "stop_collection"
    DELETE_DATA = "delete_data"


class Participant(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("study_id", "participant_code"),
        Index("ix_participants_study_id_status", "study_id", "status"),
        Index("ix_participants_email_index", "email_index"),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    # The study's own code for the participant (`participant_id` in the API, e.g. P001).
    participant_code: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("study_sites.id", ondelete="RESTRICT"), index=True
    )
    # Contact details are Fernet-encrypted; the blind index (HMAC) finds a participant by email.
    email_encrypted: Mapped[str | None] = mapped_column(Text)
    email_index: Mapped[str | None] = mapped_column(String(64))
    phone_encrypted: Mapped[str | None] = mapped_column(Text)
    enrollment_date: Mapped[date | None]
    # The participant's own day zero for schedule events anchored on it (surgery, diagnosis).
    anchor_date: Mapped[date | None]
    status: Mapped[ParticipantStatus] = mapped_column(
        EnumString(ParticipantStatus, 20), default=ParticipantStatus.ENROLLED
    )
    actor: Mapped[ParticipantActor] = mapped_column(
        EnumString(ParticipantActor, 20), default=ParticipantActor.PATIENT
    )
    language: Mapped[str] = mapped_column(String(16), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    withdrawn_at: Mapped[datetime | None]
    withdrawal_scope: Mapped[WithdrawalScope | None] = mapped_column(
        EnumString(WithdrawalScope, 20)
    )
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
    access_code_hash: Mapped[str | None] = mapped_column(String(64))
    access_code_created_at: Mapped[datetime | None]


class MagicLinkToken(UUIDPrimaryKeyMixin, Base):
    """A one-time sign-in link for a participant, stored hashed."""

    __tablename__ = "participant_magic_links"

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class ParticipantLogin(UUIDPrimaryKeyMixin, Base):
    """One participant sign-in (access code or magic link): the `sid` of participant tokens."""

    __tablename__ = "participant_logins"

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(20))
    device: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
