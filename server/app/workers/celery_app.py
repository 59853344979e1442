"""The Celery application: `celery -A app.workers.celery_app worker -Q reminders`.

One configuration for every deployment. With Redis (CELERY_BROKER_URL, or REDIS_URL when Redis is
the session store) workers and beat run as services of their own; without it the broker is
kombu's filesystem transport under STORAGE_DIR and `metricis serve` starts one worker with beat
embedded beside the API. Either way the same tasks run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init
from kombu import Exchange, Queue

from app.config import Settings, get_settings
from app.core.logging import configure_logging
from app.services.audit import warn_if_derived
from app.workers.kicks import start_worker_kicks
from app.workers.queues import AUDIT, EXPORTS, QUEUES, REDCAP, REMINDERS, WEBHOOKS
from app.workers.tasks import (
    ADVANCE_VISIT_STATUSES_TASK,
    AUDIT_CHAIN_TASK,
    BEAT_HEARTBEAT_TASK,
    DISPATCH_NOTIFICATIONS_TASK,
    DISPATCH_REDCAP_TASK,
    DISPATCH_WEBHOOKS_TASK,
    RUN_EXPORTS_TASK,
    SCAN_VISIT_REMINDERS_TASK,
    SWEEP_EXPORTS_TASK,
)


def prepare_embedded_broker(settings: Settings) -> None:
    """Create the embedded broker's folders (kombu expects them); nothing to do with Redis."""
    if settings.uses_embedded_broker:
        for folder in settings.broker_transport_options.values():
            if isinstance(folder, str):
                Path(folder).mkdir(parents=True, exist_ok=True)


def _prepare_on_start(**_: Any) -> None:
    settings = get_settings()
    # The services log through structlog: at LOG_LEVEL and in LOG_FORMAT, as in the API.
    configure_logging(settings)
    prepare_embedded_broker(settings)
    # A task that makes notifications due (a scan) asks for a dispatch through this worker's
    # own application.
    start_worker_kicks(settings, celery_app)


def _warn_on_worker_start(**_: Any) -> None:
    warn_if_derived(get_settings())


def _configure_logging(**_: Any) -> None:
    # Our pipeline instead of Celery's (connecting this signal turns Celery's off): the format
    # LOG_FORMAT picks and the redaction of secrets and contact details, in workers and beat as
    # in the API, for their own lines and Celery's.
    configure_logging(get_settings())


setup_logging.connect(_configure_logging, weak=False)
worker_init.connect(_prepare_on_start, weak=False)
beat_init.connect(_prepare_on_start, weak=False)
worker_init.connect(_warn_on_worker_start, weak=False)


# A tick's message takes up to the transport's polling interval (a second on the embedded
# filesystem broker) and the end of the task in hand to reach the worker's pool; a tick that
# expired exactly one interval after it was sent was discarded on arrival whenever the interval
# was short. The margin lets a tick through on an idle queue; a backlog still dies out.
TICK_EXPIRY_MARGIN_SECONDS = 5.0


def tick_expiry(interval_seconds: float) -> float:
    """Seconds after which a periodic tick nobody has started is useless (the next one does
    the same work)."""
    return interval_seconds + TICK_EXPIRY_MARGIN_SECONDS


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("metricis", include=["app.workers.tasks"])
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=settings.broker_transport_options,
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue=REMINDERS,
        task_routes={
            BEAT_HEARTBEAT_TASK: {"queue": REMINDERS},
            AUDIT_CHAIN_TASK: {"queue": AUDIT},
            ADVANCE_VISIT_STATUSES_TASK: {"queue": REMINDERS},
            DISPATCH_NOTIFICATIONS_TASK: {"queue": REMINDERS},
            SCAN_VISIT_REMINDERS_TASK: {"queue": REMINDERS},
            DISPATCH_WEBHOOKS_TASK: {"queue": WEBHOOKS},
            DISPATCH_REDCAP_TASK: {"queue": REDCAP},
            RUN_EXPORTS_TASK: {"queue": EXPORTS},
            SWEEP_EXPORTS_TASK: {"queue": EXPORTS},
        },
        task_serializer="json",
        accept_content=["json"],
        # Results live in the database, written by the services the tasks call.
        task_ignore_result=True,
        # A message is acknowledged only once its task has finished, and given back when the
        # worker process dies, so a crash re-runs the task instead of losing it; tasks are
        # idempotent for that reason.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.WORKER_TASK_SOFT_TIME_LIMIT_SECONDS,
        task_time_limit=settings.WORKER_TASK_TIME_LIMIT_SECONDS,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "beat-heartbeat": {
                "task": BEAT_HEARTBEAT_TASK,
                "schedule": timedelta(seconds=settings.BEAT_HEARTBEAT_SECONDS),
                # A tick nobody ran before health calls beat stale is useless later: expiring it
                # keeps a stopped worker from finding a backlog of heartbeats.
                "options": {"expires": settings.beat_stale_after_seconds},
            },
            # Every run links whatever is pending, so a tick that waited longer than the next
            # one is worthless: it expires.
            "audit-chain": {
                "task": AUDIT_CHAIN_TASK,
                "schedule": timedelta(seconds=settings.AUDIT_CHAIN_INTERVAL_SECONDS),
                "options": {"expires": tick_expiry(settings.AUDIT_CHAIN_INTERVAL_SECONDS)},
            },
            "advance-visit-statuses": {
                "task": ADVANCE_VISIT_STATUSES_TASK,
                "schedule": timedelta(seconds=settings.VISIT_STATUS_SCAN_SECONDS),
                # Each run catches up on everything due, so a tick left waiting in the queue
                # behind a newer one is useless.
                "options": {"expires": tick_expiry(settings.VISIT_STATUS_SCAN_SECONDS)},
            },
            # Each run plans everything due within the horizon; a tick left waiting behind a
            # newer one is useless.
            "scan-visit-reminders": {
                "task": SCAN_VISIT_REMINDERS_TASK,
                "schedule": timedelta(seconds=settings.REMINDER_SCAN_SECONDS),
                "options": {"expires": tick_expiry(settings.REMINDER_SCAN_SECONDS)},
            },
            "dispatch-notifications": {
                "task": DISPATCH_NOTIFICATIONS_TASK,
                "schedule": timedelta(seconds=settings.NOTIFICATION_DISPATCH_INTERVAL_SECONDS),
                # The next tick does the same work: a backlog of ticks is useless.
                "options": {
                    "expires": tick_expiry(settings.NOTIFICATION_DISPATCH_INTERVAL_SECONDS)
                },
            },
            # Due retries, and deliveries whose kick after commit was lost; the outbox rows are
            # the record, so a missed tick only delays them.
            "outbox-webhooks": {
                "task": DISPATCH_WEBHOOKS_TASK,
                "schedule": timedelta(seconds=settings.OUTBOX_SCAN_SECONDS),
                "options": {"expires": tick_expiry(settings.OUTBOX_SCAN_SECONDS)},
            },
            "outbox-redcap": {
                "task": DISPATCH_REDCAP_TASK,
                "schedule": timedelta(seconds=settings.OUTBOX_SCAN_SECONDS),
                "options": {"expires": tick_expiry(settings.OUTBOX_SCAN_SECONDS)},
            },
            # Queued export jobs whose request to run was lost; the jobs are rows, so a missed
            # tick only delays them.
            "run-exports": {
                "task": RUN_EXPORTS_TASK,
                "schedule": timedelta(seconds=settings.EXPORT_SCAN_SECONDS),
                "options": {"expires": tick_expiry(settings.EXPORT_SCAN_SECONDS)},
            },
            "sweep-exports": {
                "task": SWEEP_EXPORTS_TASK,
                "schedule": timedelta(seconds=settings.EXPORT_SWEEP_SECONDS),
                "options": {"expires": tick_expiry(settings.EXPORT_SWEEP_SECONDS)},
            },
        },
        beat_schedule_filename=str(settings.STORAGE_DIR / "celerybeat-schedule"),
        # The filesystem transport has no broadcast: remote control needs a real broker.
        worker_enable_remote_control=not settings.uses_embedded_broker,
        worker_hijack_root_logger=False,
    )
    return app


celery_app = create_celery_app(get_settings())
