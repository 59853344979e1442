"""The study, people and records every cell of the access matrix runs against.

Everything is kept as plain values: a refused request rolls the shared session back and expires
the ORM rows it holds, so no row outlives the statement that created it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.clock import utcnow
from app.models.assessment import AssessmentSession, SessionStatus
from app.models.export import ExportJob, ExportStatus
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from app.models.study import MemberRole
from app.models.user import UserRole
from app.services.exports.jobs import run_pending_exports
from app.services.file_storage import export_storage, scratch_dir
from tests import factories


class Principal(StrEnum):
    """Who calls. The order is the column order of the matrix."""

    ADMIN = "admin"
    RESEARCHER = "researcher"
    COORDINATOR = "coordinator"  # member without a site
    SITE_COORDINATOR = "site_coordinator"  # coordinator of site B; the target is at site A
    READ_ONLY = "read_only"
    OUTSIDER = "outsider"  # researcher of another study
    PARTICIPANT = "participant"  # the target participant's own token
    OTHER_PARTICIPANT = "other_participant"  # another participant of the same study (site B)
    ANONYMOUS = "anonymous"


PRINCIPALS: tuple[Principal, ...] = tuple(Principal)

TARGET_EMAIL = "ada.lovelace@example.org"
TARGET_PHONE = "+44 20 7946 0958"
# app.services.participants.mask_email / mask_phone, written out so a change shows up here.
MASKED_EMAIL = "a***@example.org"
MASKED_PHONE = "***58"
# A public address (no name to resolve); no worker runs in the matrix, so nothing is sent.
WEBHOOK_URL = "https://93.184.215.14/metricis-hook"


@dataclass(frozen=True, slots=True)
class World:
    study_id: uuid.UUID
    study_code: str
    other_study_id: uuid.UUID
    site_a_id: uuid.UUID  # the target participant's site
    site_b_id: uuid.UUID  # the site-scoped coordinator's and the other participant's site
    spare_member_id: uuid.UUID  # a read_only member the member routes update and remove
    newcomer_user_id: uuid.UUID  # an active user who is not a member, for "add member"
    target_id: uuid.UUID  # participant at site A, with email and phone
    target_code: str
    other_id: uuid.UUID  # participant at site B
    other_code: str
    published_form_id: uuid.UUID  # version 1, published, no signature image required
    draft_form_id: uuid.UUID  # version 2, draft
    record_id: uuid.UUID  # the target's consent (signed by staff as caregiver)
    battery_id: uuid.UUID
    schedule_id: uuid.UUID  # one event, open from enrollment for a week
    target_visit_id: uuid.UUID  # the target's visit of that event
    notification_id: uuid.UUID  # a failed email reminder of the target, which may be resent
    webhook_id: uuid.UUID  # a webhook of the study, to a public address nothing is sent to
    delivery_id: uuid.UUID  # its test event's delivery, pending
    bank_id: uuid.UUID  # an item bank of the study
    free_session_id: uuid.UUID  # a running assessment session of the target, without a test
    cat_session_id: uuid.UUID  # the target's adaptive test on the bank, running
    cat_item_id: str  # the item that test gave first
    export_id: uuid.UUID  # a ready export of the study's participants, by the researcher
    report_id: uuid.UUID  # the target's participant report, made by the worker: ready
    headers: Mapping[Principal, Mapping[str, str]]


async def _post(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(url, headers=dict(headers), json=body)
    assert response.status_code in (200, 201, 202), (url, response.text)
    payload: dict[str, Any] = response.json()
    return payload


async def _ready_export(
    db_session: AsyncSession,
    client: httpx.AsyncClient,
    settings: Settings,
    headers: Mapping[str, str],
    study_id: uuid.UUID,
) -> uuid.UUID:
    """An export job created through the API and made ready with a small file in the storage
    (no worker runs in the matrix)."""
    body = {"study_id": str(study_id), "format": "csv", "dataset": "participants"}
    created = await _post(client, "/api/exports", headers, body)
    job = await db_session.get(ExportJob, uuid.UUID(created["id"]))
    assert job is not None
    key = f"{study_id}/{job.id.hex}.zip"
    source = scratch_dir(settings) / f"{job.id.hex}.zip"
    source.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
    export_storage(settings).put(key, source)
    job.status = ExportStatus.READY
    job.file_path = key
    job.file_name = "matrix.zip"
    job.size_bytes = 22
    job.sha256 = "0" * 64
    job.finished_at = job.expires_at = utcnow()
    await db_session.commit()
    return job.id


async def build_world(
    db_session: AsyncSession, client: httpx.AsyncClient, settings: Settings
) -> World:
    study_row = await factories.study(db_session, code=f"ACC-{uuid.uuid4().hex[:8].upper()}")
    study_id, study_code = study_row.id, study_row.code
    site_a = await factories.site(db_session, study_row, "SITE-A")
    site_a_id = site_a.id
    site_b = await factories.site(db_session, study_row, "SITE-B")
    site_b_id = site_b.id
    other_study_row = await factories.study(db_session)
    other_study_id = other_study_row.id

    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    researcher = await factories.study_member(db_session, client, study_row, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(
        db_session, client, study_row, MemberRole.COORDINATOR
    )
    site_coordinator = await factories.study_member(
        db_session, client, study_row, MemberRole.COORDINATOR, site_b
    )
    read_only = await factories.study_member(db_session, client, study_row, MemberRole.READ_ONLY)
    outsider = await factories.study_member(
        db_session, client, other_study_row, MemberRole.RESEARCHER
    )
    spare = await factories.staff(db_session, client, UserRole.READ_ONLY)
    spare_member = await factories.member(db_session, study_row, spare, MemberRole.READ_ONLY)
    spare_member_id = spare_member.id
    newcomer = await factories.staff(db_session, client, UserRole.READ_ONLY)

    battery_id, battery_version_id = await factories.battery(db_session, study_row, ["simple-rt"])
    # Before the participants, so that their enrollment makes their visits.
    schedule = await _post(
        client,
        "/api/schedules",
        admin.headers,
        {
            "study_id": str(study_id),
            "events": [
                {
                    "key": "baseline",
                    "label": "Baseline",
                    "offset_days": 0,
                    "window_after_days": 7,
                    "battery_id": str(battery_id),
                }
            ],
        },
    )

    # Through the API, so the contact details are encrypted the way the application does it.
    target = await _post(
        client,
        "/api/participants",
        admin.headers,
        {
            "study_id": str(study_id),
            "participant_id": "TARGET-01",
            "site_id": str(site_a_id),
            "email": TARGET_EMAIL,
            "phone": TARGET_PHONE,
        },
    )
    other = await _post(
        client,
        "/api/participants",
        admin.headers,
        {"study_id": str(study_id), "participant_id": "OTHER-01", "site_id": str(site_b_id)},
    )
    target_id, other_id = uuid.UUID(target["id"]), uuid.UUID(other["id"])

    form_body = {
        "study_id": str(study_id),
        "language": "en",
        "title": "Consent to take part",
        "content": "# Consent\n\nYou may stop at any time.",
        "requires_signature": False,
    }
    published = await _post(client, "/api/consent/forms", admin.headers, form_body)
    await _post(client, f"/api/consent/forms/{published['id']}/publish", admin.headers, {})
    draft = await _post(client, "/api/consent/forms", admin.headers, form_body)
    # Signed as caregiver, so every cell can still sign this version as the participant.
    record = await _post(
        client,
        "/api/consent/sign",
        admin.headers,
        {
            "participant_id": str(target_id),
            "form_id": published["id"],
            "signer_name": "Grace Lovelace",
            "signer_role": "caregiver",
        },
    )

    visits = await client.get(
        "/api/schedules/visits",
        headers=admin.headers,
        params={"participant_id": str(target_id)},
    )
    [target_visit] = visits.json()["data"]
    notification = Notification(
        id=uuid.uuid4(),
        study_id=study_id,
        participant_id=target_id,
        kind=NotificationKind.VISIT_REMINDER,
        channel=NotificationChannel.EMAIL,
        status=NotificationStatus.FAILED,
        send_at=utcnow(),
        due_at=utcnow(),
        language="en",
        subject="Your visit is open",
        body="Your visit opens today.",
        dedupe_key=f"access-matrix:{uuid.uuid4()}",
        destination_hint=MASKED_EMAIL,
        attempts=1,
        error="interrupted; delivery unknown",
    )
    db_session.add(notification)
    await db_session.commit()
    notification_id = notification.id

    webhooks = f"/api/studies/{study_id}/webhooks"
    webhook = await _post(
        client,
        webhooks,
        admin.headers,
        {"url": WEBHOOK_URL, "events": ["participant.enrolled", "consent.signed"]},
    )
    test_delivery = await _post(client, f"{webhooks}/{webhook['id']}/test", admin.headers, {})

    bank = await _post(
        client,
        "/api/item-banks",
        admin.headers,
        {
            "study_id": str(study_id),
            "name": "Fatigue",
            "items": [
                {"id": f"f{i}", "a": 1.5, "b": [i - 1.0, i + 0.5], "text": {"en": f"Item {i}"}}
                for i in range(3)
            ],
        },
    )
    # Running sessions of the target, written as rows: the study is a draft, where the session
    # routes start none.
    assessment_ids = [uuid.uuid4(), uuid.uuid4()]
    for assessment_id in assessment_ids:
        db_session.add(
            AssessmentSession(
                id=assessment_id,
                study_id=study_id,
                participant_id=target_id,
                battery_id=battery_id,
                battery_version_id=battery_version_id,
                battery_version=1,
                status=SessionStatus.STARTED,
                started_at=utcnow(),
                expires_at=utcnow() + timedelta(hours=24),
            )
        )
    await db_session.commit()
    test = await _post(
        client,
        f"/api/item-banks/{bank['id']}/sessions",
        admin.headers,
        {"session_id": str(assessment_ids[0])},
    )
    export_id = await _ready_export(db_session, client, settings, researcher.headers, study_id)
    report = await _post(
        client, f"/api/reports/studies/{study_id}/participants/{target_id}", admin.headers, {}
    )
    # The worker's sessions join the test's transaction, as the request's do.
    worker_sessions = async_sessionmaker(
        bind=db_session.bind,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    await run_pending_exports(worker_sessions, settings)

    participant_headers = await factories.participant_headers(db_session, settings, target_id)
    other_headers = await factories.participant_headers(db_session, settings, other_id)

    headers: dict[Principal, Mapping[str, str]] = {
        Principal.ADMIN: admin.headers,
        Principal.RESEARCHER: researcher.headers,
        Principal.COORDINATOR: coordinator.headers,
        Principal.SITE_COORDINATOR: site_coordinator.headers,
        Principal.READ_ONLY: read_only.headers,
        Principal.OUTSIDER: outsider.headers,
        Principal.PARTICIPANT: participant_headers,
        Principal.OTHER_PARTICIPANT: other_headers,
        Principal.ANONYMOUS: {},
    }
    return World(
        study_id=study_id,
        study_code=study_code,
        other_study_id=other_study_id,
        site_a_id=site_a_id,
        site_b_id=site_b_id,
        spare_member_id=spare_member_id,
        newcomer_user_id=newcomer.user_id,
        target_id=target_id,
        target_code=target["participant_id"],
        other_id=other_id,
        other_code=other["participant_id"],
        published_form_id=uuid.UUID(published["id"]),
        draft_form_id=uuid.UUID(draft["id"]),
        record_id=uuid.UUID(record["id"]),
        battery_id=battery_id,
        schedule_id=uuid.UUID(schedule["id"]),
        target_visit_id=uuid.UUID(target_visit["id"]),
        notification_id=notification_id,
        webhook_id=uuid.UUID(webhook["id"]),
        delivery_id=uuid.UUID(test_delivery["id"]),
        bank_id=uuid.UUID(bank["id"]),
        free_session_id=assessment_ids[1],
        cat_session_id=uuid.UUID(test["id"]),
        cat_item_id=test["next_item_id"],
        export_id=export_id,
        report_id=uuid.UUID(report["id"]),
        headers=headers,
    )
