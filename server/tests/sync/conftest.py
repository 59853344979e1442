"""Fixtures for the offline sync tests.

`app` is the suite's application with every batch item run in the test's own session
(`run_sync_items_in_test_session` in tests/conftest.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditEvent
from app.models.consent import ConsentForm, ConsentFormStatus, ConsentRecord
from app.models.study import ConsentMode, Study
from app.services.consent.forms import form_content_hash
from tests.assessments.conftest import World, build_world
from tests.conftest import run_sync_items_in_test_session
from tests.factories import SIGNATURE, simple_rt_trials

QUESTIONS: list[dict[str, Any]] = [
    {"id": "agree", "text": "I agree to take part", "type": "checkbox", "required": True},
]
ANSWERS: dict[str, Any] = {"agree": True}


@pytest.fixture
def app(app: FastAPI, db_session: AsyncSession) -> FastAPI:
    run_sync_items_in_test_session(app, db_session)
    return app


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings) -> World:
    """The assessments suite's world: an active study without consent requirement, a three-task
    battery, two participants with tokens."""
    return await build_world(client, db_session, settings)


@pytest.fixture
async def consent_form_id(world: World, db_session: AsyncSession) -> uuid.UUID:
    """The study now records consent in Metricis, with one published form nobody has signed."""
    return await require_consent(db_session, world.study_id)


async def require_consent(db_session: AsyncSession, study_id: uuid.UUID) -> uuid.UUID:
    """The study records consent in Metricis from now on, with one published form: its id."""
    study = await db_session.get(Study, study_id)
    assert study is not None
    study.consent_mode = ConsentMode.BUILTIN
    form = ConsentForm(
        id=uuid.uuid4(),
        study_id=study_id,
        language="en",
        version=1,
        title="Consent",
        content="# Taking part\n\nYou may stop at any time.",
        questions=QUESTIONS,
        requires_signature=True,
        reconsent_required=False,
        status=ConsentFormStatus.PUBLISHED,
        published_at=utcnow(),
    )
    form.content_hash = form_content_hash(form)
    db_session.add(form)
    await db_session.commit()
    return form.id


def session_item(
    world: World,
    *,
    day: int = 0,
    session_id: uuid.UUID | None = None,
    trials: list[dict[str, object]] | None = None,
    **overrides: object,
) -> dict[str, Any]:
    started = utcnow() - timedelta(days=7 - day, hours=1)
    item: dict[str, Any] = {
        "type": "session",
        "id": f"item-{uuid.uuid4().hex[:12]}",
        "session_id": str(session_id or uuid.uuid4()),
        "battery_id": str(world.battery_id),
        "battery_version": 1,
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(minutes=12)).isoformat(),
        "status": "completed",
        "device": {"model": "Tablet", "os": "Android 14"},
        "client_time": utcnow().isoformat(),
        "task_summaries": {"simple-rt": {"median_rt": 331.5}},
        "trials": simple_rt_trials(base=300.0 + day) if trials is None else trials,
        "device_info": {"screen": [1280, 800]},
    }
    item.update(overrides)
    return item


def consent_item(form_id: uuid.UUID, *, signed_at: datetime | None = None) -> dict[str, Any]:
    return {
        "type": "consent",
        "id": f"consent-{uuid.uuid4().hex[:12]}",
        "form_id": str(form_id),
        "signer_name": "Pat Example",
        "signer_role": "participant",
        "answers": ANSWERS,
        "signature_image": SIGNATURE,
        "signed_at": (signed_at or utcnow() - timedelta(days=7)).isoformat(),
        "client_time": utcnow().isoformat(),
    }


async def counts(db_session: AsyncSession) -> dict[str, int]:
    values: dict[str, int] = {}
    for name, model in (
        ("sessions", AssessmentSession),
        ("task_results", TaskResult),
        ("trials", Trial),
        ("consent_records", ConsentRecord),
        ("audit_events", AuditEvent),
    ):
        values[name] = int(await db_session.scalar(select(func.count()).select_from(model)) or 0)
    return values


def statuses(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["status"] for item in response.json()["items"]]
