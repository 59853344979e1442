"""Batteries of tasks and their immutable versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class Battery(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "batteries"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    # Deleting keeps the versions that sessions ran; the battery only leaves the lists.
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class BatteryVersion(UUIDPrimaryKeyMixin, Base):
    """One immutable state of a battery: what a session ran."""

    __tablename__ = "battery_versions"
    __table_args__ = (UniqueConstraint("battery_id", "version"),)

    battery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batteries.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    # [{"module_id", "config" (effective, defaults merged)}]
    tasks: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    estimated_minutes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
