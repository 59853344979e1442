"""Invitations to create a staff account."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, EnumString, TimestampMixin, UUIDPrimaryKeyMixin
from app.models.study import MemberRole
from app.models.user import UserRole


class Invitation(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """An emailed invitation to create a staff account (docs/accounts.md).

    Only the keyed hash of the link's token is stored; a resend replaces it, so the old link
    dies. Pending while not accepted, not revoked and not expired.
    """

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_email", "email"),)

    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(EnumString(UserRole, 20))
    study_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    member_role: Mapped[MemberRole | None] = mapped_column(EnumString(MemberRole, 20))
    site_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("study_sites.id", ondelete="CASCADE")
    )
    two_factor_required: Mapped[bool] = mapped_column(Boolean, default=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    sent_count: Mapped[int] = mapped_column(Integer, default=1)
    last_sent_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    revoked_at: Mapped[datetime | None]
