"""Study templates saved on the server (docs/templates.md): a template document kept under a
title, made from a study or from a file, to create new studies from later."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.db.base import Base, UUIDPrimaryKeyMixin


class SavedTemplate(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "study_templates"
    __table_args__ = (Index("ix_study_templates_created_by", "created_by"),)

    title: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str | None] = mapped_column(Text)
    # The whole template document, every default written out (its `format_version` inside).
    document: Mapped[dict[str, Any]]
    # The study it was made from, if any (kept as a plain id: the study may be deleted later).
    source_study_id: Mapped[uuid.UUID | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
