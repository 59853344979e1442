"""Consent forms (versioned, immutable once published) and signatures."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class ConsentFormStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class SignerRole(StrEnum):
    PARTICIPANT = "participant"
    CAREGIVER = "caregiver"
    LAR = "lar"
    WITNESS = "witness"


class ConsentForm(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "consent_forms"
    __table_args__ = (
        UniqueConstraint("study_id", "language", "version"),
        Index("ix_consent_forms_study_id_language_status", "study_id", "language", "status"),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    # [{"id", "text", "type": "yes_no"|"text", "required": bool}]
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    requires_signature: Mapped[bool] = mapped_column(Boolean, default=True)
    reconsent_required: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ConsentFormStatus] = mapped_column(
        EnumString(ConsentFormStatus, 20), default=ConsentFormStatus.DRAFT
    )
    content_hash: Mapped[str | None] = mapped_column(String(64))
    published_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class ConsentRecord(UUIDPrimaryKeyMixin, Base):
    """One signature of one form version by one signer. Withdrawal is recorded, never deleted."""

    __tablename__ = "consent_records"
    __table_args__ = (
        Index("ix_consent_records_participant_id_signed_at", "participant_id", "signed_at"),
    )

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consent_forms.id", ondelete="RESTRICT"))
    form_version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    signer_name: Mapped[str] = mapped_column(String(255))
    signer_role: Mapped[SignerRole] = mapped_column(EnumString(SignerRole, 20))
    witness_name: Mapped[str | None] = mapped_column(String(255))
    answers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    signature_image: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[datetime]
    # When the device says it was signed, for signatures collected offline and synced later;
    # `signed_at` stays the server's time of receipt (device clocks drift).
    device_signed_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(255))
    # Who recorded it: the participant themself (None) or a staff member in person.
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    withdrawn_at: Mapped[datetime | None]
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
