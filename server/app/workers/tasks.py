"""The tasks. Each opens a transaction of its own and calls a service: rules live in the
services, so the API and the workers share one implementation.

Every task is idempotent: with acks_late a task whose worker died runs again, and a retry after
a lost connection may repeat work that had committed. A task claims its work in the database
(a conditional update, an upsert) so that a second run finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from celery import shared_task
from sqlalchemy import exc as sa_exc

from app.config import get_settings
from app.core.clock import utcnow
from app.db.session import run_in_transaction, run_with_sessions
from app.services.audit import AuditContext, ChainSettings, run_chainer
from app.services.exports import jobs as export_jobs
from app.services.heartbeats import BEAT_HEARTBEAT, record_heartbeat
from app.services.notifications.dispatcher import Dispatcher
from app.services.redcap.dispatcher import dispatch_redcap
from app.services.schedules import reminder_scan, transitions
from app.services.webhooks.dispatcher import dispatch_webhooks

P = ParamSpec("P")
R = TypeVar("R")

BEAT_HEARTBEAT_TASK = "metricis.beat_heartbeat"
AUDIT_CHAIN_TASK = "metricis.audit_chain"
ADVANCE_VISIT_STATUSES_TASK = "metricis.advance_visit_statuses"
DISPATCH_NOTIFICATIONS_TASK = "metricis.dispatch_notifications"
DISPATCH_WEBHOOKS_TASK = "metricis.dispatch_webhooks"
SCAN_VISIT_REMINDERS_TASK = "metricis.scan_visit_reminders"
DISPATCH_REDCAP_TASK = "metricis.dispatch_redcap"
RUN_EXPORTS_TASK = "metricis.run_exports"
SWEEP_EXPORTS_TASK = "metricis.sweep_exports"

# Failures of the infrastructure, worth trying again later; a domain error is not retried.
RETRYABLE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, ConnectionError, TimeoutError)
MAX_RETRIES = 8
RETRY_BACKOFF_MAX_SECONDS = 600


def metricis_task(name: str) -> Callable[[Callable[P, R]], Any]:
    """A task retried on infrastructure errors with exponential backoff (1 s, 2 s, 4 s, ...
    capped at ten minutes, with jitter so retries of many tasks do not arrive together)."""
    decorator = shared_task(
        name=name,
        autoretry_for=RETRYABLE_ERRORS,
        retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
        retry_jitter=True,
        max_retries=MAX_RETRIES,
    )
    return cast(Callable[[Callable[P, R]], Any], decorator)


@metricis_task(BEAT_HEARTBEAT_TASK)
def beat_heartbeat() -> None:
    """Record that beat and a worker of the reminders queue are running (read by health)."""
    run_in_transaction(
        get_settings(), lambda session: record_heartbeat(session, BEAT_HEARTBEAT, utcnow())
    )


@metricis_task(AUDIT_CHAIN_TASK)
def chain_audit_events() -> None:
    """Link the audit events committed since the last run into the keyed chain, and publish a
    signed checkpoint when one is due. Two at once are harmless: the second finds the chain
    state locked and returns."""
    settings = get_settings()
    chain = ChainSettings.from_settings(settings)
    run_with_sessions(settings, lambda sessions: run_chainer(sessions, chain))


@metricis_task(ADVANCE_VISIT_STATUSES_TASK)
def advance_visit_statuses() -> None:
    """Store the status of the visits whose window opened or closed since the last run."""
    run_in_transaction(
        get_settings(),
        lambda session: transitions.advance_visit_statuses(
            session, AuditContext.system(), utcnow()
        ),
    )


@metricis_task(SCAN_VISIT_REMINDERS_TASK)
def scan_visit_reminders() -> dict[str, int]:
    """Write the visit reminders due within REMINDER_SCAN_HORIZON_HOURS as notifications
    (app/services/schedules/reminder_scan.py). Runs twice, or two at once, write each once."""
    settings = get_settings()
    report = run_with_sessions(
        settings,
        lambda sessionmaker: reminder_scan.scan_visit_reminders(
            sessionmaker,
            settings,
            utcnow(),
            time_budget_seconds=settings.WORKER_TASK_SOFT_TIME_LIMIT_SECONDS / 2,
        ),
    )
    return report.as_dict()


@metricis_task(DISPATCH_NOTIFICATIONS_TASK)
def dispatch_notifications() -> dict[str, int]:
    """Send the notifications that are due (app/services/notifications/dispatcher.py). Several
    runs at once take different rows; a run whose worker died leaves nothing to send twice."""
    settings = get_settings()
    report = run_with_sessions(
        settings, lambda sessionmaker: Dispatcher(sessionmaker, settings).run()
    )
    return report.as_dict()


@metricis_task(DISPATCH_WEBHOOKS_TASK)
def dispatch_webhook_deliveries() -> dict[str, int]:
    """Send due webhook deliveries (sent by beat, and after each commit that wrote some).

    Runs of this task may overlap: each claims its deliveries in the database, so none is sent
    twice by two runs; one killed mid-run leaves its claims to expire and be taken again."""
    settings = get_settings()
    report = run_with_sessions(settings, lambda sessions: dispatch_webhooks(sessions, settings))
    return {
        "attempts": report.attempts,
        "delivered": report.delivered,
        "failed": report.failed,
        "dead": report.dead,
    }


@metricis_task(DISPATCH_REDCAP_TASK)
def dispatch_redcap_deliveries() -> dict[str, int]:
    """Push due REDCap deliveries (completed sessions' mapped scores) through PyCap, which runs
    in threads of the task, off its event loop. Overlapping runs claim different rows, like the
    webhook dispatcher's; a push repeated after a lost answer overwrites the same record."""
    settings = get_settings()
    report = run_with_sessions(settings, lambda sessions: dispatch_redcap(sessions, settings))
    return {
        "attempts": report.attempts,
        "delivered": report.delivered,
        "failed": report.failed,
        "dead": report.dead,
    }


@metricis_task(RUN_EXPORTS_TASK)
def run_exports() -> dict[str, int]:
    """Run the queued export jobs (app/services/exports/jobs.py), one after another. Each job
    is claimed with a conditional update, so two workers never make the same file."""
    settings = get_settings()
    return run_with_sessions(
        settings, lambda sessions: export_jobs.run_pending_exports(sessions, settings)
    )


@metricis_task(SWEEP_EXPORTS_TASK)
def sweep_exports() -> int:
    """Remove the files of export jobs past their expiry."""
    settings = get_settings()
    return run_in_transaction(
        settings,
        lambda session: export_jobs.sweep_expired_exports(session, settings, utcnow()),
    )
