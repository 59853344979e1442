"""schedule_notification and cancel_pending: the service the visit scheduler calls."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import ValidationFailedError
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.participant import Participant, ParticipantStatus
from app.services.notifications.quiet_hours import QuietHours
from app.services.notifications.scheduling import cancel_pending, schedule_notification
from tests.notifications.helpers import Person, notify, person, reread


def _fields(who: Person, **overrides: Any) -> dict[str, Any]:
    return {
        "study_id": who.study_id,
        "participant_id": who.id,
        "visit_id": None,
        "kind": NotificationKind.VISIT_REMINDER,
        "channel": NotificationChannel.EMAIL,
        "send_at": utcnow() + timedelta(days=1),
        "language": "en",
        "subject": "Your visit",
        "body": "Your visit opens tomorrow.",
        "dedupe_key": f"visit:{uuid.uuid4()}:reminder-1:email",
        **overrides,
    }


async def test_the_same_dedupe_key_inserts_once(
    db_session: AsyncSession, settings: Settings
) -> None:
    who = await person(db_session, settings)
    fields = _fields(who)
    first = await schedule_notification(db_session, **fields)
    second = await schedule_notification(db_session, **{**fields, "body": "Other text"})

    assert first is not None and second is None
    assert (first.status, first.attempts, first.send_at, first.due_at) == (
        NotificationStatus.SCHEDULED,
        0,
        fields["send_at"],
        fields["send_at"],
    )
    assert (await reread(db_session, first.id)).body == "Your visit opens tomorrow."


async def test_withdrawn_and_unsubscribed_participants_get_a_cancelled_row(
    db_session: AsyncSession, settings: Settings
) -> None:
    withdrawn = await person(db_session, settings)
    await db_session.execute(
        update(Participant)
        .where(Participant.id == withdrawn.id)
        .values(status=ParticipantStatus.WITHDRAWN)
    )
    opted_out = await person(db_session, settings)
    db_session.add(
        NotificationOptOut(
            id=uuid.uuid4(),
            participant_id=opted_out.id,
            channel=NotificationChannel.SMS,
            source="link",
            created_at=utcnow(),
        )
    )
    await db_session.flush()

    for_withdrawn = await schedule_notification(db_session, **_fields(withdrawn))
    sms = await schedule_notification(
        db_session,
        **_fields(opted_out, channel=NotificationChannel.SMS, subject=None),
    )
    email = await schedule_notification(db_session, **_fields(opted_out))

    assert for_withdrawn is not None and sms is not None and email is not None
    assert (for_withdrawn.status, for_withdrawn.cancel_reason) == (
        NotificationStatus.CANCELLED,
        "participant_withdrawn",
    )
    assert (sms.status, sms.cancel_reason) == (NotificationStatus.CANCELLED, "unsubscribed")
    assert email.status is NotificationStatus.SCHEDULED


async def test_quiet_hours_are_read_in_the_participants_time_zone(
    db_session: AsyncSession, settings: Settings
) -> None:
    who = await person(db_session, settings, timezone="America/New_York")
    # 23:30 in New York on 7 March 2026; the clocks spring forward that night.
    asked = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)

    notification = await schedule_notification(
        db_session, **_fields(who, send_at=asked), quiet_hours=QuietHours(time(21), time(8))
    )

    assert notification is not None
    assert notification.send_at == notification.due_at == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"send_at": datetime(2026, 1, 1, 9, 0)}, "send_at"),  # naive, on purpose
        ({"body": "  "}, "body"),
        ({"subject": None}, "subject"),
        ({"subject": "x" * 256}, "subject"),
        ({"subject": "Your visit\r\nBcc: someone@example.org"}, "subject"),
        ({"channel": NotificationChannel.SMS, "subject": None, "body": "x" * 1601}, "body"),
        ({"dedupe_key": ""}, "dedupe_key"),
        ({"participant_id": uuid.uuid4()}, "participant_id"),
    ],
)
async def test_invalid_notifications_are_refused_by_field(
    db_session: AsyncSession, settings: Settings, overrides: dict[str, Any], field: str
) -> None:
    who = await person(db_session, settings)
    with pytest.raises(ValidationFailedError) as refused:
        await schedule_notification(db_session, **_fields(who, **overrides))
    assert refused.value.details["errors"][0]["field"] == field


async def test_cancel_pending_by_visit_participant_and_channel(
    db_session: AsyncSession, settings: Settings
) -> None:
    who = await person(db_session, settings)
    other = await person(db_session, settings)
    visit = uuid.uuid4()
    later = utcnow() + timedelta(days=1)
    of_visit = await notify(db_session, who, visit_id=visit, send_at=later)
    of_visit_sms = await notify(
        db_session, who, visit_id=visit, send_at=later, channel=NotificationChannel.SMS
    )
    being_sent = await notify(db_session, who, visit_id=visit)
    await db_session.execute(
        update(Notification)
        .where(Notification.id == being_sent.id)
        .values(status=NotificationStatus.SENDING, claimed_at=utcnow())
    )
    unrelated = await notify(db_session, who, send_at=later)
    of_other = await notify(db_session, other, send_at=later)

    assert (
        await cancel_pending(
            db_session, visit_id=visit, channel=NotificationChannel.SMS, reason="unsubscribed"
        )
        == 1
    )
    assert await cancel_pending(db_session, visit_id=visit, reason="visit_completed") == 1
    assert await cancel_pending(db_session, visit_id=visit, reason="visit_completed") == 0
    assert await cancel_pending(db_session, participant_id=who.id, reason="x") == 1

    expected = {
        of_visit_sms.id: ("cancelled", "unsubscribed"),
        of_visit.id: ("cancelled", "visit_completed"),
        being_sent.id: ("sending", None),
        unrelated.id: ("cancelled", "x"),
        of_other.id: ("scheduled", None),
    }
    for notification_id, (status, reason) in expected.items():
        row = await reread(db_session, notification_id)
        assert (row.status.value, row.cancel_reason) == (status, reason)
    with pytest.raises(ValueError, match="visit_id or a participant_id"):
        await cancel_pending(db_session, reason="nothing named")
