"""IRT item banks and their immutable versions (docs/item-banks.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, JSONType, TimestampMixin, UUIDPrimaryKeyMixin


class ItemBank(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A study's bank; its content lives in versions so a test can be rescored against exactly
    the parameters it ran with."""

    __tablename__ = "item_banks"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class ItemBankVersion(UUIDPrimaryKeyMixin, Base):
    """One immutable state of a bank: items with parameters and texts, and the CAT rules."""

    __tablename__ = "item_bank_versions"
    __table_args__ = (UniqueConstraint("bank_id", "version"),)

    bank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("item_banks.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    # [{"id", "a", "b": [thresholds], "domain", "text": {lang: str}, "options": {lang: [str]}}]
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # {"target_se", "min_items", "max_items", "randomesque", "domain_targets"}
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
