"""Builders for test data, through the same services the API uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.participant import Participant, ParticipantStatus
from app.models.study import MemberRole, Site, Study, StudyMember
from app.models.user import UserRole
from app.services.audit import AuditContext
from app.services.users import create_user

PASSWORD = "Correct-Horse-Battery-42"


@dataclass(frozen=True, slots=True)
class Staff:
    user_id: uuid.UUID
    email: str
    headers: dict[str, str]


async def staff(
    db_session: AsyncSession, client: httpx.AsyncClient, role: UserRole, email: str | None = None
) -> Staff:
    email = email or f"{role.value}-{uuid.uuid4().hex[:8]}@example.org"
    created = await create_user(
        db_session,
        AuditContext.system(),
        email=email,
        name=f"Test {role.value}",
        role=role,
        password=PASSWORD,
        must_change_password=False,
    )
    await db_session.commit()
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return Staff(created.user.id, email, {"Authorization": f"Bearer {token}"})


async def study(
    db_session: AsyncSession, code: str | None = None, languages: list[str] | None = None
) -> Study:
    row = Study(
        id=uuid.uuid4(),
        code=code or f"ST-{uuid.uuid4().hex[:8].upper()}",
        name="Test study",
        supported_languages=languages or ["en"],
        config={},
    )
    db_session.add(row)
    await db_session.commit()
    return row


async def site(db_session: AsyncSession, study_row: Study, code: str, tz: str = "UTC") -> Site:
    row = Site(id=uuid.uuid4(), study_id=study_row.id, code=code, name=code, timezone=tz)
    db_session.add(row)
    await db_session.commit()
    return row


async def member(
    db_session: AsyncSession,
    study_row: Study,
    user: Staff,
    role: MemberRole,
    site_row: Site | None = None,
) -> StudyMember:
    row = StudyMember(
        id=uuid.uuid4(),
        study_id=study_row.id,
        user_id=user.user_id,
        role=role,
        site_id=site_row.id if site_row else None,
    )
    db_session.add(row)
    await db_session.commit()
    return row


async def participant(
    db_session: AsyncSession, study_row: Study, code: str, site_row: Site | None = None
) -> Participant:
    row = Participant(
        id=uuid.uuid4(),
        study_id=study_row.id,
        participant_code=code,
        site_id=site_row.id if site_row else None,
        status=ParticipantStatus.ENROLLED,
        language=(study_row.supported_languages or ["en"])[0],
        timezone="UTC",
    )
    db_session.add(row)
    await db_session.commit()
    return row


async def battery(
    db_session: AsyncSession, study_row: Study, tasks: list[str], name: str = "Battery"
) -> tuple[uuid.UUID, uuid.UUID]:
    """A battery with one version of these modules at their default configs: (battery, version)."""
    from app.catalogue import validate_task_config
    from app.core.clock import utcnow
    from app.models.battery import Battery, BatteryVersion

    battery_row = Battery(id=uuid.uuid4(), study_id=study_row.id, name=name, current_version=1)
    version_row = BatteryVersion(
        id=uuid.uuid4(),
        battery_id=battery_row.id,
        version=1,
        name=name,
        tasks=[{"module_id": t, "config": validate_task_config(t, {})} for t in tasks],
        created_at=utcnow(),
    )
    db_session.add(battery_row)
    await db_session.flush()
    db_session.add(version_row)
    await db_session.commit()
    return battery_row.id, version_row.id
