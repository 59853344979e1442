"""Builders for test data, through the same services the API uses: staff and their logins,
studies, sites, memberships, participants and their tokens, batteries, trials and sessions.

Every suite builds with these. Rows are committed (the test's transaction rolls them back at
the end); builders take a study or site as a row or as its id, since a refused request rolls
the shared session back and suites keep plain ids rather than rows that may have expired.
"""

from __future__ import annotations

import base64
import io
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image, ImageDraw
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import validate_task_config
from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.battery import Battery, BatteryVersion
from app.models.participant import Participant, ParticipantActor, ParticipantStatus
from app.models.study import ConsentMode, MemberRole, Site, Study, StudyMember, StudyStatus
from app.models.user import User, UserRole
from app.services.audit import AuditContext
from app.services.participant_auth import hash_access_code, open_participant_login
from app.services.participants import email_index
from app.services.users import create_user

PASSWORD = "Correct-Horse-Battery-42"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _id(row: Study | Site | uuid.UUID) -> uuid.UUID:
    return row if isinstance(row, uuid.UUID) else row.id


# ---------------------------------------------------------------------------------------------
# Staff


@dataclass(frozen=True, slots=True)
class Staff:
    user_id: uuid.UUID
    email: str
    name: str
    headers: dict[str, str]


async def user(
    db_session: AsyncSession,
    role: UserRole,
    *,
    email: str | None = None,
    name: str | None = None,
    password: str = PASSWORD,
    must_change_password: bool = False,
) -> User:
    """A staff account, created by the users service; not signed in."""
    created = await create_user(
        db_session,
        AuditContext.system(),
        email=email or f"{role.value}-{uuid.uuid4().hex[:10]}@example.org",
        name=name or f"Test {role.value}",
        role=role,
        password=password,
        must_change_password=must_change_password,
    )
    await db_session.commit()
    return created.user


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """The body of a successful `POST /api/auth/login`."""
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def staff(
    db_session: AsyncSession,
    client: httpx.AsyncClient,
    role: UserRole,
    email: str | None = None,
    *,
    name: str | None = None,
) -> Staff:
    """A staff account signed in through the API, with its `Authorization` headers."""
    account = await user(db_session, role, email=email, name=name)
    body = await login(client, account.email)
    return Staff(account.id, account.email, account.name, bearer(body["access_token"]))


# ---------------------------------------------------------------------------------------------
# Studies, sites, members


async def study(
    db_session: AsyncSession,
    code: str | None = None,
    languages: list[str] | None = None,
    *,
    name: str = "Test study",
    status: StudyStatus = StudyStatus.DRAFT,
    consent_mode: ConsentMode = ConsentMode.BUILTIN,
) -> Study:
    row = Study(
        id=uuid.uuid4(),
        code=code or f"ST-{uuid.uuid4().hex[:8].upper()}",
        name=name,
        status=status,
        consent_mode=consent_mode,
        supported_languages=languages or ["en"],
        config={},
    )
    db_session.add(row)
    await db_session.commit()
    return row


async def active_study(db_session: AsyncSession, code: str | None = None) -> Study:
    """An active study that asks no consent in Metricis: sessions can start at once."""
    return await study(db_session, code, status=StudyStatus.ACTIVE, consent_mode=ConsentMode.NONE)


async def site(
    db_session: AsyncSession,
    study_row: Study | uuid.UUID,
    code: str,
    tz: str = "UTC",
    *,
    name: str | None = None,
) -> Site:
    row = Site(id=uuid.uuid4(), study_id=_id(study_row), code=code, name=name or code, timezone=tz)
    db_session.add(row)
    await db_session.commit()
    return row


async def member(
    db_session: AsyncSession,
    study_row: Study | uuid.UUID,
    user: Staff,
    role: MemberRole,
    site_row: Site | uuid.UUID | None = None,
) -> StudyMember:
    row = StudyMember(
        id=uuid.uuid4(),
        study_id=_id(study_row),
        user_id=user.user_id,
        role=role,
        site_id=_id(site_row) if site_row is not None else None,
    )
    db_session.add(row)
    await db_session.commit()
    return row


async def study_member(
    db_session: AsyncSession,
    client: httpx.AsyncClient,
    study_row: Study | uuid.UUID,
    role: MemberRole,
    site_row: Site | uuid.UUID | None = None,
) -> Staff:
    """A new signed-in staff member of the study, with the global role of the same name."""
    person = await staff(db_session, client, UserRole(role.value))
    await member(db_session, study_row, person, role, site_row)
    return person


# ---------------------------------------------------------------------------------------------
# Participants


async def participant(
    db_session: AsyncSession,
    study_row: Study | uuid.UUID,
    code: str | None = None,
    site_row: Site | uuid.UUID | None = None,
    *,
    status: ParticipantStatus = ParticipantStatus.ENROLLED,
    actor: ParticipantActor = ParticipantActor.PATIENT,
    language: str | None = None,
    timezone: str = "UTC",
    settings: Settings | None = None,
    email: str | None = None,
    phone: str | None = None,
    access_code: str | None = None,
) -> Participant:
    """A participant (code `P` + six characters by default) in the study's first language.

    An `email` (with its blind index) and a `phone` are stored encrypted and an `access_code`
    hashed, as the application stores them: all need `settings`.
    """
    if language is None:
        row_of_study = (
            study_row if isinstance(study_row, Study) else await db_session.get(Study, study_row)
        )
        assert row_of_study is not None
        language = (row_of_study.supported_languages or ["en"])[0]
    assert settings is not None or (email is None and phone is None and access_code is None)
    row = Participant(
        id=uuid.uuid4(),
        study_id=_id(study_row),
        participant_code=code or f"P{uuid.uuid4().hex[:6].upper()}",
        site_id=_id(site_row) if site_row is not None else None,
        status=status,
        actor=actor,
        language=language,
        timezone=timezone,
    )
    if settings is not None and email is not None:
        row.email_encrypted = FieldEncryptor.from_settings(settings).encrypt(email)
        row.email_index = email_index(settings, email)
    if settings is not None and phone is not None:
        row.phone_encrypted = FieldEncryptor.from_settings(settings).encrypt(phone)
    if settings is not None and access_code is not None:
        row.access_code_hash = hash_access_code(settings, access_code)
    db_session.add(row)
    await db_session.commit()
    return row


async def participant_headers(
    db_session: AsyncSession, settings: Settings, participant_row: Participant | uuid.UUID
) -> dict[str, str]:
    """A fresh participant token (an access-code sign-in), as request headers."""
    if isinstance(participant_row, uuid.UUID):
        found = await db_session.get(Participant, participant_row)
        assert found is not None
        participant_row = found
    tokens = await open_participant_login(
        db_session, settings, AuditContext.system(), participant_row, method="access_code"
    )
    await db_session.commit()
    return bearer(tokens.access_token)


# ---------------------------------------------------------------------------------------------
# Batteries, trials and sessions


async def battery(
    db_session: AsyncSession, study_row: Study | uuid.UUID, tasks: list[str], name: str = "Battery"
) -> tuple[uuid.UUID, uuid.UUID]:
    """A battery with one version of these modules at their default configs: (battery, version)."""
    battery_row = Battery(id=uuid.uuid4(), study_id=_id(study_row), name=name, current_version=1)
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


def simple_rt_trials(n: int = 10, *, base: float = 300.0) -> list[dict[str, object]]:
    return [
        {
            "task": "simple-rt",
            "trial_index": i,
            "rt": base + i * 7,
            "response": "tap",
            "stimulus": "dot",
        }
        for i in range(n)
    ]


def cpt_trials() -> list[dict[str, object]]:
    """Twenty CPT trials, every fourth a target: one target missed, one false alarm."""
    trials: list[dict[str, object]] = []
    for i in range(20):
        target = i % 4 == 0
        responded = (target and i != 8) or (not target and i == 3)
        trials.append(
            {
                "task": "cpt",
                "trial_index": i,
                "condition": "target" if target else "nontarget",
                "rt": 350.0 + i if responded else None,
                "stimulus": "X" if target else "O",
                "correct": (responded == target),
            }
        )
    return trials


def task_trials(task: str, n: int, *, seed: int = 0) -> list[dict[str, object]]:
    """`n` plausible trials of any reaction-time task (`seed` varies the content)."""
    return [
        {
            "task": task,
            "trial_index": i,
            "rt": 250.0 + (i * 37 + seed) % 400,
            "correct": (i + seed) % 7 != 0,
            "response": "left" if i % 2 else "right",
            "stimulus": f"s{i % 12}",
            "condition": "congruent" if i % 3 else "incongruent",
        }
        for i in range(n)
    ]


async def start_session(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    participant: uuid.UUID | str,
    battery_id: uuid.UUID,
    **extra: object,
) -> httpx.Response:
    """`POST /api/session/start` for the participant (its UUID or code) on the battery; `extra`
    joins the body."""
    return await client.post(
        "/api/session/start",
        headers=headers,
        json={"participant_id": str(participant), "battery_id": str(battery_id), **extra},
    )


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: str, body: dict[str, object]
) -> httpx.Response:
    """`POST /api/submit` of `body` for the session, with the `X-Session-ID` it needs."""
    return await client.post(
        "/api/submit",
        headers={**headers, "X-Session-ID": session_id},
        json={"session_id": session_id, **body},
    )


# ---------------------------------------------------------------------------------------------
# Signatures


def png_bytes(width: int = 240, height: int = 80) -> bytes:
    """A drawn signature: one stroke on a transparent PNG, as a signature pad produces."""
    image = Image.new("RGBA", (width, height), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(10, 60), (80, 15), (150, 65), (230, 20)], fill="black", width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(data: bytes | None = None) -> str:
    return "data:image/png;base64," + base64.b64encode(data or png_bytes()).decode()


SIGNATURE = png_data_uri()
