from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.study import MemberRole
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
    study = await factories.active_study(db_session)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    battery_id, _ = await factories.battery(
        db_session, study, ["simple-rt", "cpt-go-nogo", "digit-span"]
    )
    first = await factories.participant(db_session, study, "P001")
    second = await factories.participant(db_session, study, "P002")
    return World(
        study_id=study.id,
        study_code=study.code,
        battery_id=battery_id,
        participant_id=first.id,
        other_participant_id=second.id,
        coordinator=coordinator.headers,
        researcher=researcher.headers,
        participant=await factories.participant_headers(db_session, settings, first),
        other_participant=await factories.participant_headers(db_session, settings, second),
    )


async def start(
    client: httpx.AsyncClient, world: World, participant_id: str | None = None, **extra: object
) -> httpx.Response:
    """The world's first participant starts a session on the world's battery, naming itself by
    UUID unless `participant_id` names someone."""
    reference = world.participant_id if participant_id is None else participant_id
    return await factories.start_session(
        client, world.participant, reference, world.battery_id, **extra
    )


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
    study = await factories.active_study(db, f"CONC-{uuid.uuid4().hex[:8].upper()}")
    battery_id, _ = await factories.battery(db, study, tasks)
    participant = await factories.participant(db, study, "C1")
    headers = await factories.participant_headers(db, settings, participant)
    return CommittedParticipant(study.id, battery_id, participant.id, headers)
