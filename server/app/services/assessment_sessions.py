"""Assessment sessions: start (consent gate, withdrawal), end, read, list.

The database holds the durable record; the session store holds the live state of running
sessions (which tasks arrived), shared by every API process when Redis is configured.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    ValidationFailedError,
)
from app.core.logging import get_logger
from app.db.concurrent_writes import insert_unless_present
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult
from app.models.battery import Battery, BatteryVersion
from app.models.participant import Participant, ParticipantStatus
from app.models.study import Study, StudyStatus
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.batteries import get_battery_version
from app.services.consent.gate import consent_gate
from app.services.outbox.announce import announce_session_completed
from app.services.participants import participant_for_principal, resolve_participant
from app.services.policy import Capability, member_study_access, study_access
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal
from app.services.schedules.visits import check_visit_for_session, complete_visit_of_session
from app.services.session_store import SessionStore, SessionStoreUnavailableError

logger = get_logger(__name__)

SESSION_LIFETIME = timedelta(hours=24)


class ConsentRequiredError(DomainError):
    status_code = 403
    code = "CONSENT_REQUIRED"


@dataclass(frozen=True, slots=True)
class StartedSession:
    session: AssessmentSession
    version: BatteryVersion
    created: bool


def live_key(session_id: uuid.UUID) -> str:
    return f"live-session:{session_id}"


async def start_session(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    principal: Principal,
    *,
    participant_ref: str | None,
    battery_id: uuid.UUID,
    battery_version: int | None,
    visit_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
    device: dict[str, object] | None,
    started_at: datetime | None,
    clock_offset_seconds: float | None,
) -> StartedSession:
    """Start a session for the participant `participant_ref` names (None: a participant token's
    own), or answer the one already started with the same `session_id`."""
    participant: Participant
    if participant_ref is None:
        # A participant token naming no one means itself; staff must name the participant and
        # hear so (422) before anything else is looked up.
        participant = await resolve_participant(
            session, principal, None, Capability.EDIT_PARTICIPANTS, study_id=None
        )
    battery = await session.get(Battery, battery_id)
    if battery is None:
        raise NotFoundError("Battery not found")
    if isinstance(principal, StaffPrincipal):
        await study_access(session, principal, battery.study_id)  # 404 when invisible
    elif battery.study_id != principal.study_id:
        raise NotFoundError("Battery not found")
    if participant_ref is not None:
        participant = await resolve_participant(
            session,
            principal,
            participant_ref,
            Capability.EDIT_PARTICIPANTS,
            study_id=battery.study_id,
        )

    if session_id is not None:
        existing = await session.get(AssessmentSession, session_id)
        if existing is not None:
            return await _started_before(session, existing, participant, battery)

    if participant.status == ParticipantStatus.WITHDRAWN:
        raise ConflictError(
            "The participant has withdrawn; no new sessions are started",
            details={"reason": "PARTICIPANT_WITHDRAWN"},
        )
    study = await session.get(Study, participant.study_id)
    assert study is not None
    if study.status != StudyStatus.ACTIVE:
        raise ConflictError(
            f"The study is {study.status}; sessions start only in active studies",
            details={"reason": "STUDY_NOT_ACTIVE", "study_status": study.status},
        )
    gate = await consent_gate(session, participant)
    if not gate.allowed:
        raise ConsentRequiredError(
            gate.message or "Consent is required before an assessment",
            details={"reason": gate.reason},
        )
    if battery.archived and battery_version is None:
        raise ConflictError("This battery is archived", details={"reason": "BATTERY_ARCHIVED"})
    _, version = await get_battery_version(session, battery.id, battery_version)

    now = utcnow()
    started = min(started_at, now) if started_at is not None else now
    record_id = session_id or uuid.uuid4()
    if visit_id is not None:
        await check_visit_for_session(
            session, visit_id, participant, battery.id, started, session_id=record_id
        )
    # Inserted unless present, not read then inserted: of concurrent starts with one client id
    # exactly one stores, and the others (on PostgreSQL after waiting for its commit) answer the
    # session it stored, as a repeated start does.
    record = await session.scalar(
        insert_unless_present(session, AssessmentSession)
        .values(
            id=record_id,
            study_id=participant.study_id,
            participant_id=participant.id,
            battery_id=battery.id,
            battery_version_id=version.id,
            battery_version=version.version,
            visit_id=visit_id,
            status=SessionStatus.STARTED,
            started_at=started,
            expires_at=started + SESSION_LIFETIME,
            device=device,
            clock_offset_seconds=clock_offset_seconds,
            started_by_user_id=(
                principal.user_id if isinstance(principal, StaffPrincipal) else None
            ),
        )
        .returning(AssessmentSession)
    )
    if record is None:
        stored = await session.get(AssessmentSession, record_id)
        if stored is None:  # stored and erased again between the two statements
            raise ConflictError(
                "This session id is already used by another session",
                details={"session_id": str(record_id)},
            )
        return await _started_before(session, stored, participant, battery)
    await record_about(
        session,
        context,
        AuditSubject.assessment_session(record),
        "session.start",
        after={
            "battery_id": str(battery.id),
            "battery_version": version.version,
            "visit_id": str(visit_id) if visit_id else None,
        },
    )
    await _remember_live(store, record, [])
    return StartedSession(record, version, created=True)


async def _started_before(
    session: AsyncSession, existing: AssessmentSession, participant: Participant, battery: Battery
) -> StartedSession:
    """A start repeated with the client id of a stored session: that session, if it is the same
    participant's with the same battery."""
    if existing.participant_id != participant.id or existing.battery_id != battery.id:
        raise ConflictError(
            "This session id is already used by another session",
            details={"session_id": str(existing.id)},
        )
    _, version = await get_battery_version(session, existing.battery_id, existing.battery_version)
    return StartedSession(existing, version, created=False)


async def _remember_live(store: SessionStore, record: AssessmentSession, tasks: list[str]) -> None:
    ttl = max(60.0, (record.expires_at - utcnow()).total_seconds())
    try:
        await store.set(
            live_key(record.id),
            {
                "participant_id": str(record.participant_id),
                "battery_version": record.battery_version,
                "status": record.status,
                "tasks": tasks,
            },
            ttl,
        )
    except SessionStoreUnavailableError:
        # The database is the record; the live view is rebuilt from it when the store returns.
        logger.warning("session_store_unavailable", operation="live_session")


async def note_tasks_received(
    store: SessionStore, record: AssessmentSession, tasks: list[str]
) -> None:
    """Add tasks to the live view; the database's task results stay the record."""
    try:
        live = await store.get(live_key(record.id))
    except SessionStoreUnavailableError:
        logger.warning("session_store_unavailable", operation="live_session")
        return
    known = live.get("tasks", []) if live else []
    await _remember_live(store, record, sorted({*known, *tasks}))


@dataclass(frozen=True, slots=True)
class LoadedSession:
    """A session with the rows loaded beside it. Holding this keeps them in the database
    session's identity map (which references its objects weakly), so later lookups by key
    (`session.get`) find them without a query for as long as the holder lives."""

    record: AssessmentSession
    participant: Participant
    study: Study
    version: BatteryVersion | None


def _session_with_context(*, lock: bool, with_version: bool) -> Select[*tuple[Any, ...]]:
    statement: Select[*tuple[Any, ...]] = (
        select(AssessmentSession, Participant, Study)
        .join(Participant, Participant.id == AssessmentSession.participant_id)
        .join(Study, Study.id == AssessmentSession.study_id)
        .where(AssessmentSession.id == bindparam("session_id"))
    )
    if with_version:
        statement = statement.add_columns(BatteryVersion).join(
            BatteryVersion, BatteryVersion.id == AssessmentSession.battery_version_id
        )
    if lock:
        # Only the session's row: a lock on its participant or study would queue unrelated work.
        statement = statement.with_for_update(of=AssessmentSession)
    return statement


# Built once per variant (every submission runs one): building and keying the statement cost
# more than running it.
_SESSION_WITH_CONTEXT = {
    (lock, with_version): _session_with_context(lock=lock, with_version=with_version)
    for lock in (False, True)
    for with_version in (False, True)
}


async def load_session_for(
    session: AsyncSession,
    principal: Principal,
    session_id: uuid.UUID,
    capability: Capability = Capability.READ,
    *,
    lock: bool = False,
) -> AssessmentSession:
    """The session if the caller may act on its participant with `capability` (404 else, 403
    for staff who see it without the right); `lock` holds its row until the commit."""
    loaded = await load_session_with_context(session, principal, session_id, capability, lock=lock)
    return loaded.record


async def load_session_with_context(
    session: AsyncSession,
    principal: Principal,
    session_id: uuid.UUID,
    capability: Capability = Capability.READ,
    *,
    lock: bool = False,
    with_version: bool = False,
) -> LoadedSession:
    """As `load_session_for`, in one statement with the session's participant and study (and,
    `with_version`, the battery version it runs): the access check, and the caller for as long
    as it holds the result, find them without asking the database again."""
    statement = _SESSION_WITH_CONTEXT[(lock, with_version)]
    row = (await session.execute(statement, {"session_id": session_id})).first()
    if row is None:
        raise NotFoundError("Session not found")
    columns: tuple[Any, ...] = tuple(row)
    loaded = LoadedSession(columns[0], columns[1], columns[2], columns[3] if with_version else None)
    try:
        await participant_for_principal(
            session, principal, loaded.record.participant_id, capability
        )
    except NotFoundError:
        raise NotFoundError("Session not found") from None
    return loaded


async def end_session(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    principal: Principal,
    session_id: uuid.UUID,
    status: SessionStatus,
) -> AssessmentSession:
    record = await load_session_for(
        session, principal, session_id, Capability.EDIT_PARTICIPANTS, lock=True
    )
    await close_session(session, store, context, record, status)
    return record


async def close_session(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    record: AssessmentSession,
    status: SessionStatus,
) -> None:
    """End `record`, a session the caller was found to reach and whose row it holds locked;
    ending it again with the same status changes nothing."""
    if record.status == status:
        return
    if record.status != SessionStatus.STARTED:
        raise ConflictError(
            f"The session is already {record.status}",
            details={"status": record.status},
        )
    record.status = status
    record.ended_at = utcnow()
    if status is SessionStatus.COMPLETED:
        # The visit's row lock comes before the audit chain's (docs/schedules.md, locks).
        await complete_visit_of_session(session, context, record)
        await announce_session_completed(session, record)
    await record_about(
        session,
        context,
        AuditSubject.assessment_session(record),
        "session.end",
        before={"status": SessionStatus.STARTED.value},
        after={"status": status.value},
    )
    try:
        await store.delete(live_key(record.id))
    except SessionStoreUnavailableError:
        logger.warning("session_store_unavailable", operation="end_session")


async def task_results(session: AsyncSession, session_id: uuid.UUID) -> Sequence[TaskResult]:
    return (await task_results_of(session, [session_id]))[session_id]


async def task_results_of(
    session: AsyncSession, session_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[TaskResult]]:
    """Each session's task results in the order they were accepted, in one query for them all
    (a page of the sessions list embeds them without a query per session)."""
    results: dict[uuid.UUID, list[TaskResult]] = {session_id: [] for session_id in session_ids}
    if session_ids:
        rows = await session.scalars(
            select(TaskResult)
            .where(TaskResult.session_id.in_(list(session_ids)))
            .order_by(TaskResult.accepted_at, TaskResult.task)
        )
        for result in rows:
            results[result.session_id].append(result)
    return results


async def list_sessions(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    participant_id: uuid.UUID | None,
    status: SessionStatus | None,
    start_date: datetime | None,
    end_date: datetime | None,
) -> tuple[Sequence[tuple[AssessmentSession, str]], Pagination]:
    statement = select(AssessmentSession, Participant.participant_code).join(
        Participant, Participant.id == AssessmentSession.participant_id
    )
    if isinstance(principal, ParticipantPrincipal):
        statement = statement.where(AssessmentSession.participant_id == principal.participant_id)
    else:
        if study_id is not None:
            access = await study_access(session, principal, study_id)
            statement = statement.where(AssessmentSession.study_id == study_id)
            if access.site_id is not None:
                statement = statement.where(Participant.site_id == access.site_id)
        else:
            memberships = await member_study_access(session, principal)
            if memberships is not None:
                conditions = [
                    (AssessmentSession.study_id == sid)
                    & (Participant.site_id == a.site_id if a.site_id is not None else true())
                    for sid, a in memberships.items()
                ]
                if not conditions:
                    return [], Pagination.build(page=params.page, per_page=params.per_page, total=0)
                statement = statement.where(or_(*conditions))
    if participant_id is not None:
        statement = statement.where(AssessmentSession.participant_id == participant_id)
    if status is not None:
        statement = statement.where(AssessmentSession.status == status)
    if start_date is not None:
        statement = statement.where(AssessmentSession.started_at >= start_date)
    if end_date is not None:
        statement = statement.where(AssessmentSession.started_at <= end_date)
    total_statement = statement
    sortable = {"started_at": AssessmentSession.started_at, "status": AssessmentSession.status}
    sort_key = params.sort or "started_at"
    if sort_key not in sortable:
        raise ValidationFailedError(
            f"Cannot sort by '{sort_key}'", details={"field": "sort", "allowed": sorted(sortable)}
        )
    total = await session.scalar(
        select(func.count()).select_from(total_statement.order_by(None).subquery())
    )
    column = sortable[sort_key]
    ordering = column.desc() if params.order == "desc" else column.asc()
    rows = (
        await session.execute(
            statement.order_by(ordering, AssessmentSession.id)
            .offset(params.offset)
            .limit(params.per_page)
        )
    ).all()
    return [(row[0], row[1]) for row in rows], Pagination.build(
        page=params.page, per_page=params.per_page, total=total or 0
    )
