"""Staff accounts and their login sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.db.base import Base, EnumString, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class UserRole(StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    COORDINATOR = "coordinator"
    READ_ONLY = "read_only"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class UserKind(StrEnum):
    # A member of staff: signs in with a password or through single sign-on.
    PERSON = "person"
    # An integration's account: no password, no interactive sign-in, only access tokens.
    SERVICE = "service"


class User(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are compared case-insensitively: stored lower-cased, unique as stored.
        Index("uq_users_email", "email", unique=True),
    )

    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(EnumString(UserRole, 20), default=UserRole.READ_ONLY)
    status: Mapped[UserStatus] = mapped_column(
        EnumString(UserStatus, 20), default=UserStatus.ACTIVE
    )
    kind: Mapped[UserKind] = mapped_column(
        EnumString(UserKind, 20), default=UserKind.PERSON, server_default="person"
    )
    # The administrator who owns a service account; None for people.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # None: no password at all (an account that signs in through single sign-on only, or a
    # service account).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Bumped on every password change: invitation and reset links carry it and die with it.
    password_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    terms_accepted_at: Mapped[datetime | None]
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failed_login_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]

    sessions: Mapped[list[UserSession]] = relationship(
        back_populates="user", lazy="raise", passive_deletes=True
    )


class UserSession(UUIDPrimaryKeyMixin, Base):
    """One login: the family of its access and refresh tokens (`sid` in the JWT)."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_id_created_at", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.current_timestamp()
    )
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Refresh rotation: the one valid refresh token, and the one it replaced (grace window).
    refresh_jti: Mapped[str] = mapped_column(String(64))
    previous_refresh_jti: Mapped[str | None] = mapped_column(String(64))
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(back_populates="sessions", lazy="raise")


class PasswordReset(UUIDPrimaryKeyMixin, Base):
    """A single-use password reset link, stored as the keyed hash of its token."""

    __tablename__ = "password_resets"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PersonalAccessToken(UUIDPrimaryKeyMixin, Base):
    """A user's token for scripts (docs/accounts.md), stored as the keyed hash of its secret."""

    __tablename__ = "personal_access_tokens"
    __table_args__ = (Index("ix_personal_access_tokens_user_id", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the secret, shown in lists so that a person can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
