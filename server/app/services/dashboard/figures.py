"""The dashboard's aggregate queries. Each is one statement over the scopes it is given, grouped
by study (or by site or status), and answers plain counts; nothing loops over stored rows."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    and_,
    case,
    distinct,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.assessment import AssessmentSession, SessionStatus, TaskResult
from app.models.audit import AuditCategory, AuditEvent
from app.models.notification import Notification, NotificationStatus
from app.models.outbox import DeliveryStatus, OutboxDelivery, OutboxEvent
from app.models.participant import Participant, ParticipantStatus
from app.models.schedule import PENDING_VISIT_STATUSES, Visit, VisitStatus
from app.models.study import Site
from app.services.dashboard.scope import StudyScope, restrict
from app.services.dashboard.sql import (
    array_elements,
    member_text,
    nearest_rank_percentiles,
    seconds_between,
)
from app.services.policy import Capability

UPCOMING_DAYS = 7
# Data quality describes the tasks received lately: what needs attention now, at a cost that
# follows the study's recent activity rather than its whole history.
QUALITY_WINDOW = timedelta(days=30)
# A scheduled notification this late is stuck, not merely waiting for the next dispatcher run.
NOTIFICATION_OVERDUE_AFTER = timedelta(minutes=15)
# Categories every reader sees in the activity feed; holders of the audit capability see every
# category but `auth` (sign-ins are about accounts, not about the study's work).
RESEARCH_CATEGORIES = (
    AuditCategory.ASSESSMENT,
    AuditCategory.VISIT,
    AuditCategory.CONSENT,
    AuditCategory.DATA,
)


def _count(value: Any) -> int:
    return int(value or 0)


# ---------------------------------------------------------------------------------------------
# Participants and sessions


async def participant_counts(
    session: AsyncSession, scopes: Sequence[StudyScope]
) -> dict[uuid.UUID, dict[ParticipantStatus, int]]:
    statement = select(Participant.study_id, Participant.status, func.count()).group_by(
        Participant.study_id, Participant.status
    )
    statement = restrict(statement, scopes, Participant.study_id, site_column=Participant.site_id)
    counts: dict[uuid.UUID, dict[ParticipantStatus, int]] = defaultdict(dict)
    for study_id, status, number in await session.execute(statement):
        counts[study_id][status] = number
    return counts


async def week_session_counts(
    session: AsyncSession, scopes: Sequence[StudyScope], week_starts: dict[uuid.UUID, datetime]
) -> dict[uuid.UUID, dict[SessionStatus, int]]:
    """Sessions started since each study's week start, by status."""
    if not scopes:
        return {}
    since = or_(
        *(
            and_(AssessmentSession.study_id == study_id, AssessmentSession.started_at >= start)
            for study_id, start in week_starts.items()
        )
    )
    statement = (
        select(AssessmentSession.study_id, AssessmentSession.status, func.count())
        .where(since)
        .group_by(AssessmentSession.study_id, AssessmentSession.status)
    )
    statement = restrict(
        statement,
        scopes,
        AssessmentSession.study_id,
        participant_column=AssessmentSession.participant_id,
    )
    counts: dict[uuid.UUID, dict[SessionStatus, int]] = defaultdict(dict)
    for study_id, status, number in await session.execute(statement):
        counts[study_id][status] = number
    return counts


# ---------------------------------------------------------------------------------------------
# Visits


def upcoming_condition(now: datetime) -> ColumnElement[bool]:
    """Open now or opening within UPCOMING_DAYS, as `GET /api/schedules/visits/upcoming`."""
    return and_(
        Visit.status.in_(PENDING_VISIT_STATUSES),
        Visit.window_closes_at > now,
        Visit.window_opens_at <= now + timedelta(days=UPCOMING_DAYS),
    )


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """Missed as of `now`: the window closed and no session completed the visit."""
    return and_(Visit.status.in_(PENDING_VISIT_STATUSES), Visit.window_closes_at <= now)


@dataclass(slots=True)
class VisitTally:
    upcoming: int = 0
    overdue: int = 0
    completed: int = 0

    @property
    def due(self) -> int:
        return self.completed + self.overdue

    @property
    def adherence(self) -> float | None:
        return round(self.completed / self.due, 4) if self.due else None


def _visit_sums(now: datetime) -> list[ColumnElement[Any]]:
    return [
        func.sum(case((upcoming_condition(now), 1), else_=0)),
        func.sum(case((overdue_condition(now), 1), else_=0)),
        func.sum(case((Visit.status == VisitStatus.COMPLETED, 1), else_=0)),
    ]


async def visit_tallies(
    session: AsyncSession, scopes: Sequence[StudyScope], now: datetime
) -> dict[uuid.UUID, VisitTally]:
    statement = (
        select(Visit.study_id, *_visit_sums(now))
        .where(Visit.status != VisitStatus.CANCELLED)
        .group_by(Visit.study_id)
    )
    statement = restrict(statement, scopes, Visit.study_id, participant_column=Visit.participant_id)
    return {
        study_id: VisitTally(_count(upcoming), _count(overdue), _count(completed))
        for study_id, upcoming, overdue, completed in await session.execute(statement)
    }


@dataclass(slots=True)
class SiteFigures:
    site: Site | None
    participants: int = 0
    visits: VisitTally = field(default_factory=VisitTally)


async def site_figures(
    session: AsyncSession, scope: StudyScope, now: datetime
) -> list[SiteFigures]:
    """Participants and visit adherence per site of one study (the member's site alone when
    scoped); participants without a site make a row of their own when there are any."""
    sites_statement = select(Site).where(Site.study_id == scope.study_id).order_by(Site.code)
    if scope.site_id is not None:
        sites_statement = sites_statement.where(Site.id == scope.site_id)
    rows: dict[uuid.UUID | None, SiteFigures] = {
        site.id: SiteFigures(site) for site in (await session.scalars(sites_statement)).all()
    }

    def row(site_id: uuid.UUID | None) -> SiteFigures:
        return rows.setdefault(site_id, SiteFigures(None))

    people = restrict(
        select(Participant.site_id, func.count()).group_by(Participant.site_id),
        [scope],
        Participant.study_id,
        site_column=Participant.site_id,
    )
    for site_id, number in await session.execute(people):
        row(site_id).participants = number
    visits = restrict(
        select(Participant.site_id, *_visit_sums(now))
        .join(Participant, Participant.id == Visit.participant_id)
        .where(Visit.status != VisitStatus.CANCELLED)
        .group_by(Participant.site_id),
        [scope],
        Visit.study_id,
        site_column=Participant.site_id,
    )
    for site_id, upcoming, overdue, completed in await session.execute(visits):
        row(site_id).visits = VisitTally(_count(upcoming), _count(overdue), _count(completed))
    return list(rows.values())


async def visit_list(
    session: AsyncSession,
    scopes: Sequence[StudyScope],
    now: datetime,
    *,
    overdue: bool,
    limit: int,
) -> list[tuple[Visit, str, uuid.UUID | None]]:
    """The first `limit` upcoming visits (soonest window first) or overdue ones (most recently
    closed first), with their participant's code and site."""
    statement = select(Visit, Participant.participant_code, Participant.site_id).join(
        Participant, Participant.id == Visit.participant_id
    )
    if overdue:
        statement = statement.where(overdue_condition(now)).order_by(
            Visit.window_closes_at.desc(), Visit.id
        )
    else:
        statement = statement.where(upcoming_condition(now)).order_by(
            Visit.window_opens_at, Visit.id
        )
    statement = restrict(statement, scopes, Visit.study_id, site_column=Participant.site_id)
    return [
        (visit, code, site_id)
        for visit, code, site_id in await session.execute(statement.limit(limit))
    ]


# ---------------------------------------------------------------------------------------------
# Data quality


def _tasks_of(
    scope: StudyScope, since: datetime, *columns: Any, flags: FromClause | None = None
) -> Any:
    """`columns` over the tasks of the scope's sessions received since `since` (and each
    task's flags, one row per flag, when `flags` is given)."""
    statement = (
        select(*columns)
        .select_from(TaskResult)
        .join(AssessmentSession, AssessmentSession.id == TaskResult.session_id)
        .where(TaskResult.accepted_at >= since)
    )
    if flags is not None:
        statement = statement.join(flags, true())
    return restrict(
        statement,
        [scope],
        AssessmentSession.study_id,
        participant_column=AssessmentSession.participant_id,
    )


@dataclass(frozen=True, slots=True)
class QualityFigures:
    tasks: int
    tasks_by_flag: dict[str, int]
    lag_measured: int
    lag_median: float | None
    lag_p90: float | None
    lag_max: float | None


async def without_jit(session: AsyncSession, dialect: str) -> None:
    """Turn PostgreSQL's JIT compilation off for the rest of the transaction (the request).
    The planner believes a JSON array holds 100 elements, so the flag query looks costly
    enough to compile; compiling then takes about a second for a query that runs in tens of
    milliseconds (docs/dashboard.md, performance)."""
    if dialect == "postgresql":
        await session.execute(text("SET LOCAL jit = off"))


async def quality_figures(
    session: AsyncSession, scope: StudyScope, since: datetime, dialect: str
) -> QualityFigures:
    """How many tasks the study received since `since`, how many of them carry each flag code
    (a task with several flags of one code counts once), and the spread of their sync lag."""
    # The study's recent tasks are joined with their sessions once (a CTE), then read twice in
    # one statement: one row of counts and lag percentiles (a lag is null without a device
    # time, and then not ranked), and one row per flag code.
    lag = seconds_between(TaskResult.accepted_at, TaskResult.completed_at, dialect)
    recent = _tasks_of(
        scope,
        since,
        TaskResult.id.label("task_id"),
        TaskResult.flags.label("flags"),
        lag.label("lag"),
    ).cte("recent")
    stats = nearest_rank_percentiles(select(recent.c.lag), (50, 90)).add_columns(
        literal_column("NULL").label("code")
    )
    element = array_elements(recent.c.flags, dialect)
    code = member_text(element.c.value, "code", dialect)
    by_flag: Select[*tuple[Any, ...]] = (
        select(
            func.count(distinct(recent.c.task_id)),
            *(literal_column("NULL") for _ in range(4)),
            code,
        )
        .select_from(recent)
        .join(element, true())
        .where(recent.c.flags != [], code.is_not(None))
        .group_by(code)
    )
    # Only the first row has no code: the flag rows leave flags without one out.
    rows: Sequence[Row[*tuple[Any, ...]]] = (await session.execute(union_all(stats, by_flag))).all()
    tasks, measured, median, p90, largest, _ = next(row for row in rows if row[5] is None)
    tasks_by_flag = {str(row[5]): int(row[0]) for row in rows if row[5] is not None}
    return QualityFigures(
        tasks=_count(tasks),
        tasks_by_flag=tasks_by_flag,
        lag_measured=_count(measured),
        lag_median=_seconds(median),
        lag_p90=_seconds(p90),
        lag_max=_seconds(largest),
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


# ---------------------------------------------------------------------------------------------
# Integrations


@dataclass(frozen=True, slots=True)
class WebhookFigures:
    by_status: dict[DeliveryStatus, int]
    oldest_undelivered_at: datetime | None


async def webhook_figures(session: AsyncSession, scope: StudyScope) -> WebhookFigures:
    """Deliveries of the study's events that have not been delivered, by status. Webhooks are
    study configuration: the figures cover the whole study, as the delivery log does."""
    statement = (
        select(OutboxDelivery.status, func.count(), func.min(OutboxDelivery.created_at))
        .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
        .where(
            OutboxEvent.study_id == scope.study_id,
            OutboxDelivery.status != DeliveryStatus.DELIVERED,
        )
        .group_by(OutboxDelivery.status)
    )
    by_status: dict[DeliveryStatus, int] = {}
    oldest: datetime | None = None
    for status, number, first in await session.execute(statement):
        by_status[status] = number
        oldest = first if oldest is None or first < oldest else oldest
    return WebhookFigures(by_status, oldest)


@dataclass(frozen=True, slots=True)
class NotificationFigures:
    by_status: dict[NotificationStatus, int]
    overdue: int


async def notification_figures(
    session: AsyncSession, scope: StudyScope, now: datetime
) -> NotificationFigures:
    """Notifications still to send, being sent, or failed (of the member's site if scoped)."""
    late = and_(
        Notification.status == NotificationStatus.SCHEDULED,
        Notification.due_at < now - NOTIFICATION_OVERDUE_AFTER,
    )
    statement = (
        select(Notification.status, func.count(), func.sum(case((late, 1), else_=0)))
        .where(
            Notification.status.in_(
                (
                    NotificationStatus.SCHEDULED,
                    NotificationStatus.SENDING,
                    NotificationStatus.FAILED,
                )
            )
        )
        .group_by(Notification.status)
    )
    statement = restrict(
        statement, [scope], Notification.study_id, participant_column=Notification.participant_id
    )
    by_status: dict[NotificationStatus, int] = {}
    overdue = 0
    for status, number, late_number in await session.execute(statement):
        by_status[status] = number
        overdue += _count(late_number)
    return NotificationFigures(by_status, overdue)


# ---------------------------------------------------------------------------------------------
# Recent activity


async def recent_events(
    session: AsyncSession, scopes: Sequence[StudyScope], *, limit: int
) -> list[AuditEvent]:
    """The latest events of the scopes' studies, as the audit trail scopes them (a site-scoped
    member: events about no participant or about one of their site). Holders of the audit
    capability see every category but `auth`; other readers the research categories only."""
    conditions: list[ColumnElement[bool]] = []
    for scope in scopes:
        condition = AuditEvent.study_id == scope.study_id
        if scope.access.can(Capability.AUDIT):
            condition = and_(condition, AuditEvent.category != AuditCategory.AUTH)
        else:
            condition = and_(condition, AuditEvent.category.in_(RESEARCH_CATEGORIES))
        if scope.site_id is not None:
            of_the_site = select(Participant.id).where(
                Participant.study_id == scope.study_id, Participant.site_id == scope.site_id
            )
            condition = and_(
                condition,
                or_(
                    AuditEvent.participant_id.is_(None), AuditEvent.participant_id.in_(of_the_site)
                ),
            )
        conditions.append(condition)
    statement = (
        select(AuditEvent)
        .where(or_(*conditions) if conditions else false())
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.sequence.desc())
        .limit(limit)
    )
    return list((await session.scalars(statement)).all())
