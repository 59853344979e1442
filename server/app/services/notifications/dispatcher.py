"""The dispatcher: sends due notifications, each at most once.

One run, in transactions of its own:

1. Rows left in `sending` longer than NOTIFICATION_SENDING_TIMEOUT_SECONDS belonged to a worker
   that died between its claim and its record of the outcome: they become `failed` with the
   error "interrupted; delivery unknown". The message may have gone out, so nothing resends it
   by itself; a person may resend it (an audited new notification).
2. A batch of due `scheduled` rows is claimed: `SELECT ... FOR UPDATE SKIP LOCKED` on
   PostgreSQL, so concurrent workers take different rows; SQLite's write lock (every
   transaction begins IMMEDIATE) serialises the claims. In the same transaction rows whose
   participant withdrew or opted out are cancelled, rows inside the participant's quiet hours
   wait for their end, rows without an address fail, and the rest become `sending` with
   `claimed_at` and one more attempt. **The claim commits before any provider is called.**
3. Each claimed message is handed to its provider, and its outcome committed at once: `sent`
   (with the provider's message id), `scheduled` again with a backoff when the provider
   certainly did not take it (connection refused, a 4xx reply) and attempts remain, `failed`
   otherwise (a refusal for good, or an outcome we cannot know).

A worker killed anywhere in this leaves rows `scheduled` (not yet claimed: sent later, once) or
`sending` (claimed: never sent again by itself, see 1). That is the at-most-once guarantee.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.clock import utcnow
from app.core.logging import get_logger
from app.core.security import FieldEncryptor
from app.db.session import transaction_scope
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.participant import Participant, ParticipantStatus
from app.services.delivery import DeliveryError, DeliveryFailureKind
from app.services.email import EmailSender, open_email_sender
from app.services.notifications.messages import masked, render_email, resolve_destination
from app.services.notifications.quiet_hours import QuietHours, apply_quiet_hours
from app.services.notifications.scheduling import CancelReason
from app.services.notifications.sms import SmsProvider, open_sms_provider

logger = get_logger(__name__)

INTERRUPTED = "interrupted; delivery unknown"


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    deferred: int = 0
    interrupted: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class _Claim:
    """A claimed row and its address: the address lives in memory for the send only."""

    id: uuid.UUID
    claimed_at: datetime
    attempts: int
    channel: NotificationChannel
    participant_id: uuid.UUID
    language: str
    subject: str | None
    body: str
    destination: str = field(repr=False)


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """1×, 2×, 4×, ... the backoff after the 1st, 2nd, 3rd failed attempt, capped."""
    seconds = settings.NOTIFICATION_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.NOTIFICATION_RETRY_BACKOFF_MAX_SECONDS))


async def sweep_interrupted(session: AsyncSession, settings: Settings) -> int:
    """Fail the rows whose worker died after claiming them (never resent by themselves)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.NOTIFICATION_SENDING_TIMEOUT_SECONDS)
    result = await session.execute(
        update(Notification)
        .where(Notification.status == NotificationStatus.SENDING)
        .where(Notification.claimed_at < cutoff)
        .values(status=NotificationStatus.FAILED, error=INTERRUPTED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        logger.warning("notifications_interrupted", count=count)
    return count


def _zone(participant: Participant) -> ZoneInfo:
    try:
        return ZoneInfo(participant.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        email_sender: Callable[[Settings], EmailSender] = open_email_sender,
        sms_provider: Callable[[Settings], SmsProvider] = open_sms_provider,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.encryptor = FieldEncryptor.from_settings(settings)
        self.quiet_hours = QuietHours.from_settings(settings)
        self.open_email_sender = email_sender
        self.open_sms_provider = sms_provider

    async def run(self, *, time_budget_seconds: float | None = None) -> DispatchReport:
        """Send what is due, batch after batch, until nothing is due or the time budget (half
        the task's soft time limit by default) is spent."""
        budget = (
            time_budget_seconds
            if time_budget_seconds is not None
            else self.settings.WORKER_TASK_SOFT_TIME_LIMIT_SECONDS / 2
        )
        deadline = time.monotonic() + budget
        report = DispatchReport()
        async with self.sessionmaker() as session, transaction_scope(session):
            report.interrupted = await sweep_interrupted(session, self.settings)
        async with (
            self.open_email_sender(self.settings) as email_sender,
            self.open_sms_provider(self.settings) as sms_provider,
        ):
            while time.monotonic() < deadline:
                claims, found = await self._claim_batch(report)
                if not found:
                    break
                report.batches += 1
                for claim in claims:
                    outcome = await self._deliver(claim, email_sender, sms_provider)
                    await self._record(claim, outcome, report)
        if any(report.as_dict().values()):
            logger.info("notifications_dispatched", **report.as_dict())
        return report

    async def _claim_batch(self, report: DispatchReport) -> tuple[list[_Claim], bool]:
        """Claim due rows and commit; (the claims, whether any due row was found)."""
        now = utcnow()
        claims: list[_Claim] = []
        async with self.sessionmaker() as session, transaction_scope(session):
            rows = (
                await session.scalars(
                    select(Notification)
                    .where(Notification.status == NotificationStatus.SCHEDULED)
                    .where(Notification.due_at <= now)
                    .order_by(Notification.due_at, Notification.id)
                    .limit(self.settings.NOTIFICATION_BATCH_SIZE)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return [], False
            participant_ids = {row.participant_id for row in rows}
            participants = {
                participant.id: participant
                for participant in await session.scalars(
                    select(Participant).where(Participant.id.in_(participant_ids))
                )
            }
            opted_out = {
                (participant_id, channel)
                for participant_id, channel in (
                    await session.execute(
                        select(NotificationOptOut.participant_id, NotificationOptOut.channel).where(
                            NotificationOptOut.participant_id.in_(participant_ids)
                        )
                    )
                ).all()
            }
            for row in rows:
                participant = participants[row.participant_id]
                claim = self._claim(
                    row, participant, (row.participant_id, row.channel) in opted_out, now, report
                )
                if claim is not None:
                    claims.append(claim)
        return claims, True

    def _claim(
        self,
        row: Notification,
        participant: Participant,
        opted_out: bool,
        now: datetime,
        report: DispatchReport,
    ) -> _Claim | None:
        if participant.status is ParticipantStatus.WITHDRAWN or opted_out:
            row.status = NotificationStatus.CANCELLED
            row.cancelled_at = now
            row.cancel_reason = (
                CancelReason.UNSUBSCRIBED if opted_out else CancelReason.PARTICIPANT_WITHDRAWN
            )
            report.cancelled += 1
            return None
        quiet_until = apply_quiet_hours(
            now, _zone(participant), self.quiet_hours.start, self.quiet_hours.end
        )
        if quiet_until > now:
            row.due_at = quiet_until
            report.deferred += 1
            return None
        try:
            destination = resolve_destination(participant, row.channel, self.encryptor)
        except DeliveryError as failure:
            row.status = NotificationStatus.FAILED
            row.error = failure.description
            report.failed += 1
            logger.warning(
                "notification_not_sendable", notification_id=str(row.id), error=failure.description
            )
            return None
        row.status = NotificationStatus.SENDING
        row.claimed_at = now
        row.attempts += 1
        row.destination_hint = masked(destination, row.channel)
        return _Claim(
            id=row.id,
            claimed_at=now,
            attempts=row.attempts,
            channel=row.channel,
            participant_id=row.participant_id,
            language=row.language,
            subject=row.subject,
            body=row.body,
            destination=destination,
        )

    async def _deliver(
        self, claim: _Claim, email_sender: EmailSender, sms_provider: SmsProvider
    ) -> str | DeliveryError:
        """The provider's message id, or why the message was not (certainly) delivered."""
        try:
            if claim.channel is NotificationChannel.EMAIL:
                message = render_email(
                    self.settings,
                    to=claim.destination,
                    participant_id=claim.participant_id,
                    language=claim.language,
                    subject=claim.subject or "",
                    body=claim.body,
                )
                return await email_sender.send(message)
            return await sms_provider.send(to=claim.destination, body=claim.body)
        except DeliveryError as failure:
            return failure
        except Exception as exc:
            # A fault of ours, wherever it struck: the message may have left.
            logger.error("notification_send_error", notification_id=str(claim.id), exc_info=exc)
            return DeliveryError(
                DeliveryFailureKind.UNKNOWN,
                f"unexpected error while sending ({type(exc).__name__}); delivery unknown",
            )

    async def _record(
        self, claim: _Claim, outcome: str | DeliveryError, report: DispatchReport
    ) -> None:
        now = utcnow()
        values: dict[str, Any]
        if isinstance(outcome, str):
            values = {
                "status": NotificationStatus.SENT,
                "sent_at": now,
                "provider_message_id": outcome[:255],
                "error": None,
            }
            report.sent += 1
        elif (
            outcome.kind is DeliveryFailureKind.TEMPORARY
            and claim.attempts < self.settings.NOTIFICATION_MAX_ATTEMPTS
        ):
            values = {
                "status": NotificationStatus.SCHEDULED,
                "due_at": now + retry_delay(self.settings, claim.attempts),
                "claimed_at": None,
                "error": outcome.description,
            }
            report.retried += 1
        else:
            values = {"status": NotificationStatus.FAILED, "error": outcome.description}
            report.failed += 1
        async with self.sessionmaker() as session, transaction_scope(session):
            # Only this claim's own row: one the sweep already called interrupted gets the
            # outcome we now know.
            await session.execute(
                update(Notification)
                .where(Notification.id == claim.id)
                .where(Notification.claimed_at == claim.claimed_at)
                .where(
                    Notification.status.in_([NotificationStatus.SENDING, NotificationStatus.FAILED])
                )
                .values(updated_at=now, **values)
                .execution_options(synchronize_session=False)
            )
        if isinstance(outcome, DeliveryError):
            logger.warning(
                "notification_not_delivered",
                notification_id=str(claim.id),
                channel=claim.channel.value,
                attempts=claim.attempts,
                outcome=outcome.kind.value,
                status=str(values["status"]),
                error=outcome.description,
            )
