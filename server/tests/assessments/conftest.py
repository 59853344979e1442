from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.participant import Participant, ParticipantStatus
from app.models.study import ConsentMode, MemberRole, Study, StudyStatus
from app.models.user import UserRole
from app.services.audit import AuditContext
from app.services.participant_auth import open_participant_login
from tests import factories


@dataclass
class World:
    study_id: uuid.UUID
    study_code: str
    battery_id: uuid.UUID
    participant_id: uuid.UUID
    other_participant_id: uuid.UUID
    coordinator: dict[str, str]
    researcher: dict[str, str]
    participant: dict[str, str]
    other_participant: dict[str, str]


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings) -> World:
    return await build_world(client, db_session, settings)


async def build_world(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> World:
    """An active study without consent requirement, a battery of three tasks, two participants."""
    study = await factories.study(db_session)
    study.status = StudyStatus.ACTIVE
    study.consent_mode = ConsentMode.NONE
    await db_session.commit()
    coordinator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    await factories.member(db_session, study, coordinator, MemberRole.COORDINATOR)
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    await factories.member(db_session, study, researcher, MemberRole.RESEARCHER)
    battery_id, _ = await factories.battery(
        db_session, study, ["simple-rt", "cpt-go-nogo", "digit-span"]
    )
    first = await factories.participant(db_session, study, "P001")
    second = await factories.participant(db_session, study, "P002")
    tokens = []
    for row in (first, second):
        login = await open_participant_login(
            db_session, settings, AuditContext.system(), row, method="access_code"
        )
        tokens.append({"Authorization": f"Bearer {login.access_token}"})
    await db_session.commit()
    return World(
        study_id=study.id,
        study_code=study.code,
        battery_id=battery_id,
        participant_id=first.id,
        other_participant_id=second.id,
        coordinator=coordinator.headers,
        researcher=researcher.headers,
        participant=tokens[0],
        other_participant=tokens[1],
    )


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


@dataclass(frozen=True, slots=True)
class CommittedParticipant:
    study_id: uuid.UUID
    battery_id: uuid.UUID
    participant_id: uuid.UUID
    headers: dict[str, str]  # the participant's token


async def committed_participant(
    db: AsyncSession, settings: Settings, tasks: list[str]
) -> CommittedParticipant:
    """An active study without consent requirement, a battery of `tasks` and one participant
    with a token, committed for real: for tests whose requests run on connections of their own."""
    study = Study(
        id=uuid.uuid4(),
        code=f"CONC-{uuid.uuid4().hex[:8].upper()}",
        name="Concurrency",
        status=StudyStatus.ACTIVE,
        consent_mode=ConsentMode.NONE,
        supported_languages=["en"],
        config={},
    )
    db.add(study)
    await db.flush()
    battery_id, _ = await factories.battery(db, study, tasks)
    participant = Participant(
        id=uuid.uuid4(),
        study_id=study.id,
        participant_code="C1",
        status=ParticipantStatus.ENROLLED,
        language="en",
        timezone="UTC",
    )
    db.add(participant)
    await db.flush()
    login = await open_participant_login(
        db, settings, AuditContext.system(), participant, method="access_code"
    )
    await db.commit()
    return CommittedParticipant(
        study.id, battery_id, participant.id, {"Authorization": f"Bearer {login.access_token}"}
    )


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
