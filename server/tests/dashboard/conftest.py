"""A study whose every dashboard figure is known in advance.

Staff, studies, sites and participants come from tests/factories.py; what has no route that
could build it at a chosen instant (sessions started last week, visits whose window closed two
days ago, failed deliveries) is written as rows, with times relative to the moment the world is
built. The expected figures are spelled out beside the rows that make them, and the tests read
them back through the HTTP API.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult
from app.models.audit import ActorType, AuditCategory
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from app.models.outbox import (
    DeliveryStatus,
    DestinationKind,
    EventType,
    OutboxDelivery,
    OutboxEvent,
)
from app.models.participant import Participant, ParticipantStatus
from app.models.schedule import (
    Schedule,
    ScheduleEvent,
    ScheduleVersion,
    Visit,
    VisitAnchor,
    VisitStatus,
)
from app.models.study import MemberRole, StudyStatus
from app.models.user import UserRole
from app.models.webhook import WebhookSubscription
from app.services.audit import AuditContext, record_event
from tests import factories

STUDY_TZ = "Europe/Paris"


def week_start_of(now: datetime, timezone: str) -> datetime:
    """Monday 00:00 of the current week in `timezone`, computed apart from the service."""
    local = now.astimezone(ZoneInfo(timezone))
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime(monday.year, monday.month, monday.day, tzinfo=ZoneInfo(timezone))


@dataclass(frozen=True, slots=True)
class World:
    now: datetime
    week_start: datetime
    study_id: uuid.UUID
    other_study_id: uuid.UUID
    draft_study_id: uuid.UUID
    paris_site_id: uuid.UUID
    nyc_site_id: uuid.UUID
    participants: dict[str, uuid.UUID]
    visits: dict[str, uuid.UUID]
    admin: dict[str, str]
    researcher: dict[str, str]
    researcher_id: uuid.UUID
    coordinator: dict[str, str]
    coordinator_id: uuid.UUID
    nyc_coordinator: dict[str, str]  # site-scoped to NYC
    read_only: dict[str, str]
    outsider: dict[str, str]  # researcher of the other study only
    participant_token: dict[str, str]


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession, settings: Any) -> World:
    return await build_world(client, db_session, settings)


async def build_world(client: httpx.AsyncClient, db: AsyncSession, settings: Any) -> World:
    now = utcnow()
    week_start = week_start_of(now, STUDY_TZ)
    study = await factories.study(db, status=StudyStatus.ACTIVE, name="Dashboard study")
    study.timezone = STUDY_TZ
    other = await factories.study(db, status=StudyStatus.ACTIVE, name="Other study")
    draft = await factories.study(db, name="Draft study")
    await db.commit()
    paris = await factories.site(db, study, "PAR", STUDY_TZ)
    nyc = await factories.site(db, study, "NYC", "America/New_York")
    battery_id, version_id = await factories.battery(db, study, ["simple-rt", "flanker"])
    other_battery_id, other_version_id = await factories.battery(db, other, ["simple-rt"])

    admin = await factories.staff(db, client, UserRole.ADMIN)
    researcher = await factories.study_member(db, client, study, MemberRole.RESEARCHER)
    await factories.member(db, draft, researcher, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db, client, study, MemberRole.COORDINATOR)
    nyc_coordinator = await factories.study_member(db, client, study, MemberRole.COORDINATOR, nyc)
    read_only = await factories.study_member(db, client, study, MemberRole.READ_ONLY)
    outsider = await factories.study_member(db, client, other, MemberRole.RESEARCHER)

    # Participants: 1 screened, 4 enrolled, 1 withdrawn, 1 completed (NYC: 1 enrolled and
    # 1 completed; x1 has no site).
    people: dict[str, Participant] = {}
    for code, site_row, person_status in (
        ("p1", paris, ParticipantStatus.ENROLLED),
        ("p2", paris, ParticipantStatus.ENROLLED),
        ("p3", paris, ParticipantStatus.WITHDRAWN),
        ("p4", paris, ParticipantStatus.SCREENED),
        ("n1", nyc, ParticipantStatus.ENROLLED),
        ("n2", nyc, ParticipantStatus.COMPLETED),
        ("x1", None, ParticipantStatus.ENROLLED),
    ):
        people[code] = await factories.participant(
            db,
            study,
            code.upper(),
            site_row,
            status=person_status,
            settings=settings,
            email=f"{code}@example.org",
            phone="+33612345678",
        )
    stranger = await factories.participant(db, other, "O1")

    # Sessions. This week (since Monday 00:00 Paris): p1 completed, p2 abandoned, n1 completed,
    # n1 still running; before it: p1 completed, n2 completed; another study's one this week.
    last_week = week_start - timedelta(seconds=1)

    def session_row(
        who: Participant, status: SessionStatus, started_at: datetime, *, other_study: bool = False
    ) -> AssessmentSession:
        row = AssessmentSession(
            id=uuid.uuid4(),
            study_id=who.study_id,
            participant_id=who.id,
            battery_id=other_battery_id if other_study else battery_id,
            battery_version_id=other_version_id if other_study else version_id,
            battery_version=1,
            status=status,
            started_at=started_at,
            expires_at=started_at + timedelta(hours=4),
        )
        db.add(row)
        return row

    s_p1 = session_row(people["p1"], SessionStatus.COMPLETED, week_start)
    s_p2 = session_row(people["p2"], SessionStatus.ABANDONED, week_start)
    s_n1 = session_row(people["n1"], SessionStatus.COMPLETED, week_start)
    s_n1_running = session_row(people["n1"], SessionStatus.STARTED, week_start)
    s_p1_old = session_row(people["p1"], SessionStatus.COMPLETED, last_week)
    s_n2_old = session_row(people["n2"], SessionStatus.COMPLETED, last_week)
    s_other = session_row(stranger, SessionStatus.COMPLETED, week_start, other_study=True)
    await db.flush()

    # Tasks: 6 in the study received in the last 30 days (and an older one). Flags:
    # ANTICIPATIONS_HIGH on 2, MISSING_FIELD on 1 (twice), FOCUS_LOST on 1. Lags (receipt -
    # device completion): 10, 20, 30, 40, 3600 s; one task without a device time.
    def flag(code: str, **evidence: Any) -> dict[str, Any]:
        return {"code": code, "task": "simple-rt", "evidence": evidence}

    def task(
        record: AssessmentSession,
        name: str,
        flags: list[dict[str, Any]],
        lag: float | None,
        received_ago: timedelta = timedelta(hours=1),
    ) -> None:
        accepted = now - received_ago
        db.add(
            TaskResult(
                session_id=record.id,
                task=name,
                content_hash=uuid.uuid4().hex * 2,
                source_path=f"sources/{record.id}/{name}.json",
                source_sha256="0" * 64,
                source_bytes=10,
                n_trials=10,
                client_summary=None,
                scores={},
                flags=flags,
                scorer=name,
                scorer_version="1",
                previous_scores=[],
                accepted_at=accepted,
                completed_at=accepted - timedelta(seconds=lag) if lag is not None else None,
            )
        )

    task(s_p1, "simple-rt", [flag("ANTICIPATIONS_HIGH", share=0.2)], 10)
    task(s_p1_old, "flanker", [], 20)
    task(
        s_p2,
        "simple-rt",
        [flag("MISSING_FIELD", field="rt"), flag("MISSING_FIELD", field="correct")],
        30,
    )
    task(s_n1, "simple-rt", [flag("FOCUS_LOST"), flag("ANTICIPATIONS_HIGH", share=0.3)], 40)
    task(s_n2_old, "simple-rt", [], 3600)
    task(s_n1_running, "simple-rt", [], None)
    task(s_other, "simple-rt", [flag("CLOCK_SKEW")], 99999)
    # Received 31 days ago: outside the 30 days data quality covers.
    task(s_p1_old, "simple-rt", [flag("TIMEOUTS_HIGH")], 7, timedelta(days=31))

    # Visits (the reference instant is `now`): upcoming p1/open, n1/open, p1/in 3 days;
    # overdue p2 (closed yesterday, still "scheduled"), n1 (two days ago), p2 (stored missed);
    # completed p1, n1, n1; not counted: p1 in 10 days (not upcoming, not due), p2 cancelled.
    schedule = Schedule(id=uuid.uuid4(), study_id=study.id, current_version=1)
    db.add(schedule)
    await db.flush()
    version = ScheduleVersion(
        id=uuid.uuid4(), schedule_id=schedule.id, version=1, name="Plan", created_at=now
    )
    db.add(version)
    await db.flush()
    schedule_event = ScheduleEvent(
        id=uuid.uuid4(),
        schedule_version_id=version.id,
        position=0,
        key="visit",
        label="Visit",
        anchor=VisitAnchor.ENROLLMENT_DATE,
        offset_days=0,
        window_before_days=0,
        window_after_days=0,
        battery_id=battery_id,
        repeat_count=1,
        reminders=[],
    )
    db.add(schedule_event)
    await db.flush()
    visits: dict[str, uuid.UUID] = {}
    occurrences: dict[str, int] = {}

    def visit(
        name: str, who: str, opens: timedelta, closes: timedelta, status: VisitStatus
    ) -> None:
        person = people[who]
        occurrences[who] = occurrences.get(who, 0) + 1
        opens_at, closes_at = now + opens, now + closes
        row = Visit(
            id=uuid.uuid4(),
            study_id=study.id,
            participant_id=person.id,
            schedule_id=schedule.id,
            schedule_version=1,
            schedule_event_id=schedule_event.id,
            event_key="visit",
            occurrence=occurrences[who],
            label=f"Visit {name}",
            battery_id=battery_id,
            anchor=VisitAnchor.ENROLLMENT_DATE,
            anchor_date=opens_at.date(),
            timezone=STUDY_TZ,
            due_date=opens_at.date(),
            window_start_date=opens_at.date(),
            window_end_date=closes_at.date(),
            due_at=opens_at,
            window_opens_at=opens_at,
            window_closes_at=closes_at,
            status=status,
            completed_at=now - timedelta(days=1) if status is VisitStatus.COMPLETED else None,
        )
        db.add(row)
        visits[name] = row.id

    day, hour = timedelta(days=1), timedelta(hours=1)
    visit("p1-done", "p1", -10 * day, -8 * day, VisitStatus.COMPLETED)
    visit("p1-open", "p1", -day, 2 * day, VisitStatus.OPEN)
    visit("p1-soon", "p1", 3 * day, 5 * day, VisitStatus.SCHEDULED)
    visit("p1-later", "p1", 10 * day, 12 * day, VisitStatus.SCHEDULED)
    visit("p2-late", "p2", -3 * day, -day, VisitStatus.SCHEDULED)
    visit("p2-missed", "p2", -7 * day, -5 * day, VisitStatus.MISSED)
    visit("p2-cancelled", "p2", -day, day, VisitStatus.CANCELLED)
    visit("n1-done", "n1", -20 * day, -18 * day, VisitStatus.COMPLETED)
    visit("n1-done-2", "n1", -9 * day, -7 * day, VisitStatus.COMPLETED)
    visit("n1-late", "n1", -4 * day, -2 * day, VisitStatus.OPEN)
    visit("n1-open", "n1", -2 * hour, day, VisitStatus.SCHEDULED)

    # Webhook deliveries: 2 pending, 1 failed, 1 dead (the oldest, 3 days), 3 delivered.
    subscription = WebhookSubscription(
        id=uuid.uuid4(),
        study_id=study.id,
        url="https://receiver.example.org/hook",
        event_types=["session.completed"],
        active=True,
        secret_encrypted="not-a-real-secret",
        secret_created_at=now,
    )
    db.add(subscription)
    await db.flush()
    for delivery_status, age in (
        (DeliveryStatus.PENDING, hour),
        (DeliveryStatus.PENDING, 2 * hour),
        (DeliveryStatus.FAILED, day),
        (DeliveryStatus.DEAD, 3 * day),
        (DeliveryStatus.DELIVERED, 5 * day),
        (DeliveryStatus.DELIVERED, 6 * day),
        (DeliveryStatus.DELIVERED, 7 * day),
    ):
        event = OutboxEvent(
            id=uuid.uuid4(),
            type=EventType.SESSION_COMPLETED,
            version=1,
            study_id=study.id,
            participant_id=None,
            payload={},
            occurred_at=now - age,
        )
        db.add(event)
        await db.flush()
        db.add(
            OutboxDelivery(
                event_id=event.id,
                destination=DestinationKind.WEBHOOK,
                subscription_id=subscription.id,
                status=delivery_status,
                created_at=now - age,
            )
        )

    # Notifications: scheduled 2 (n1's is 1 h late), sending 1, failed 2 (p1, n1); sent and
    # cancelled ones are not counted.
    for who, notification_status, due in (
        ("p1", NotificationStatus.SCHEDULED, now + hour),
        ("n1", NotificationStatus.SCHEDULED, now - hour),
        ("p2", NotificationStatus.SENDING, now),
        ("p1", NotificationStatus.FAILED, now - day),
        ("n1", NotificationStatus.FAILED, now - day),
        ("p1", NotificationStatus.SENT, now - day),
        ("n1", NotificationStatus.CANCELLED, now - day),
    ):
        db.add(
            Notification(
                study_id=study.id,
                participant_id=people[who].id,
                kind=NotificationKind.TEST,
                channel=NotificationChannel.EMAIL,
                status=notification_status,
                send_at=due,
                due_at=due,
                language="en",
                body="Hello",
                dedupe_key=uuid.uuid4().hex,
            )
        )
    await db.commit()

    # Audit events, oldest first (the feed answers latest first).
    as_user = AuditContext(ActorType.USER, str(researcher.user_id), ip="203.0.113.9")
    await record_event(
        db,
        as_user,
        action="battery.update",
        category=AuditCategory.CONFIG,
        entity_type="battery",
        entity_id=battery_id,
        study_id=study.id,
    )
    await record_event(
        db,
        AuditContext(ActorType.USER, str(coordinator.user_id)),
        action="participant.create",
        category=AuditCategory.DATA,
        entity_type="participant",
        entity_id=people["p1"].id,
        study_id=study.id,
        participant_id=people["p1"].id,
        after={"participant_id": "P1", "email": "p1@example.org"},
    )
    await record_event(
        db,
        AuditContext(ActorType.PARTICIPANT, str(people["n1"].id)),
        action="session.end",
        category=AuditCategory.ASSESSMENT,
        entity_type="session",
        entity_id=s_n1.id,
        study_id=study.id,
        participant_id=people["n1"].id,
    )
    await record_event(
        db,
        AuditContext.system(),
        action="visits.status_advanced",
        category=AuditCategory.VISIT,
        entity_type="visit",
        entity_id=visits["p2-late"],
        study_id=study.id,
        participant_id=people["p2"].id,
    )
    await record_event(
        db,
        AuditContext(ActorType.PARTICIPANT, str(people["n1"].id), ip="198.51.100.7"),
        action="participant.login",
        category=AuditCategory.AUTH,
        entity_type="participant",
        entity_id=people["n1"].id,
        study_id=study.id,
        participant_id=people["n1"].id,
    )
    await record_event(
        db,
        AuditContext(ActorType.USER, str(admin.user_id), ip="203.0.113.10"),
        action="participant.update",
        category=AuditCategory.DATA,
        entity_type="participant",
        entity_id=people["p2"].id,
        study_id=study.id,
        participant_id=people["p2"].id,
        before={"email": "p2-old@example.org"},
        after={"email": "p2@example.org"},
        reason="Typo in the address",
    )
    await record_event(
        db,
        AuditContext(ActorType.USER, str(outsider.user_id)),
        action="battery.update",
        category=AuditCategory.CONFIG,
        entity_type="battery",
        entity_id=other_battery_id,
        study_id=other.id,
    )
    await db.commit()
    token = await factories.participant_headers(db, settings, people["p1"])
    return World(
        now=now,
        week_start=week_start,
        study_id=study.id,
        other_study_id=other.id,
        draft_study_id=draft.id,
        paris_site_id=paris.id,
        nyc_site_id=nyc.id,
        participants={code: row.id for code, row in people.items()},
        visits=visits,
        admin=admin.headers,
        researcher=researcher.headers,
        researcher_id=researcher.user_id,
        coordinator=coordinator.headers,
        coordinator_id=coordinator.user_id,
        nyc_coordinator=nyc_coordinator.headers,
        read_only=read_only.headers,
        outsider=outsider.headers,
        participant_token=token,
    )


async def get_json(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int = 200
) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status_code == status, response.text
    return response.json()
