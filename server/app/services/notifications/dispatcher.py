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
3. Each claimed message is handed to its provider, several at once (sending lanes, an SMTP
   connection each), and its outcome committed as soon as the database takes it: `sent` (with
   the provider's message id), `scheduled` again with a backoff when the provider certainly did
   not take it (connection refused, a 4xx reply) and attempts remain, `failed` otherwise (a
   refusal for good, or an outcome we cannot know). Outcomes are written by a recorder beside
   the lanes, each transaction taking every outcome that arrived while the previous one
   committed: sending never waits for a commit, and a commit is not paid per message.

A worker killed anywhere in this leaves rows `scheduled` (not yet claimed: sent later, once) or
`sending` (claimed: never sent again by itself, see 1). That is the at-most-once guarantee.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.clock import utcnow
from app.core.logging import get_logger
from app.core.security import FieldEncryptor
from app.db.session import transaction_scope
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.participant import Participant, ParticipantStatus
from app.services.delivery import DeliveryError, DeliveryFailureKind
from app.services.email import EmailSender, open_email_sender
from app.services.magic_links import issue_reminder_link
from app.services.notifications.messages import (
    LINK_PLACEHOLDER,
    masked,
    render_email,
    resolve_destination,
)
from app.services.notifications.quiet_hours import QuietHours, apply_quiet_hours
from app.services.notifications.scheduling import CancelReason, participant_zone
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
    body: str = field(repr=False)  # may hold a sign-in link (a reminder's `{link}`)
    destination: str = field(repr=False)


# A due row as the claim reads it (the columns of _CLAIM_COLUMNS).
_DueRow = Row[
    uuid.UUID, uuid.UUID, NotificationChannel, int, str, str | None, str, NotificationKind
]


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
        lanes = self.settings.NOTIFICATION_SEND_CONCURRENCY
        async with AsyncExitStack() as stack:
            # One email sender (one SMTP connection, opened at its first message) per lane, kept
            # for the whole run; the SMS provider's HTTP client serves every lane.
            email_senders = [
                await stack.enter_async_context(self.open_email_sender(self.settings))
                for _ in range(lanes)
            ]
            sms_provider = await stack.enter_async_context(self.open_sms_provider(self.settings))
            recorder = _Recorder(self, report)
            queue = _ClaimQueue()
            try:
                async with asyncio.TaskGroup() as lanes_group:
                    for sender in email_senders:
                        lanes_group.create_task(
                            self._send_lane(queue, sender, sms_provider, recorder)
                        )
                    try:
                        while time.monotonic() < deadline:
                            claims, found = await self._claim_batch(report)
                            if not found:
                                break
                            report.batches += 1
                            queue.extend(claims)
                            # The next claim once every claim of this one is being sent: the
                            # lanes finish these while it commits, and no more than a batch
                            # (and what is in flight) is ever claimed without being sent.
                            await queue.drained()
                    finally:
                        queue.close()
            finally:
                await recorder.close()
        if any(report.as_dict().values()):
            logger.info("notifications_dispatched", **report.as_dict())
        return report

    async def _send_lane(
        self,
        queue: _ClaimQueue,
        email_sender: EmailSender,
        sms_provider: SmsProvider,
        recorder: _Recorder,
    ) -> None:
        """Send claims from the shared queue one after the other; several lanes run at once, so
        the round trips of one message overlap those of the others."""
        while (claim := await queue.take()) is not None:
            # A recorder that failed (the database is gone) stops the sending: what is sent
            # now could not be recorded.
            recorder.raise_if_failed()
            recorder.add(claim, await self._deliver(claim, email_sender, sms_provider))

    async def _claim_batch(self, report: DispatchReport) -> tuple[list[_Claim], bool]:
        """Claim due rows and commit; (the claims, whether any due row was found)."""
        now = utcnow()
        claims: list[_Claim] = []
        changes: dict[str, list[dict[str, Any]]] = {}
        async with self.sessionmaker() as session, transaction_scope(session):
            rows = (
                await session.execute(
                    select(*_CLAIM_COLUMNS)
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
                claim = self._claim(
                    row,
                    participants[row.participant_id],
                    (row.participant_id, row.channel) in opted_out,
                    now,
                    report,
                    changes,
                )
                if claim is not None:
                    claims.append(
                        await self._with_link(session, claim, participants[row.participant_id])
                        if row.kind is NotificationKind.VISIT_REMINDER
                        else claim
                    )
            # One statement per kind of change, for all its rows at once.
            connection = await session.connection()
            for kind, parameters in changes.items():
                await connection.execute(_CLAIM_STATEMENTS[kind], parameters)
        return claims, True

    def _claim(
        self,
        row: _DueRow,
        participant: Participant,
        opted_out: bool,
        now: datetime,
        report: DispatchReport,
        changes: dict[str, list[dict[str, Any]]],
    ) -> _Claim | None:
        """Decide what becomes of one due row: the claim to send, or None (and the change)."""

        def change(kind: str, **values: Any) -> None:
            changes.setdefault(kind, []).append({"b_id": row.id, "b_now": now, **values})

        if participant.status is ParticipantStatus.WITHDRAWN or opted_out:
            reason = CancelReason.UNSUBSCRIBED if opted_out else CancelReason.PARTICIPANT_WITHDRAWN
            change("cancel", b_reason=reason)
            report.cancelled += 1
            return None
        quiet_until = apply_quiet_hours(
            now, participant_zone(participant), self.quiet_hours.start, self.quiet_hours.end
        )
        if quiet_until > now:
            change("defer", b_due_at=quiet_until)
            report.deferred += 1
            return None
        channel = row.channel
        try:
            destination = resolve_destination(participant, channel, self.encryptor)
        except DeliveryError as failure:
            change("fail", b_error=failure.description)
            report.failed += 1
            logger.warning(
                "notification_not_sendable", notification_id=str(row.id), error=failure.description
            )
            return None
        change("claim", b_destination_hint=masked(destination, channel))
        return _Claim(
            id=row.id,
            claimed_at=now,
            attempts=row.attempts + 1,
            channel=channel,
            participant_id=row.participant_id,
            language=row.language,
            subject=row.subject,
            body=row.body,
            destination=destination,
        )

    async def _with_link(
        self, session: AsyncSession, claim: _Claim, participant: Participant
    ) -> _Claim:
        """A reminder's `{link}` becomes a sign-in link issued now, in the claim's transaction:
        fresh when it leaves, and never stored (only the token's hash is)."""
        if LINK_PLACEHOLDER not in claim.body and LINK_PLACEHOLDER not in (claim.subject or ""):
            return claim
        url = await issue_reminder_link(
            session, self.settings, participant, notification_id=claim.id
        )
        return replace(
            claim,
            subject=claim.subject.replace(LINK_PLACEHOLDER, url) if claim.subject else None,
            body=claim.body.replace(LINK_PLACEHOLDER, url),
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

    async def record(
        self, outcomes: list[tuple[_Claim, str | DeliveryError]], report: DispatchReport
    ) -> None:
        """Commit the outcomes of several sends in one transaction: one statement per kind of
        outcome, executed for all its rows at once."""
        now = utcnow()
        by_status: dict[NotificationStatus, list[dict[str, Any]]] = {}
        for claim, outcome in outcomes:
            status, parameters = self._outcome(claim, outcome, now)
            by_status.setdefault(status, []).append(
                {"b_id": claim.id, "b_claimed_at": claim.claimed_at, "b_now": now, **parameters}
            )
            if status is NotificationStatus.SENT:
                report.sent += 1
            elif status is NotificationStatus.SCHEDULED:
                report.retried += 1
            else:
                report.failed += 1
            if isinstance(outcome, DeliveryError):
                logger.warning(
                    "notification_not_delivered",
                    notification_id=str(claim.id),
                    channel=claim.channel.value,
                    attempts=claim.attempts,
                    outcome=outcome.kind.value,
                    status=status.value,
                    error=outcome.description,
                )
        async with self.sessionmaker() as session, transaction_scope(session):
            connection = await session.connection()
            for status, rows in by_status.items():
                await connection.execute(_RECORD_STATEMENTS[status], rows)

    def _outcome(
        self, claim: _Claim, outcome: str | DeliveryError, now: datetime
    ) -> tuple[NotificationStatus, dict[str, Any]]:
        if isinstance(outcome, str):
            return NotificationStatus.SENT, {"b_provider_message_id": outcome[:255]}
        if (
            outcome.kind is DeliveryFailureKind.TEMPORARY
            and claim.attempts < self.settings.NOTIFICATION_MAX_ATTEMPTS
        ):
            due_at = now + retry_delay(self.settings, claim.attempts)
            return NotificationStatus.SCHEDULED, {
                "b_due_at": due_at,
                "b_error": outcome.description,
            }
        return NotificationStatus.FAILED, {"b_error": outcome.description}


def _record_statement(**values: Any) -> Any:
    """An UPDATE of one claimed row by its id, run for many rows at once (executemany). Only
    the claim's own row: one the sweep already called interrupted gets the outcome we now know.
    """
    table = cast(Table, Notification.__table__)
    # Two comparisons rather than IN: an expanding IN cannot run as executemany.
    claimed = (table.c.status == NotificationStatus.SENDING) | (
        table.c.status == NotificationStatus.FAILED
    )
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .where(table.c.claimed_at == bindparam("b_claimed_at"))
        .where(claimed)
        .values(updated_at=bindparam("b_now"), **values)
    )


_CLAIM_COLUMNS = (
    Notification.id,
    Notification.participant_id,
    Notification.channel,
    Notification.attempts,
    Notification.language,
    Notification.subject,
    Notification.body,
    Notification.kind,
)


def _claim_statement(**values: Any) -> Any:
    """An UPDATE of one row the claim transaction holds locked, run for many rows at once."""
    table = cast(Table, Notification.__table__)
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(updated_at=bindparam("b_now"), **values)
    )


_CLAIM_STATEMENTS = {
    "claim": _claim_statement(
        status=NotificationStatus.SENDING,
        claimed_at=bindparam("b_now"),
        attempts=cast(Table, Notification.__table__).c.attempts + 1,
        destination_hint=bindparam("b_destination_hint"),
    ),
    "cancel": _claim_statement(
        status=NotificationStatus.CANCELLED,
        cancelled_at=bindparam("b_now"),
        cancel_reason=bindparam("b_reason"),
    ),
    "defer": _claim_statement(due_at=bindparam("b_due_at")),
    "fail": _claim_statement(status=NotificationStatus.FAILED, error=bindparam("b_error")),
}

_RECORD_STATEMENTS = {
    NotificationStatus.SENT: _record_statement(
        status=NotificationStatus.SENT,
        sent_at=bindparam("b_now"),
        provider_message_id=bindparam("b_provider_message_id"),
        error=None,
    ),
    NotificationStatus.SCHEDULED: _record_statement(
        status=NotificationStatus.SCHEDULED,
        due_at=bindparam("b_due_at"),
        claimed_at=None,
        error=bindparam("b_error"),
    ),
    NotificationStatus.FAILED: _record_statement(
        status=NotificationStatus.FAILED, error=bindparam("b_error")
    ),
}


class _ClaimQueue:
    """Claims waiting for a lane; lanes wait for more until the queue is closed."""

    def __init__(self) -> None:
        self.claims: deque[_Claim] = deque()
        self.closed = False
        self._more = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def extend(self, claims: list[_Claim]) -> None:
        if claims:
            self.claims.extend(claims)
            self._empty.clear()
            self._more.set()

    def close(self) -> None:
        self.closed = True
        self._more.set()

    async def take(self) -> _Claim | None:
        """The next claim, or None once the queue is closed and empty."""
        while True:
            if self.claims:
                claim = self.claims.popleft()
                if not self.claims:
                    self._empty.set()
                    if not self.closed:
                        self._more.clear()
                return claim
            if self.closed:
                return None
            await self._more.wait()

    async def drained(self) -> None:
        """Wait until every claim has been taken by a lane."""
        await self._empty.wait()


class _Recorder:
    """Commits outcomes beside the sending loop: each transaction takes every outcome that
    arrived while the previous one was committing (a group commit)."""

    def __init__(self, dispatcher: Dispatcher, report: DispatchReport) -> None:
        self.dispatcher = dispatcher
        self.report = report
        self.pending: list[tuple[_Claim, str | DeliveryError]] = []
        self.wake = asyncio.Event()
        self.closing = False
        self.task = asyncio.create_task(self._run())

    def add(self, claim: _Claim, outcome: str | DeliveryError) -> None:
        self.pending.append((claim, outcome))
        self.wake.set()

    def raise_if_failed(self) -> None:
        if self.task.done():
            self.task.result()

    async def _run(self) -> None:
        while True:
            if not self.pending:
                if self.closing:
                    return
                await self.wake.wait()
                self.wake.clear()
                continue
            outcomes, self.pending = self.pending, []
            await self.dispatcher.record(outcomes, self.report)

    async def close(self) -> None:
        """Wait until every outcome is committed; raises what made the recorder fail."""
        self.closing = True
        self.wake.set()
        await self.task
