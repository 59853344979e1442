"""Writing and reading audit events.

`record_event` is one INSERT in the caller's transaction: the event commits or rolls back with
the change it records, and concurrent writers share no lock. The database numbers the event
(`sequence`); linking it into the keyed chain is the chainer's job, after the commit
(`app.services.audit.chain`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.core.clock import utcnow
from app.core.json_values import normalize_json, to_json_value
from app.models.audit import ActorType, AuditCategory, AuditChainLink, AuditEvent
from app.models.participant import Participant
from app.schemas.common import PageParams, Pagination
from app.services.pagination import paginate_rows


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who acts and from where: built once per request, passed to every service that writes."""

    actor_type: ActorType
    actor_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    # The personal access token the request came with (docs/accounts.md), if any.
    token_id: uuid.UUID | None = None

    @classmethod
    def system(cls, request_id: str | None = None) -> AuditContext:
        return cls(actor_type=ActorType.SYSTEM, actor_id="system", request_id=request_id)

    def as_actor(self, actor_type: ActorType, actor_id: str | None) -> AuditContext:
        return AuditContext(
            actor_type, actor_id, self.ip, self.user_agent, self.request_id, self.token_id
        )

    def via_token(self, token_id: uuid.UUID | None) -> AuditContext:
        """The same actor, acting through a personal access token."""
        return AuditContext(
            self.actor_type, self.actor_id, self.ip, self.user_agent, self.request_id, token_id
        )


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """What the INSERT gave back: the event's id and the number the database gave it."""

    id: uuid.UUID
    sequence: int
    occurred_at: datetime


def canonical_event(event: AuditEvent) -> bytes:
    """The bytes a link's MAC covers: every column of the event, as any backend reads it back."""
    payload = {
        "id": str(event.id),
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "category": event.category,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "study_id": str(event.study_id) if event.study_id else None,
        "participant_id": str(event.participant_id) if event.participant_id else None,
        "before": normalize_json(event.before),
        "after": normalize_json(event.after),
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "reason": event.reason,
    }
    if event.token_id is not None:
        # Only when set: the events recorded before the column existed keep their MAC.
        payload["token_id"] = str(event.token_id)
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def record_event(
    session: AsyncSession,
    context: AuditContext,
    *,
    action: str,
    category: AuditCategory,
    entity_type: str | None = None,
    entity_id: str | uuid.UUID | None = None,
    study_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> RecordedEvent:
    """Insert one event in the caller's transaction: one statement, no lock beyond its row.

    The caller's pending ORM changes are flushed first, as they always were: services read back
    what they wrote before recording it (a new study's membership, for one). That costs no
    statement the commit would not send anyway; with nothing pending it sends none.
    """
    await session.flush()
    event_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": event_id,
        # Truncated to microseconds on every backend, so the MAC survives a round trip.
        "occurred_at": utcnow(),
        "actor_type": context.actor_type,
        "actor_id": context.actor_id,
        "action": action,
        "category": category,
        "entity_type": entity_type,
        "entity_id": str(entity_id) if entity_id is not None else None,
        "study_id": study_id,
        "participant_id": participant_id,
        "before": to_json_value(dict(before)) if before is not None else None,
        "after": to_json_value(dict(after)) if after is not None else None,
        "ip": context.ip,
        "user_agent": (context.user_agent or None) and context.user_agent[:255],
        "request_id": context.request_id,
        "reason": reason,
        "token_id": context.token_id,
    }
    numbered_here = session.get_bind().dialect.name != "postgresql"
    statement = _INSERT_NUMBERED_EVENT if numbered_here else _INSERT_EVENT
    sequence = (await session.execute(statement, values)).scalar_one()
    return RecordedEvent(event_id, int(sequence), values["occurred_at"])


# Built once: the values travel as parameters, so SQLAlchemy neither builds nor keys a new
# statement per event (that was most of the cost of recording one). Core on the table: an ORM
# insert of one dictionary goes through the bulk-insert machinery for nothing.
_EVENTS = cast(Table, AuditEvent.__table__)
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.sequence)
# SQLite has one writer at a time (transactions begin IMMEDIATE): the next number is one more
# than the highest, and numbers follow commit order without gaps. PostgreSQL numbers the row in
# its BEFORE INSERT trigger.
_INSERT_NUMBERED_EVENT = (
    insert(_EVENTS)
    .values(
        sequence=select(func.coalesce(func.max(_EVENTS.c.sequence), 0) + 1)
        .select_from(_EVENTS)
        .scalar_subquery()
    )
    .returning(_EVENTS.c.sequence)
)


def _scope_condition(study_id: uuid.UUID, site_id: uuid.UUID | None) -> ColumnElement[bool]:
    in_study = AuditEvent.study_id == study_id
    if site_id is None:
        return in_study
    of_the_site = select(Participant.id).where(
        Participant.study_id == study_id, Participant.site_id == site_id
    )
    return in_study & or_(
        AuditEvent.participant_id.is_(None), AuditEvent.participant_id.in_(of_the_site)
    )


async def list_events(
    session: AsyncSession,
    params: PageParams,
    *,
    study_id: uuid.UUID | None = None,
    participant_id: uuid.UUID | None = None,
    category: AuditCategory | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    scopes: Mapping[uuid.UUID, uuid.UUID | None] | None = None,
) -> tuple[Sequence[Row[AuditEvent, AuditChainLink | None]], Pagination]:
    """Events with their chain link (None until the chainer has reached them).

    `scopes` None: every event (administrators). Else the events of those studies (study →
    site): within a site-scoped study, those about no participant or about one of that site."""
    statement = select(AuditEvent, AuditChainLink).outerjoin(
        AuditChainLink, AuditChainLink.event_id == AuditEvent.id
    )
    if scopes is not None:
        statement = statement.where(
            or_(*(_scope_condition(study, site) for study, site in scopes.items()))
        )
    if study_id is not None:
        statement = statement.where(AuditEvent.study_id == study_id)
    if participant_id is not None:
        statement = statement.where(AuditEvent.participant_id == participant_id)
    if category is not None:
        statement = statement.where(AuditEvent.category == category)
    if actor_id is not None:
        statement = statement.where(AuditEvent.actor_id == actor_id)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if occurred_from is not None:
        statement = statement.where(AuditEvent.occurred_at >= occurred_from)
    if occurred_to is not None:
        statement = statement.where(AuditEvent.occurred_at <= occurred_to)
    rows, pagination = await paginate_rows(
        session,
        statement,
        params,
        sortable={"sequence": AuditEvent.sequence, "occurred_at": AuditEvent.occurred_at},
        default_sort="sequence",
        tie_breaker=AuditEvent.sequence,
    )
    return rows, pagination
