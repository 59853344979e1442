"""Fixtures for the participant CSV import: staff, studies, sites and an upload helper."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent
from app.models.participant import Participant
from app.models.study import MemberRole
from app.models.user import UserRole
from tests import factories
from tests.factories import Staff

IMPORT_URL = "/api/participants/import"


@dataclass(frozen=True, slots=True)
class StudyRef:
    """Plain values, not ORM rows: a refused request rolls back and expires every loaded row."""

    id: uuid.UUID
    code: str
    languages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SiteRef:
    id: uuid.UUID
    code: str


class World:
    """Builds users, studies, sites and memberships in the test transaction."""

    def __init__(self, session: AsyncSession, client: httpx.AsyncClient) -> None:
        self.session = session
        self.client = client

    async def staff(self, role: UserRole = UserRole.RESEARCHER) -> Staff:
        return await factories.staff(self.session, self.client, role)

    async def study(self, languages: Sequence[str] = ("en", "fr")) -> StudyRef:
        study = await factories.study(
            self.session,
            f"IMP-{uuid.uuid4().hex[:8].upper()}",
            list(languages),
            name="Import study",
        )
        return StudyRef(study.id, study.code, tuple(languages))

    async def site(self, study: StudyRef, code: str, timezone: str = "UTC") -> SiteRef:
        site = await factories.site(self.session, study.id, code, timezone)
        return SiteRef(site.id, code)

    async def member(
        self, study: StudyRef, staff: Staff, role: MemberRole, site: SiteRef | None = None
    ) -> None:
        await factories.member(self.session, study.id, staff, role, site.id if site else None)

    async def researcher_of(self, study: StudyRef) -> Staff:
        return await factories.study_member(
            self.session, self.client, study.id, MemberRole.RESEARCHER
        )

    async def participant(self, study: StudyRef, code: str) -> uuid.UUID:
        participant = await factories.participant(self.session, study.id, code)
        return participant.id

    async def participant_count(self, study: StudyRef) -> int:
        count = await self.session.scalar(
            select(func.count()).select_from(Participant).where(Participant.study_id == study.id)
        )
        return int(count or 0)

    async def import_events(self, study: StudyRef) -> list[AuditEvent]:
        events = await self.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "participant.import", AuditEvent.study_id == study.id)
            .order_by(AuditEvent.sequence)
        )
        return list(events.all())


@pytest.fixture
def world(db_session: AsyncSession, client: httpx.AsyncClient) -> World:
    return World(db_session, client)


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]], *, bom: bool = False) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode()


async def upload(
    client: httpx.AsyncClient,
    staff: Staff,
    study_id: uuid.UUID,
    content: bytes,
    *,
    dry_run: bool | None = None,
    filename: str = "participants.csv",
) -> httpx.Response:
    data = {"study_id": str(study_id)}
    if dry_run is not None:
        data["dry_run"] = "true" if dry_run else "false"
    return await client.post(
        IMPORT_URL,
        headers=staff.headers,
        data=data,
        files={"file": (filename, content, "text/csv")},
    )


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error
