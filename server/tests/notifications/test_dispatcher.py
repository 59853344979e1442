"""The dispatcher against a real SMTP server and a local Twilio-compatible API, on a database of
the test's own (it commits its claims for real)."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from app.config import Settings
from app.core.clock import utcnow
from app.db.session import create_engine, create_sessionmaker
from app.models.notification import Notification, NotificationChannel, NotificationStatus
from app.models.participant import Participant, ParticipantStatus
from app.services.notifications.dispatcher import INTERRUPTED, Dispatcher, DispatchReport
from app.services.notifications.preferences import unsubscribe_token
from tests.conftest import make_settings
from tests.magic_links.conftest import free_port
from tests.notifications.conftest import (
    EMAIL_FROM,
    PUBLIC_BASE_URL,
    SMS_FROM,
    SMS_SID,
    SMS_TOKEN,
    SmsApi,
    SmtpServer,
    session_on,
)
from tests.notifications.helpers import EMAIL, PHONE_E164, notify, person, reread

TOKYO = ZoneInfo("Asia/Tokyo")


async def dispatch(settings: Settings, **overrides: object) -> DispatchReport:
    if overrides:
        settings = make_settings(
            settings.DATABASE_URL, settings.STORAGE_DIR, **{**_values(settings), **overrides}
        )
    engine = create_engine(settings)
    try:
        return await Dispatcher(create_sessionmaker(engine), settings).run()
    finally:
        await engine.dispose()


def _values(settings: Settings) -> dict[str, object]:
    return {
        name: getattr(settings, name)
        for name in settings.model_fields_set
        if name not in ("DATABASE_URL", "STORAGE_DIR")
    }


async def test_a_due_email_is_sent_once_with_its_unsubscribe_link(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        due = await notify(session, who)
        later = await notify(session, who, send_at=utcnow() + timedelta(hours=1))

    report = await dispatch(committed_settings)
    again = await dispatch(committed_settings)

    assert (report.sent, again.sent) == (1, 0)
    [mail] = smtp_server.received
    assert mail.recipients == [EMAIL]
    assert mail.message["From"] == EMAIL_FROM
    assert mail.message["Subject"] == "Your visit is open"
    token = unsubscribe_token(committed_settings, who.id, NotificationChannel.EMAIL)
    assert mail.message["List-Unsubscribe"] == (
        f"<{PUBLIC_BASE_URL}/api/notifications/unsubscribe?token={token}>"
    )
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.text.startswith("Your next visit opens tomorrow.")
    assert f"{PUBLIC_BASE_URL}/participant/unsubscribe?token={token}" in mail.text
    async with session_on(committed_settings) as session:
        sent = await reread(session, due.id)
        assert sent.status is NotificationStatus.SENT
        assert sent.provider_message_id == mail.message["Message-ID"]
        assert sent.destination_hint == "a***@example.org"
        assert sent.attempts == 1
        assert sent.sent_at is not None and sent.claimed_at is not None
        assert (await reread(session, later.id)).status is NotificationStatus.SCHEDULED


@pytest.mark.parametrize("lanes", [1, 3])
async def test_each_sending_lane_keeps_one_smtp_connection_for_a_whole_run(
    committed_settings: Settings, smtp_server: SmtpServer, lanes: int
) -> None:
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        for _ in range(25):
            await notify(session, who, commit=False)
        await session.commit()

    report = await dispatch(
        committed_settings, NOTIFICATION_BATCH_SIZE=10, NOTIFICATION_SEND_CONCURRENCY=lanes
    )

    assert (report.sent, report.batches) == (25, 3)
    assert len(smtp_server.received) == 25
    assert smtp_server.mailbox.sessions == lanes


async def test_an_sms_goes_to_the_twilio_compatible_api(
    committed_settings: Settings, sms_api: SmsApi
) -> None:
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        sms = await notify(session, who, channel=NotificationChannel.SMS, body="Visit open.")

    report = await dispatch(committed_settings)

    assert report.sent == 1
    [request] = sms_api.requests
    assert request.path == f"/2010-04-01/Accounts/{SMS_SID}/Messages.json"
    credentials = base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
    assert request.authorization == f"Basic {credentials}"
    # The number as typed ("+44 20 7946 0958"), sent in E.164.
    assert request.form == {"To": PHONE_E164, "From": SMS_FROM, "Body": "Visit open."}
    async with session_on(committed_settings) as session:
        sent = await reread(session, sms.id)
        assert sent.status is NotificationStatus.SENT
        assert sent.provider_message_id is not None and sent.provider_message_id.startswith("SM")
        assert sent.destination_hint == "***58"


@pytest.mark.parametrize(
    ("status", "reply", "expected", "error_part"),
    [
        # Refused as it stood: no message was created, and none will be by trying again.
        (
            400,
            {"code": 21211, "message": "The 'To' number +442079460958 is not valid."},
            NotificationStatus.FAILED,
            "code 21211",
        ),
        # Too many requests: certainly not taken, tried again later.
        (429, {"code": 20429, "message": "Too Many Requests"}, NotificationStatus.SCHEDULED, "429"),
        # A server error may come after the message was created: never tried again by itself.
        (500, {"message": "Internal error"}, NotificationStatus.FAILED, "delivery unknown"),
    ],
)
async def test_sms_api_refusals_are_retried_only_when_certainly_not_taken(
    committed_settings: Settings,
    sms_api: SmsApi,
    status: int,
    reply: dict[str, object],
    expected: NotificationStatus,
    error_part: str,
) -> None:
    sms_api.status, sms_api.reply = status, reply
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        sms = await notify(session, who, channel=NotificationChannel.SMS)

    await dispatch(committed_settings)

    assert len(sms_api.requests) == 1
    async with session_on(committed_settings) as session:
        row = await reread(session, sms.id)
        assert row.status is expected
        assert row.error is not None and error_part in row.error
        # The provider's message quoted the number; the stored error does not.
        assert "7946" not in row.error
        if expected is NotificationStatus.SCHEDULED:
            assert row.due_at > utcnow() + timedelta(seconds=30)
            assert row.claimed_at is None


async def test_an_unreachable_provider_is_retried_with_backoff_then_fails(
    committed_settings: Settings,
) -> None:
    closed_port = free_port()
    settings = make_settings(
        committed_settings.DATABASE_URL,
        committed_settings.STORAGE_DIR,
        **{**_values(committed_settings), "SMTP_PORT": closed_port},
    )
    async with session_on(settings) as session:
        who = await person(session, settings)
        email = await notify(session, who)

    first = await dispatch(settings)
    async with session_on(settings) as session:
        row = await reread(session, email.id)
        assert (row.status, row.attempts, first.retried) == (NotificationStatus.SCHEDULED, 1, 1)
        assert row.error is not None and "cannot open an SMTP session" in row.error
        assert timedelta(seconds=55) < row.due_at - utcnow() <= timedelta(seconds=60)

    # Due again without a backoff: the next runs take it until its attempts are spent.
    async with session_on(settings) as session:
        await session.execute(update(Notification).values(due_at=utcnow()))
        await session.commit()
    retried = failed = 0
    for _ in range(4):
        report = await dispatch(
            settings, NOTIFICATION_RETRY_BACKOFF_SECONDS=0, NOTIFICATION_MAX_ATTEMPTS=3
        )
        retried, failed = retried + report.retried, failed + report.failed
    assert (retried, failed) == (1, 1)
    async with session_on(settings) as session:
        row = await reread(session, email.id)
        assert (row.status, row.attempts) == (NotificationStatus.FAILED, 3)
        assert row.error is not None and "cannot open an SMTP session" in row.error


@pytest.mark.parametrize(
    ("rcpt_reply", "expected", "attempts"),
    [
        ("451 4.3.0 <ada.lovelace@example.org>: try again later", NotificationStatus.SCHEDULED, 1),
        ("550 5.1.1 <ada.lovelace@example.org>: no such user", NotificationStatus.FAILED, 1),
    ],
)
async def test_an_smtp_refusal_at_rcpt_is_temporary_or_permanent_by_its_code(
    committed_settings: Settings,
    smtp_server: SmtpServer,
    rcpt_reply: str,
    expected: NotificationStatus,
    attempts: int,
) -> None:
    smtp_server.mailbox.rcpt_reply = rcpt_reply
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        first = await notify(session, who)
        second = await notify(session, who)

    await dispatch(committed_settings)

    assert smtp_server.received == []
    async with session_on(committed_settings) as session:
        for notification in (first, second):
            row = await reread(session, notification.id)
            assert (row.status, row.attempts) == (expected, attempts)
            assert row.error is not None and row.error.startswith(f"SMTP {rcpt_reply[:3]} at RCPT")
            assert EMAIL not in row.error and "ada.lovelace" not in row.error


async def test_a_connection_lost_after_the_content_is_never_retried(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.mailbox.drop_after_content = True
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        email = await notify(session, who)

    report = await dispatch(committed_settings)
    await dispatch(committed_settings)

    # The server has the message; whether it would have delivered it is unknown.
    assert len(smtp_server.received) == 1
    assert (report.failed, report.retried) == (1, 0)
    async with session_on(committed_settings) as session:
        row = await reread(session, email.id)
        assert row.status is NotificationStatus.FAILED
        assert row.error is not None and "delivery unknown" in row.error


async def test_a_refusal_at_the_end_of_data_is_certain(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.mailbox.data_reply = "452 4.3.1 Insufficient system storage"
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        email = await notify(session, who)

    await dispatch(committed_settings)

    async with session_on(committed_settings) as session:
        row = await reread(session, email.id)
        assert row.status is NotificationStatus.SCHEDULED
        assert row.error == "SMTP 452 at DATA: 4.3.1 Insufficient system storage"


async def test_withdrawn_unsubscribed_and_unreachable_participants_get_nothing(
    committed_settings: Settings, smtp_server: SmtpServer, sms_api: SmsApi
) -> None:
    async with session_on(committed_settings) as session:
        withdrawn = await person(session, committed_settings)
        no_email = await person(session, committed_settings, email=None)
        local_number = await person(session, committed_settings, phone="06 12 34 56 78")
        to_withdrawn = await notify(session, withdrawn)
        to_no_email = await notify(session, no_email)
        to_local_number = await notify(session, local_number, channel=NotificationChannel.SMS)
        # Withdrawn after the notification was written, without cancel_pending being called.
        await session.execute(
            update(Participant)
            .where(Participant.id == withdrawn.id)
            .values(status=ParticipantStatus.WITHDRAWN)
        )
        await session.commit()

    report = await dispatch(committed_settings)

    assert (report.cancelled, report.failed, report.sent) == (1, 2, 0)
    assert smtp_server.received == [] and sms_api.requests == []
    async with session_on(committed_settings) as session:
        cancelled = await reread(session, to_withdrawn.id)
        assert (cancelled.status, cancelled.cancel_reason) == (
            NotificationStatus.CANCELLED,
            "participant_withdrawn",
        )
        missing = await reread(session, to_no_email.id)
        assert (missing.status, missing.error) == (
            NotificationStatus.FAILED,
            "the participant has no email address",
        )
        assert missing.attempts == 0
        local = await reread(session, to_local_number.id)
        assert local.status is NotificationStatus.FAILED
        assert local.error is not None and "E.164" in local.error


async def test_quiet_hours_hold_a_due_message_until_they_end(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    # Quiet hours around this moment, in the participant's zone.
    now = datetime.now(UTC).astimezone(TOKYO)
    start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings, timezone="Asia/Tokyo")
        email = await notify(session, who)

    report = await dispatch(
        committed_settings,
        NOTIFICATION_QUIET_HOURS_START=start.isoformat(),
        NOTIFICATION_QUIET_HOURS_END=end.isoformat(),
    )

    assert (report.deferred, report.sent) == (1, 0)
    assert smtp_server.received == []
    async with session_on(committed_settings) as session:
        row = await reread(session, email.id)
        assert row.status is NotificationStatus.SCHEDULED
        local_due = row.due_at.astimezone(TOKYO)
        assert local_due.time() == time(end.hour, end.minute)
        assert timedelta(minutes=58) < row.due_at - utcnow() <= timedelta(hours=1)


async def test_a_row_left_sending_by_a_dead_worker_fails_and_is_not_sent(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        stuck = await notify(session, who)
        recent = await notify(session, who)
        long_ago = utcnow() - timedelta(
            seconds=committed_settings.NOTIFICATION_SENDING_TIMEOUT_SECONDS + 5
        )
        for notification, claimed_at in ((stuck, long_ago), (recent, utcnow())):
            await session.execute(
                update(Notification)
                .where(Notification.id == notification.id)
                .values(status=NotificationStatus.SENDING, claimed_at=claimed_at, attempts=1)
            )
        await session.commit()

    report = await dispatch(committed_settings)

    assert (report.interrupted, report.sent) == (1, 0)
    assert smtp_server.received == []
    async with session_on(committed_settings) as session:
        failed = await reread(session, stuck.id)
        assert (failed.status, failed.error) == (NotificationStatus.FAILED, INTERRUPTED)
        # Claimed a moment ago: its worker may still be sending it.
        assert (await reread(session, recent.id)).status is NotificationStatus.SENDING


async def test_concurrent_dispatchers_send_each_message_once(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        ids = set()
        for index in range(60):
            notification = await notify(session, who, body=f"Message {index}", commit=False)
            ids.add(notification.id)
        await session.commit()

    reports = await asyncio.gather(
        *(dispatch(committed_settings, NOTIFICATION_BATCH_SIZE=5) for _ in range(3))
    )

    assert sum(report.sent for report in reports) == 60
    bodies = sorted(mail.text.split("\n", 1)[0] for mail in smtp_server.received)
    assert bodies == sorted(f"Message {index}" for index in range(60))
    async with session_on(committed_settings) as session:
        for notification_id in ids:
            row = await reread(session, notification_id)
            assert (row.status, row.attempts) == (NotificationStatus.SENT, 1)


async def test_french_participants_get_the_footer_in_french(
    committed_settings: Settings, smtp_server: SmtpServer
) -> None:
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        await notify(session, who, language="fr", body="Votre visite est ouverte.")

    await dispatch(committed_settings)

    [mail] = smtp_server.received
    assert "Pour ne plus recevoir ces e-mails" in mail.text


async def test_an_unreachable_sms_api_is_retried(committed_settings: Settings) -> None:
    settings = make_settings(
        committed_settings.DATABASE_URL,
        committed_settings.STORAGE_DIR,
        **{**_values(committed_settings), "SMS_API_BASE_URL": f"http://127.0.0.1:{free_port()}"},
    )
    async with session_on(settings) as session:
        who = await person(session, settings)
        sms = await notify(session, who, channel=NotificationChannel.SMS)

    report = await dispatch(settings)

    assert report.retried == 1
    async with session_on(settings) as session:
        row = await reread(session, sms.id)
        assert (row.status, row.attempts) == (NotificationStatus.SCHEDULED, 1)
        assert row.error == "cannot reach the SMS API (ConnectError)"


async def test_console_and_disabled_sms_send_nothing_and_log_no_number(
    committed_settings: Settings,
    sms_api: SmsApi,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    async with session_on(committed_settings) as session:
        who = await person(session, committed_settings)
        logged = await notify(session, who, channel=NotificationChannel.SMS, body="Visit open.")

    console = await dispatch(committed_settings, SMS_BACKEND="console")

    assert console.sent == 1 and sms_api.requests == []
    # Through the logging pipeline or structlog's own output, whichever this process has set up.
    logged_text = caplog.text + capsys.readouterr().out
    assert "sms_console_not_sent" in logged_text and "***58" in logged_text
    assert "7946" not in logged_text
    async with session_on(committed_settings) as session:
        row = await reread(session, logged.id)
        assert row.provider_message_id is not None
        assert row.provider_message_id.startswith("console-")
        refused = await notify(session, who, channel=NotificationChannel.SMS)

    disabled = await dispatch(committed_settings, SMS_BACKEND="disabled")

    assert disabled.failed == 1 and sms_api.requests == []
    async with session_on(committed_settings) as session:
        row = await reread(session, refused.id)
        assert (row.status, row.error) == (
            NotificationStatus.FAILED,
            "SMS is not configured here (SMS_BACKEND=disabled)",
        )
