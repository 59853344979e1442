"""Fixtures for the e-consent tests: studies, members, participants, forms and signatures.

Studies, sites, members and participants come from tests/factories.py (as rows; their routers
are tested elsewhere); forms and signatures go through the consent API.
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.audit import AuditEvent
from app.models.participant import Participant, ParticipantActor, ParticipantStatus
from app.models.study import ConsentMode, MemberRole
from tests import factories
from tests.factories import SIGNATURE, Staff

QUESTIONS: list[dict[str, Any]] = [
    {"id": "agree", "text": "I agree to take part", "type": "checkbox", "required": True},
    {
        "id": "contact",
        "text": "May we contact you about future studies?",
        "type": "yes_no",
        "required": True,
    },
    {"id": "comments", "text": "Anything to add?", "type": "text", "required": False},
]
ANSWERS: dict[str, Any] = {"agree": True, "contact": "no"}


def pdf_text(content: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    """Extracted text with line breaks and runs of spaces folded, for phrase checks."""
    return re.sub(r"\s+", " ", text)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    if code is not None:
        assert body["error"]["code"] == code, body
    details: dict[str, Any] = body["error"]["details"]
    return details


@dataclass(frozen=True)
class StudyBox:
    """A study with a researcher (may configure) and a coordinator (may record consent).

    Plain values, not ORM rows: a refused request rolls the shared session back, which expires
    every loaded row.
    """

    id: uuid.UUID
    code: str
    researcher: Staff
    coordinator: Staff


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    code: str
    study_id: uuid.UUID


class ConsentWorld:
    def __init__(
        self, session: AsyncSession, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        self.session = session
        self.client = client
        self.settings = settings

    async def member(
        self, study_id: uuid.UUID, role: MemberRole, *, site_id: uuid.UUID | None = None
    ) -> Staff:
        return await factories.study_member(self.session, self.client, study_id, role, site_id)

    async def study(
        self,
        *,
        languages: list[str] | None = None,
        consent_mode: ConsentMode = ConsentMode.BUILTIN,
    ) -> StudyBox:
        study = await factories.study(
            self.session,
            f"CONS-{uuid.uuid4().hex[:8].upper()}",
            languages or ["en", "fr"],
            name="Memory and Attention in Ageing",
            consent_mode=consent_mode,
        )
        study_id, code = study.id, study.code
        researcher = await self.member(study_id, MemberRole.RESEARCHER)
        coordinator = await self.member(study_id, MemberRole.COORDINATOR)
        return StudyBox(id=study_id, code=code, researcher=researcher, coordinator=coordinator)

    async def site(self, box: StudyBox, code: str) -> uuid.UUID:
        site = await factories.site(self.session, box.id, code, name=f"Site {code}")
        return site.id

    async def participant(
        self,
        box: StudyBox,
        *,
        language: str = "en",
        actor: ParticipantActor = ParticipantActor.PATIENT,
        site_id: uuid.UUID | None = None,
        timezone: str = "Europe/Paris",
        status: ParticipantStatus = ParticipantStatus.ENROLLED,
    ) -> Person:
        participant = await factories.participant(
            self.session,
            box.id,
            site_row=site_id,
            status=status,
            actor=actor,
            language=language,
            timezone=timezone,
        )
        return Person(id=participant.id, code=participant.participant_code, study_id=box.id)

    async def load(self, person: Person) -> Participant:
        """The participant row, read afresh."""
        participant = await self.session.get(Participant, person.id, populate_existing=True)
        assert participant is not None
        return participant

    async def participant_headers(self, person: Person) -> dict[str, str]:
        return await factories.participant_headers(
            self.session, self.settings, await self.load(person)
        )

    async def create_form(
        self,
        box: StudyBox,
        *,
        language: str = "en",
        expect: int = 201,
        **overrides: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "study_id": str(box.id),
            "language": language,
            "title": "Consent to take part",
            "content": "# About the study\n\nYou will play short **memory** games.",
            "questions": QUESTIONS,
            "requires_signature": True,
            "reconsent_required": False,
            **overrides,
        }
        response = await self.client.post(
            "/api/consent/forms", json=body, headers=box.researcher.headers
        )
        assert response.status_code == expect, response.text
        created: dict[str, Any] = response.json()
        return created

    async def publish(self, box: StudyBox, form: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/consent/forms/{form['id']}/publish", headers=box.researcher.headers
        )
        assert response.status_code == 200, response.text
        published: dict[str, Any] = response.json()
        return published

    async def published_form(
        self, box: StudyBox, *, language: str = "en", **overrides: Any
    ) -> dict[str, Any]:
        return await self.publish(box, await self.create_form(box, language=language, **overrides))

    def sign_body(
        self, participant: Person, form: dict[str, Any], **overrides: Any
    ) -> dict[str, Any]:
        return {
            "participant_id": str(participant.id),
            "form_id": form["id"],
            "signer_name": "Alex Martin",
            "signer_role": "participant",
            "answers": ANSWERS,
            "signature_image": SIGNATURE,
            **overrides,
        }

    async def sign(
        self,
        participant: Person,
        form: dict[str, Any],
        headers: dict[str, str],
        **overrides: Any,
    ) -> httpx.Response:
        return await self.client.post(
            "/api/consent/sign",
            json=self.sign_body(participant, form, **overrides),
            headers=headers,
        )

    async def status(self, participant: Person, headers: dict[str, str]) -> dict[str, Any]:
        response = await self.client.get(
            "/api/consent/status", params={"participant_id": str(participant.id)}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def world(db_session: AsyncSession, client: httpx.AsyncClient, settings: Settings) -> ConsentWorld:
    return ConsentWorld(db_session, client, settings)


@pytest.fixture
async def box(world: ConsentWorld) -> StudyBox:
    return await world.study()


class ConsentAudit:
    """The audit events written after the test's setup, to count them per action."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.baseline = 0

    async def mark(self) -> None:
        value = await self.session.scalar(select(func.coalesce(func.max(AuditEvent.sequence), 0)))
        self.baseline = int(value or 0)

    async def events(self) -> list[AuditEvent]:
        return list(
            (
                await self.session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.sequence > self.baseline)
                    .order_by(AuditEvent.sequence)
                )
            ).all()
        )

    async def only(self, action: str) -> AuditEvent:
        """Exactly one event since the mark, of this action and category `consent`."""
        events = await self.events()
        assert [event.action for event in events] == [action]
        assert events[0].category == "consent"
        await self.mark()
        return events[0]


@pytest.fixture
async def audit(db_session: AsyncSession) -> ConsentAudit:
    return ConsentAudit(db_session)
