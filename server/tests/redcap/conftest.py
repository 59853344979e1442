"""REDCap tests: a REDCap emulator over real HTTP, settings that let the server reach it, a study
team, and the REDCap dispatcher run in the test's own transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.study import ConsentMode, MemberRole, StudyStatus
from app.models.user import UserRole
from app.services.outbox.dispatch import DispatchReport, SessionFactory
from app.services.redcap.dispatcher import dispatch_redcap
from tests import factories
from tests.conftest import make_settings
from tests.redcap.emulator import EmulatedProject, Emulator, metadata_rows, running
from tests.webhooks.conftest import make_due as make_due  # shared with the REDCap tests
from tests.webhooks.conftest import sessions as sessions  # the fixture, shared

TOKEN = "0123456789ABCDEF0123456789ABCDEF"
OTHER_TOKEN = "FEDCBA9876543210FEDCBA9876543210"
FIELDS = ["record_id", "srt_median", "srt_n", "ds_span", "notes"]
MAPPING = {"simple-rt.median_rt": "srt_median", "simple-rt.n_responses": "srt_n"}


def redcap_settings(database_url: str, storage_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "WEBHOOK_ALLOWED_HOSTS": ["127.0.0.1"],
        "REDCAP_TIMEOUT_SECONDS": 2.0,
        "OUTBOX_LEASE_SECONDS": 12.0,
        # Retries never fall due within the run that scheduled them: tests bring them forward.
        "OUTBOX_RETRY_BASE_SECONDS": 30.0,
        "OUTBOX_RETRY_MAX_SECONDS": 3600.0,
        "OUTBOX_MAX_ATTEMPTS": 3,
        **overrides,
    }
    return make_settings(database_url, storage_dir, **values)


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    return redcap_settings(database_url, storage_dir)


def classic_project(token: str = TOKEN) -> EmulatedProject:
    return EmulatedProject(token=token, fields=metadata_rows(FIELDS))


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    yield from running(Emulator(classic_project()))


async def dispatch_now(sessions: SessionFactory, settings: Settings) -> DispatchReport:
    return await dispatch_redcap(sessions, settings, concurrency=1)


@dataclass(frozen=True, slots=True)
class Team:
    study_id: uuid.UUID
    site_id: uuid.UUID
    battery_id: uuid.UUID
    admin: dict[str, str]
    researcher: dict[str, str]
    coordinator: dict[str, str]
    outsider: dict[str, str]

    @property
    def redcap(self) -> str:
        return f"/api/redcap/{self.study_id}"


@pytest.fixture
async def team(client: httpx.AsyncClient, db_session: AsyncSession) -> Team:
    study = await factories.study(
        db_session, status=StudyStatus.ACTIVE, consent_mode=ConsentMode.NONE
    )
    site = await factories.site(db_session, study, "LYON", "Europe/Paris")
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt", "digit-span"])
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    outsider = await factories.staff(db_session, client, UserRole.RESEARCHER)
    return Team(
        study_id=study.id,
        site_id=site.id,
        battery_id=battery_id,
        admin=admin.headers,
        researcher=researcher.headers,
        coordinator=coordinator.headers,
        outsider=outsider.headers,
    )


def config_body(emulator: Emulator, **fields: Any) -> dict[str, Any]:
    return {
        "api_url": emulator.url,
        "api_token": TOKEN,
        "record_id_field": "record_id",
        "field_mapping": MAPPING,
        **fields,
    }


async def configure(
    client: httpx.AsyncClient,
    team: Team,
    emulator: Emulator,
    *,
    site_id: uuid.UUID | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.put(
        f"{team.redcap}/config",
        headers=team.researcher,
        params={"site_id": str(site_id)} if site_id else None,
        json=config_body(emulator, **fields),
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def enroll(
    client: httpx.AsyncClient, team: Team, code: str, site: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"study_id": str(team.study_id), "participant_id": code}
    if site:
        body["site_id"] = site
    response = await client.post("/api/participants", headers=team.researcher, json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def complete_session(
    client: httpx.AsyncClient,
    team: Team,
    participant_id: str,
    *,
    seed: int = 0,
    visit_id: str | None = None,
    battery_id: uuid.UUID | None = None,
) -> str:
    """Start a session, submit simple RT trials, end it completed; the session id."""
    extra: dict[str, object] = {"visit_id": visit_id} if visit_id else {}
    started = await factories.start_session(
        client, team.researcher, participant_id, battery_id or team.battery_id, **extra
    )
    assert started.status_code == 201, started.text
    session_id: str = started.json()["session_id"]
    trials = factories.task_trials("simple-rt", 12, seed=seed)
    submitted = await factories.submit(client, team.researcher, session_id, {"trials": trials})
    assert submitted.status_code == 201, submitted.text
    ended = await client.post(
        "/api/session/end",
        headers=team.researcher,
        json={"session_id": session_id, "status": "completed"},
    )
    assert ended.status_code == 200, ended.text
    return session_id


async def push_log(client: httpx.AsyncClient, team: Team, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"{team.redcap}/log", headers=team.researcher, params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data
