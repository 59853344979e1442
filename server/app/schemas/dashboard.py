"""The dashboard's answers (docs/dashboard.md): counts and shares, never contact details."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from app.models.audit import ActorType, AuditCategory
from app.models.schedule import VisitStatus
from app.models.study import StudyStatus


class ParticipantCounts(BaseModel):
    screened: int
    enrolled: int
    withdrawn: int
    completed: int
    total: int


class WeekSessions(BaseModel):
    """Sessions started since `week_start` (Monday 00:00 in the study's time zone), by status
    as stored now."""

    week_start: datetime
    total: int
    started: int = Field(description="Still running")
    completed: int
    abandoned: int
    expired: int


class VisitCounts(BaseModel):
    upcoming_7_days: int = Field(
        description="Pending visits open now or opening within 7 days (window not yet closed)"
    )
    overdue: int = Field(description="Visits whose window closed without a completed session")
    completed: int
    due: int = Field(description="Completed visits plus overdue ones")
    adherence: float | None = Field(description="completed / due; null when nothing is due")


class StudySummary(BaseModel):
    study_id: uuid.UUID
    code: str
    name: str
    status: StudyStatus
    timezone: str
    site_id: uuid.UUID | None = Field(
        description="The caller's site when their membership is site-scoped: every figure "
        "counts that site's participants only"
    )
    participants: ParticipantCounts
    sessions_this_week: WeekSessions
    visits: VisitCounts


class ActivityItem(BaseModel):
    """One audit event, reduced to what a dashboard shows: no identifiers of the subject, no
    before/after state, no address, user agent or reason."""

    study_id: uuid.UUID
    occurred_at: datetime
    action: str
    category: AuditCategory
    actor_type: ActorType
    actor_id: str | None
    actor_role: str | None = Field(
        description="The actor's role in the study (admin, researcher, coordinator, read_only), "
        "`participant`, or null for the system and for former members"
    )
    entity_type: str | None


class DashboardVisit(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    participant_id: uuid.UUID
    participant_code: str
    site_id: uuid.UUID | None
    label: str
    event_key: str
    occurrence: int
    due_date: date
    window_start: datetime
    window_end: datetime
    status: VisitStatus = Field(description="As of the request")


class DashboardRead(BaseModel):
    """`GET /api/dashboard`: the caller's active and paused studies."""

    generated_at: datetime
    studies: list[StudySummary]
    recent_activity: list[ActivityItem] = Field(description="Latest first, at most 20")
    upcoming_visits: list[DashboardVisit] = Field(
        description="Soonest window first, at most 20; the counts are in each study's `visits`"
    )
    overdue_visits: list[DashboardVisit] = Field(
        description="Most recently closed window first, at most 20"
    )


class SiteAdherence(BaseModel):
    site_id: uuid.UUID | None = Field(description="null: participants without a site")
    code: str | None
    name: str | None
    participants: int
    visits_completed: int
    visits_due: int
    adherence: float | None


class FlagShare(BaseModel):
    code: str
    tasks: int = Field(description="Tasks carrying the flag at least once")
    share: float = Field(description="tasks / all tasks")


class SyncLag(BaseModel):
    """Server receipt minus the device's completion time of each task that gave one, in
    seconds (nearest-rank percentiles)."""

    tasks_measured: int
    median_seconds: float | None
    p90_seconds: float | None
    max_seconds: float | None


class DataQuality(BaseModel):
    """The tasks received in the 30 days before the request."""

    since: datetime
    tasks: int = Field(description="Tasks received since `since` for the study's sessions")
    flags: list[FlagShare]
    sync_lag: SyncLag


class WebhookBacklog(BaseModel):
    pending: int
    delivering: int
    failed: int = Field(description="Last attempt failed; another is scheduled")
    dead: int = Field(description="Every attempt failed; only a redelivery sends it again")
    oldest_undelivered_at: datetime | None


class NotificationBacklog(BaseModel):
    scheduled: int
    overdue: int = Field(description="Scheduled rows whose time has passed by over 15 minutes")
    sending: int
    failed: int


class Integrations(BaseModel):
    webhook_deliveries: WebhookBacklog | None = Field(
        description="null for callers without the configure capability"
    )
    notifications: NotificationBacklog


class StudyDashboardRead(StudySummary):
    """`GET /api/dashboard/studies/{id}`."""

    generated_at: datetime
    sites: list[SiteAdherence]
    data_quality: DataQuality
    integrations: Integrations
    recent_activity: list[ActivityItem]
    upcoming_visits: list[DashboardVisit]
    overdue_visits: list[DashboardVisit]
