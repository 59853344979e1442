"""Event types, their versions, and the payload of each (docs/webhooks.md, event types).

A payload names things by id and code and summarises results; it never holds contact details
(email, phone), names typed by people (a signer's name) or free text (a withdrawal reason).
A change to a payload that could break a receiver gets a new version number.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from app.core.json_values import to_json_value
from app.models.assessment import AssessmentSession, TaskResult
from app.models.consent import ConsentRecord
from app.models.outbox import EventType
from app.models.participant import Participant
from app.models.schedule import Visit

EVENT_VERSIONS: Mapping[EventType, int] = dict.fromkeys(EventType, 1)

# What a subscription may ask for. The test event goes only to the subscription it tests.
SUBSCRIBABLE: tuple[EventType, ...] = tuple(t for t in EventType if t is not EventType.WEBHOOK_TEST)


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _participant_fields(participant: Participant) -> dict[str, Any]:
    return {
        "participant_id": str(participant.id),
        "participant_code": participant.participant_code,
        "site_id": str(participant.site_id) if participant.site_id else None,
    }


def enrollment_payload(
    *,
    participant_id: str,
    participant_code: str,
    site_id: str | None,
    enrollment_date: date | None,
    actor: str,
    language: str,
) -> dict[str, Any]:
    return {
        "participant_id": participant_id,
        "participant_code": participant_code,
        "site_id": site_id,
        "enrollment_date": _iso(enrollment_date),
        "actor": actor,
        "language": language,
    }


def participant_enrolled(participant: Participant) -> dict[str, Any]:
    return enrollment_payload(
        participant_id=str(participant.id),
        participant_code=participant.participant_code,
        site_id=str(participant.site_id) if participant.site_id else None,
        enrollment_date=participant.enrollment_date,
        actor=participant.actor.value,
        language=participant.language,
    )


def participant_withdrawn(participant: Participant) -> dict[str, Any]:
    return {
        **_participant_fields(participant),
        "withdrawn_at": _iso(participant.withdrawn_at),
        "scope": participant.withdrawal_scope.value if participant.withdrawal_scope else None,
    }


def consent_signed(record: ConsentRecord, participant: Participant) -> dict[str, Any]:
    return {
        **_participant_fields(participant),
        "consent_record_id": str(record.id),
        "form_id": str(record.form_id),
        "form_version": record.form_version,
        "content_hash": record.content_hash,
        "signer_role": record.signer_role.value,
        "signed_at": _iso(record.signed_at),
    }


def _flag_codes(result: TaskResult) -> list[str]:
    return sorted({str(flag.get("code")) for flag in result.flags if flag.get("code")})


def task_summary(result: TaskResult) -> dict[str, Any]:
    return {
        "task": result.task,
        "n_trials": result.n_trials,
        "scorer": result.scorer,
        "scorer_version": result.scorer_version,
        "scores": to_json_value(result.scores),
        "flags": _flag_codes(result),
    }


def task_accepted(
    record: AssessmentSession, participant: Participant, result: TaskResult
) -> dict[str, Any]:
    return {
        **_participant_fields(participant),
        "session_id": str(record.id),
        "accepted_at": _iso(result.accepted_at),
        "source_sha256": result.source_sha256,
        **task_summary(result),
    }


def session_completed(
    record: AssessmentSession, participant: Participant, results: Sequence[TaskResult]
) -> dict[str, Any]:
    return {
        **_participant_fields(participant),
        "session_id": str(record.id),
        "battery_id": str(record.battery_id),
        "battery_version": record.battery_version,
        "visit_id": str(record.visit_id) if record.visit_id else None,
        "started_at": _iso(record.started_at),
        "ended_at": _iso(record.ended_at),
        "tasks": [task_summary(result) for result in results],
    }


def visit_missed(visit: Visit, participant_code: str, site_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "participant_id": str(visit.participant_id),
        "participant_code": participant_code,
        "site_id": str(site_id) if site_id else None,
        "visit_id": str(visit.id),
        "schedule_id": str(visit.schedule_id),
        "schedule_version": visit.schedule_version,
        "event_key": visit.event_key,
        "occurrence": visit.occurrence,
        "label": visit.label,
        "battery_id": str(visit.battery_id),
        "timezone": visit.timezone,
        "due_date": _iso(visit.due_date),
        "window_start_date": _iso(visit.window_start_date),
        "window_end_date": _iso(visit.window_end_date),
        "window_end": _iso(visit.window_closes_at),
    }


def webhook_test(subscription_id: str) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "message": "A test event sent from the webhook's settings; it changes nothing.",
    }
