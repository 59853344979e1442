"""What an audit event is about, named once per kind of entity.

`audit.record_event` writes any event. The services write a few kinds of event again and again:
about a row of a study's configuration (the study, a site, a member, a battery, a consent form),
about a participant, about a staff account or one of its login sessions. An `AuditSubject` holds
what such an event is about (the entity, its study and its participant) and under which category
it is filed, so a write names its subject once and records its event in one call, and every
event about a participant names it the same way. `record_change` keeps the rule that a write
which changes nothing records nothing (docs/development.md, every write is audited).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models.assessment import AssessmentSession
from app.models.audit import AuditCategory
from app.models.participant import Participant
from app.services.audit import AuditContext, record_event


@dataclass(frozen=True, slots=True)
class AuditSubject:
    category: AuditCategory
    entity_type: str | None = None
    entity_id: str | uuid.UUID | None = None
    study_id: uuid.UUID | None = None
    participant_id: uuid.UUID | None = None

    @classmethod
    def configuration(
        cls, entity_type: str, entity_id: uuid.UUID, study_id: uuid.UUID
    ) -> AuditSubject:
        """A study, or one of the rows that configure it (site, member, battery)."""
        return cls(AuditCategory.CONFIG, entity_type, entity_id, study_id)

    @classmethod
    def participant(cls, participant: Participant | None, category: AuditCategory) -> AuditSubject:
        """A participant, in its study; None (a sign-in that matched nobody) names no entity."""
        if participant is None:
            return cls(category)
        return cls(category, "participant", participant.id, participant.study_id, participant.id)

    @classmethod
    def assessment_session(cls, record: AssessmentSession) -> AuditSubject:
        """A participant's assessment session: its start, submissions and end."""
        return cls(
            AuditCategory.ASSESSMENT,
            "assessment_session",
            record.id,
            record.study_id,
            record.participant_id,
        )

    @classmethod
    def account(cls, user_id: uuid.UUID) -> AuditSubject:
        """A staff account."""
        return cls(AuditCategory.AUTH, "user", user_id)

    @classmethod
    def login_session(cls, login_session_id: uuid.UUID) -> AuditSubject:
        """One login of a staff account: the family of its access and refresh tokens."""
        return cls(AuditCategory.AUTH, "user_session", login_session_id)


async def record_about(
    session: AsyncSession,
    context: AuditContext,
    subject: AuditSubject,
    action: str,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """Append one event about `subject` to the audit trail, in the caller's transaction."""
    await record_event(
        session,
        context,
        action=action,
        category=subject.category,
        entity_type=subject.entity_type,
        entity_id=subject.entity_id,
        study_id=subject.study_id,
        participant_id=subject.participant_id,
        before=before,
        after=after,
        reason=reason,
    )


async def record_change(
    session: AsyncSession,
    context: AuditContext,
    subject: AuditSubject,
    action: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    reason: str | None = None,
) -> bool:
    """Record an update from its snapshots before and after, unless they are equal; True when
    an event was recorded."""
    if after == before:
        return False
    await record_about(session, context, subject, action, before=before, after=after, reason=reason)
    return True
