"""Events are written in the transaction of the change that causes them, for the destinations
that want them, with payloads free of contact details; a failed change writes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.db.session import transaction_scope
from app.models.outbox import OutboxDelivery, OutboxEvent
from app.models.participant import Participant
from app.models.study import ConsentMode, MemberRole, Study, StudyMember, StudyStatus
from app.models.user import User
from app.services.audit import AuditContext
from app.services.participants import ParticipantFields, create_participant
from app.services.principals import StaffPrincipal
from tests import factories
from tests.webhooks.conftest import Team, create_webhook, enroll, webhook_settings
from tests.webhooks.conftest import team as team  # the fixture, shared
from tests.webhooks.receiver import Receiver, running

EMAIL = "grace.hopper@example.org"
PHONE = "+1 202 555 0143"


@pytest.fixture
def settings(database_url: str, storage_dir: Path) -> Settings:
    return webhook_settings(database_url, storage_dir)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running(Receiver())


async def _events(db_session: AsyncSession, study_id: uuid.UUID) -> list[OutboxEvent]:
    return list(
        (
            await db_session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.study_id == study_id)
                .order_by(OutboxEvent.occurred_at, OutboxEvent.type)
                .execution_options(populate_existing=True)
            )
        ).all()
    )


def _types(events: list[OutboxEvent]) -> list[str]:
    return [event.type.value for event in events]


def _no_contact_details(events: list[OutboxEvent]) -> None:
    text = json.dumps([event.payload for event in events])
    assert EMAIL not in text and PHONE not in text and "5550143" not in text.replace(" ", "")


async def test_nothing_is_written_for_an_event_no_webhook_wants(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    await enroll(client, team, "NOBODY-01")
    await create_webhook(client, team, receiver.url(), ["session.completed"])
    await enroll(client, team, "NOBODY-02")
    assert await _events(db_session, team.study_id) == []


async def test_an_event_fans_out_to_each_active_webhook_that_wants_it(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    first = await create_webhook(client, team, receiver.url("/a"), ["participant.enrolled"])
    second = await create_webhook(client, team, receiver.url("/b"), ["participant.enrolled"])
    await create_webhook(client, team, receiver.url("/c"), ["participant.enrolled"], active=False)
    await create_webhook(client, team, receiver.url("/d"), ["consent.signed"])

    await enroll(client, team, "FAN-01", email=EMAIL, phone=PHONE)

    [event] = await _events(db_session, team.study_id)
    targets = (
        await db_session.scalars(
            select(OutboxDelivery.subscription_id).where(OutboxDelivery.event_id == event.id)
        )
    ).all()
    assert sorted(map(str, targets)) == sorted([first["id"], second["id"]])
    assert event.version == 1 and event.payload["participant_code"] == "FAN-01"
    _no_contact_details([event])


async def test_enrollment_is_announced_on_creation_status_change_and_import(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    await create_webhook(client, team, receiver.url(), ["participant.enrolled"])
    await enroll(client, team, "ENR-01", email=EMAIL)
    screened = await enroll(client, team, "ENR-02", status="screened")
    assert _types(await _events(db_session, team.study_id)) == ["participant.enrolled"]

    url = f"/api/participants/{screened['id']}"
    await client.patch(url, headers=team.researcher, json={"timezone": "Europe/Paris"})
    assert len(await _events(db_session, team.study_id)) == 1
    moved = await client.patch(url, headers=team.researcher, json={"status": "enrolled"})
    assert moved.status_code == 200, moved.text
    assert len(await _events(db_session, team.study_id)) == 2

    csv = f"participant_id,status,email\nIMP-01,,{EMAIL}\nIMP-02,screened,\nIMP-03,enrolled,\n"
    for dry_run in ("true", "false"):
        imported = await client.post(
            "/api/participants/import",
            headers=team.researcher,
            data={"study_id": str(team.study_id), "dry_run": dry_run},
            files={"file": ("p.csv", csv.encode(), "text/csv")},
        )
        assert imported.status_code == (200 if dry_run == "true" else 201), imported.text
    events = await _events(db_session, team.study_id)
    codes = sorted(event.payload["participant_code"] for event in events)
    assert codes == ["ENR-01", "ENR-02", "IMP-01", "IMP-03"]
    imported_event = next(e for e in events if e.payload["participant_code"] == "IMP-01")
    assert imported_event.participant_id is not None
    assert set(imported_event.payload) == {
        "participant_id",
        "participant_code",
        "site_id",
        "enrollment_date",
        "actor",
        "language",
    }
    _no_contact_details(events)


async def test_a_change_that_rolls_back_takes_its_event_with_it(
    team: Team,
    receiver: Receiver,
    client: httpx.AsyncClient,
    db_session: AsyncSession,
    settings: Settings,
) -> None:
    await create_webhook(client, team, receiver.url(), ["participant.enrolled"])
    researcher = await db_session.scalar(
        select(User)
        .join(StudyMember, StudyMember.user_id == User.id)
        .where(StudyMember.study_id == team.study_id, StudyMember.role == MemberRole.RESEARCHER)
    )
    assert researcher is not None
    acting = StaffPrincipal(
        user_id=researcher.id,
        session_id=uuid.uuid4(),
        email=researcher.email,
        name=researcher.name,
        role=researcher.role,
        must_change_password=False,
    )

    class RefusedError(Exception):
        pass

    with pytest.raises(RefusedError):
        async with transaction_scope(db_session):
            await create_participant(
                db_session,
                settings,
                FieldEncryptor.from_settings(settings),
                AuditContext.system(),
                acting,
                team.study_id,
                ParticipantFields(participant_code="ROLLED-BACK"),
            )
            # The event is there inside the transaction...
            assert len(await _events(db_session, team.study_id)) == 1
            raise RefusedError
    # ...and gone with it.
    assert await _events(db_session, team.study_id) == []
    assert (
        await db_session.scalar(
            select(func.count())
            .select_from(Participant)
            .where(Participant.study_id == team.study_id)
        )
        == 0
    )


async def _active_study(db_session: AsyncSession, study_id: uuid.UUID) -> uuid.UUID:
    """The team's study, made active without consent in Metricis, with a battery of two tasks."""
    study = await db_session.get(Study, study_id)
    assert study is not None
    study.status = StudyStatus.ACTIVE
    study.consent_mode = ConsentMode.NONE
    await db_session.commit()
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt", "digit-span"])
    return battery_id


async def test_accepted_tasks_and_a_completed_session_are_announced_once(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    battery_id = await _active_study(db_session, team.study_id)
    await create_webhook(client, team, receiver.url(), ["task.accepted", "session.completed"])
    participant = await enroll(client, team, "SES-01", email=EMAIL, phone=PHONE)
    started = await factories.start_session(client, team.researcher, participant["id"], battery_id)
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]

    async def submit(task: str, n: int, seed: int = 0) -> int:
        trials = factories.task_trials(task, n, seed=seed)
        answer = await factories.submit(client, team.researcher, session_id, {"trials": trials})
        return answer.status_code

    assert await submit("simple-rt", 12) == 201
    assert await submit("simple-rt", 12) == 200  # a replay
    assert await submit("simple-rt", 12, seed=5) == 409  # a conflict
    assert _types(await _events(db_session, team.study_id)) == ["task.accepted"]
    assert await submit("digit-span", 6) == 201
    ended = await client.post(
        "/api/session/end",
        headers=team.researcher,
        json={"session_id": session_id, "status": "completed"},
    )
    assert ended.status_code == 200, ended.text

    events = await _events(db_session, team.study_id)
    assert sorted(_types(events)) == ["session.completed", "task.accepted", "task.accepted"]
    accepted = [e for e in events if e.type.value == "task.accepted"]
    assert sorted(e.payload["task"] for e in accepted) == ["digit-span", "simple-rt"]
    rt = next(e for e in accepted if e.payload["task"] == "simple-rt")
    assert rt.payload["session_id"] == session_id and rt.payload["n_trials"] == 12
    assert rt.payload["scores"] and isinstance(rt.payload["flags"], list)
    assert len(rt.payload["source_sha256"]) == 64
    [completed] = [e for e in events if e.type.value == "session.completed"]
    assert completed.payload["participant_code"] == "SES-01"
    assert [t["task"] for t in completed.payload["tasks"]] == ["simple-rt", "digit-span"]
    assert completed.payload["ended_at"] is not None
    assert all(e.participant_id == uuid.UUID(participant["id"]) for e in events)
    _no_contact_details(events)

    # An abandoned session is not a completed one.
    second = await factories.start_session(client, team.researcher, participant["id"], battery_id)
    await client.post(
        "/api/session/end",
        headers=team.researcher,
        json={"session_id": second.json()["session_id"], "status": "abandoned"},
    )
    assert len(await _events(db_session, team.study_id)) == 3


async def test_consent_and_withdrawal_are_announced_without_names_or_reasons(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    await create_webhook(client, team, receiver.url(), ["consent.signed", "participant.withdrawn"])
    participant = await enroll(client, team, "CON-01")
    form_body = {
        "study_id": str(team.study_id),
        "language": "en",
        "title": "Consent",
        "content": "# Consent\n\nYou may stop at any time.",
        "requires_signature": False,
    }
    form = (await client.post("/api/consent/forms", headers=team.researcher, json=form_body)).json()
    published = await client.post(
        f"/api/consent/forms/{form['id']}/publish", headers=team.researcher, json={}
    )
    assert published.status_code == 200, published.text
    signed = await client.post(
        "/api/consent/sign",
        headers=team.researcher,
        json={
            "participant_id": participant["id"],
            "form_id": form["id"],
            "signer_name": "Ada Byron-King",
            "signer_role": "participant",
        },
    )
    assert signed.status_code == 201, signed.text
    withdrawn = await client.post(
        f"/api/participants/{participant['id']}/withdraw",
        headers=team.researcher,
        json={"reason": "moved to Lisbon for family reasons", "scope": "stop_collection"},
    )
    assert withdrawn.status_code == 200, withdrawn.text

    events = await _events(db_session, team.study_id)
    assert _types(events) == ["consent.signed", "participant.withdrawn"]
    consent, withdrawal = events
    assert consent.payload["consent_record_id"] == signed.json()["id"]
    assert consent.payload["form_version"] == 1 and consent.payload["signer_role"] == "participant"
    assert withdrawal.payload["scope"] == "stop_collection"
    text = json.dumps([consent.payload, withdrawal.payload])
    assert "Byron" not in text and "Lisbon" not in text


async def test_erasing_a_participant_erases_the_events_about_them(
    client: httpx.AsyncClient, team: Team, receiver: Receiver, db_session: AsyncSession
) -> None:
    await create_webhook(
        client, team, receiver.url(), ["participant.enrolled", "participant.withdrawn"]
    )
    erased = await enroll(client, team, "ERA-01")
    kept = await enroll(client, team, "ERA-02")
    answer = await client.post(
        f"/api/participants/{erased['id']}/withdraw",
        headers=team.researcher,
        json={"reason": "asked for erasure", "scope": "delete_data"},
    )
    assert answer.status_code == 200, answer.text

    events = await _events(db_session, team.study_id)
    assert [(e.type.value, e.payload["participant_code"]) for e in events] == [
        ("participant.enrolled", kept["participant_id"]),
        ("participant.withdrawn", "ERA-01"),
    ]
    assert events[1].payload["scope"] == "delete_data"
