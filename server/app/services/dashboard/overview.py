"""The two answers of the dashboard, assembled from `figures` (docs/dashboard.md)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.assessment import SessionStatus
from app.models.audit import ActorType, AuditEvent
from app.models.notification import NotificationStatus
from app.models.outbox import DeliveryStatus
from app.models.participant import ParticipantStatus
from app.models.study import StudyMember
from app.models.user import User, UserRole
from app.schemas.dashboard import (
    ActivityItem,
    DashboardRead,
    DashboardVisit,
    DataQuality,
    FlagShare,
    Integrations,
    NotificationBacklog,
    ParticipantCounts,
    SiteAdherence,
    StudyDashboardRead,
    StudySummary,
    SyncLag,
    VisitCounts,
    WebhookBacklog,
    WeekSessions,
)
from app.services.dashboard import figures
from app.services.dashboard.figures import VisitTally
from app.services.dashboard.scope import StudyScope, one_study, summarised_studies
from app.services.policy import Capability
from app.services.principals import StaffPrincipal
from app.services.schedules.timing import local_date, start_of_day
from app.services.schedules.visits import status_now

LIST_LIMIT = 20


def week_start(now: datetime, timezone: str) -> datetime:
    """The instant the current week began: Monday 00:00 in `timezone` (ISO weeks)."""
    today = local_date(now, timezone)
    return start_of_day(today - timedelta(days=today.weekday()), timezone)


def _participants(counts: dict[ParticipantStatus, int]) -> ParticipantCounts:
    return ParticipantCounts(
        screened=counts.get(ParticipantStatus.SCREENED, 0),
        enrolled=counts.get(ParticipantStatus.ENROLLED, 0),
        withdrawn=counts.get(ParticipantStatus.WITHDRAWN, 0),
        completed=counts.get(ParticipantStatus.COMPLETED, 0),
        total=sum(counts.values()),
    )


def _week(start: datetime, counts: dict[SessionStatus, int]) -> WeekSessions:
    return WeekSessions(
        week_start=start,
        total=sum(counts.values()),
        started=counts.get(SessionStatus.STARTED, 0),
        completed=counts.get(SessionStatus.COMPLETED, 0),
        abandoned=counts.get(SessionStatus.ABANDONED, 0),
        expired=counts.get(SessionStatus.EXPIRED, 0),
    )


def _visits(tally: VisitTally) -> VisitCounts:
    return VisitCounts(
        upcoming_7_days=tally.upcoming,
        overdue=tally.overdue,
        completed=tally.completed,
        due=tally.due,
        adherence=tally.adherence,
    )


async def _summaries(
    session: AsyncSession,
    scopes: Sequence[StudyScope],
    now: datetime,
    visits: dict[uuid.UUID, VisitTally] | None = None,
) -> list[StudySummary]:
    """The summary of each study; `visits` when the caller has counted them already."""
    starts = {scope.study_id: week_start(now, scope.study.timezone) for scope in scopes}
    people = await figures.participant_counts(session, scopes)
    sessions = await figures.week_session_counts(session, scopes, starts)
    if visits is None:
        visits = await figures.visit_tallies(session, scopes, now)
    return [
        StudySummary(
            study_id=scope.study_id,
            code=scope.study.code,
            name=scope.study.name,
            status=scope.study.status,
            timezone=scope.study.timezone,
            site_id=scope.site_id,
            participants=_participants(people.get(scope.study_id, {})),
            sessions_this_week=_week(starts[scope.study_id], sessions.get(scope.study_id, {})),
            visits=_visits(visits.get(scope.study_id, VisitTally())),
        )
        for scope in scopes
    ]


async def _visit_items(
    session: AsyncSession, scopes: Sequence[StudyScope], now: datetime, *, overdue: bool
) -> list[DashboardVisit]:
    if not scopes:
        return []
    rows = await figures.visit_list(session, scopes, now, overdue=overdue, limit=LIST_LIMIT)
    return [
        DashboardVisit(
            id=visit.id,
            study_id=visit.study_id,
            participant_id=visit.participant_id,
            participant_code=code,
            site_id=site_id,
            label=visit.label,
            event_key=visit.event_key,
            occurrence=visit.occurrence,
            due_date=visit.due_date,
            window_start=visit.window_opens_at,
            window_end=visit.window_closes_at,
            status=status_now(visit, now),
        )
        for visit, code, site_id in rows
    ]


async def _actor_roles(
    session: AsyncSession, events: Sequence[AuditEvent]
) -> dict[tuple[uuid.UUID | None, str], str]:
    """The study role of each staff actor of `events` (two queries for the whole list)."""
    user_ids: set[uuid.UUID] = set()
    for event in events:
        if event.actor_type is ActorType.USER and event.actor_id:
            try:
                user_ids.add(uuid.UUID(event.actor_id))
            except ValueError:
                continue
    if not user_ids:
        return {}
    admins = set(
        (
            await session.scalars(
                select(User.id).where(User.id.in_(user_ids), User.role == UserRole.ADMIN)
            )
        ).all()
    )
    study_ids = {event.study_id for event in events if event.study_id is not None}
    members = await session.execute(
        select(StudyMember.study_id, StudyMember.user_id, StudyMember.role).where(
            StudyMember.user_id.in_(user_ids), StudyMember.study_id.in_(study_ids)
        )
    )
    roles: dict[tuple[uuid.UUID | None, str], str] = {
        (study_id, str(user_id)): str(role) for study_id, user_id, role in members
    }
    for study_id in study_ids:
        for admin in admins:
            roles[(study_id, str(admin))] = UserRole.ADMIN.value
    return roles


async def _activity(session: AsyncSession, scopes: Sequence[StudyScope]) -> list[ActivityItem]:
    if not scopes:
        return []
    events = await figures.recent_events(session, scopes, limit=LIST_LIMIT)
    roles = await _actor_roles(session, events)
    items: list[ActivityItem] = []
    for event in events:
        assert event.study_id is not None  # selected by study
        role: str | None = None
        if event.actor_type is ActorType.PARTICIPANT:
            role = "participant"
        elif event.actor_type is ActorType.USER and event.actor_id is not None:
            role = roles.get((event.study_id, event.actor_id))
        items.append(
            ActivityItem(
                study_id=event.study_id,
                occurred_at=event.occurred_at,
                action=event.action,
                category=event.category,
                actor_type=event.actor_type,
                actor_id=event.actor_id,
                actor_role=role,
                entity_type=event.entity_type,
            )
        )
    return items


async def dashboard(session: AsyncSession, principal: StaffPrincipal) -> DashboardRead:
    """Every active or paused study the caller can see, in summary, with the latest activity
    and the first upcoming and overdue visits across them."""
    now = utcnow()
    await figures.without_jit(session, session.get_bind().dialect.name)
    scopes = await summarised_studies(session, principal)
    return DashboardRead(
        generated_at=now,
        studies=await _summaries(session, scopes, now) if scopes else [],
        recent_activity=await _activity(session, scopes),
        upcoming_visits=await _visit_items(session, scopes, now, overdue=False),
        overdue_visits=await _visit_items(session, scopes, now, overdue=True),
    )


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def study_dashboard(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID
) -> StudyDashboardRead:
    """One study in full, whatever its status (404 when the caller cannot see it)."""
    now = utcnow()
    scope = await one_study(session, principal, study_id)
    dialect = session.get_bind().dialect.name
    await figures.without_jit(session, dialect)
    sites = await figures.site_figures(session, scope, now)
    # The study's visit counts are the sum of its sites' (one pass over the visits, not two).
    study_visits = VisitTally(
        upcoming=sum(row.visits.upcoming for row in sites),
        overdue=sum(row.visits.overdue for row in sites),
        completed=sum(row.visits.completed for row in sites),
    )
    (summary,) = await _summaries(session, [scope], now, {scope.study_id: study_visits})
    since = now - figures.QUALITY_WINDOW
    quality = await figures.quality_figures(session, scope, since, dialect)
    webhooks = (
        await figures.webhook_figures(session, scope)
        if scope.access.can(Capability.CONFIGURE_STUDY)
        else None
    )
    notifications = await figures.notification_figures(session, scope, now)
    return StudyDashboardRead(
        **summary.model_dump(),
        generated_at=now,
        sites=[
            SiteAdherence(
                site_id=row.site.id if row.site is not None else None,
                code=row.site.code if row.site is not None else None,
                name=row.site.name if row.site is not None else None,
                participants=row.participants,
                visits_completed=row.visits.completed,
                visits_due=row.visits.due,
                adherence=row.visits.adherence,
            )
            for row in sites
        ],
        data_quality=DataQuality(
            since=since,
            tasks=quality.tasks,
            flags=[
                FlagShare(code=code, tasks=number, share=_share(number, quality.tasks))
                for code, number in sorted(quality.tasks_by_flag.items())
            ],
            sync_lag=SyncLag(
                tasks_measured=quality.lag_measured,
                median_seconds=quality.lag_median,
                p90_seconds=quality.lag_p90,
                max_seconds=quality.lag_max,
            ),
        ),
        integrations=Integrations(
            webhook_deliveries=WebhookBacklog(
                pending=webhooks.by_status.get(DeliveryStatus.PENDING, 0),
                delivering=webhooks.by_status.get(DeliveryStatus.DELIVERING, 0),
                failed=webhooks.by_status.get(DeliveryStatus.FAILED, 0),
                dead=webhooks.by_status.get(DeliveryStatus.DEAD, 0),
                oldest_undelivered_at=webhooks.oldest_undelivered_at,
            )
            if webhooks is not None
            else None,
            notifications=NotificationBacklog(
                scheduled=notifications.by_status.get(NotificationStatus.SCHEDULED, 0),
                overdue=notifications.overdue,
                sending=notifications.by_status.get(NotificationStatus.SENDING, 0),
                failed=notifications.by_status.get(NotificationStatus.FAILED, 0),
            ),
        ),
        recent_activity=await _activity(session, [scope]),
        upcoming_visits=await _visit_items(session, [scope], now, overdue=False),
        overdue_visits=await _visit_items(session, [scope], now, overdue=True),
    )
