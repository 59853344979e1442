"""Consent status, re-consent after a new version, withdrawal, and the gate sessions consult."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.models.participant import ParticipantStatus
from app.models.study import ConsentMode
from app.services.consent.gate import ConsentGateResult, consent_gate
from tests.consent.conftest import ConsentAudit, ConsentWorld, Person, StudyBox, assert_error

ALLOWED = ConsentGateResult(allowed=True)


async def gate(world: ConsentWorld, person: Person) -> tuple[bool, str | None]:
    result = await consent_gate(world.session, await world.load(person))
    return result.allowed, result.reason


async def test_gate_follows_the_consent_lifecycle(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = await world.participant_headers(person)

    assert await gate(world, person) == (False, "CONSENT_REQUIRED")
    refused = await consent_gate(world.session, await world.load(person))
    assert refused.message

    status = await world.status(person, headers)
    assert status == {
        "participant_id": str(person.id),
        "required": True,
        "current_form": status["current_form"],
        "signed_version": None,
        "needs_reconsent": False,
        "withdrawn": False,
        "record_id": None,
    }
    assert status["current_form"]["id"] == form["id"]
    assert status["current_form"]["content_hash"] == form["content_hash"]
    own = await world.client.get("/api/consent/status", headers=headers)
    assert own.json() == status

    signed = (await world.sign(person, form, headers)).json()
    assert await consent_gate(world.session, await world.load(person)) == ALLOWED
    status = await world.status(person, headers)
    assert (status["signed_version"], status["record_id"]) == (1, signed["id"])

    await audit.mark()
    response = await world.client.post(
        "/api/consent/withdraw", json={"reason": "No longer wishes to take part"}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["participant_id"] == str(person.id)
    assert body["reason"] == "No longer wishes to take part"
    assert [record["id"] for record in body["records"]] == [signed["id"]]
    assert body["records"][0]["withdrawn_at"] == body["withdrawn_at"]
    assert body["records"][0]["withdrawal_reason"] == "No longer wishes to take part"
    event = await audit.only("consent.withdrawn")
    assert event.reason == "No longer wishes to take part"
    assert event.participant_id == person.id
    assert event.before is not None and event.after is not None
    assert event.before["active_records"][0]["withdrawn_at"] is None
    assert event.after["withdrawn_records"][0]["record_id"] == signed["id"]

    assert await gate(world, person) == (False, "CONSENT_WITHDRAWN")
    status = await world.status(person, box.coordinator.headers)
    assert status["withdrawn"] is True
    assert status["record_id"] is None
    assert status["signed_version"] is None

    # Nothing is left to withdraw.
    assert_error(
        await world.client.post("/api/consent/withdraw", json={"reason": "x"}, headers=headers),
        409,
    )
    assert await audit.events() == []

    # Consent given again after a withdrawal counts again.
    assert (await world.sign(person, form, headers)).status_code == 201
    assert await consent_gate(world.session, await world.load(person)) == ALLOWED
    assert (await world.status(person, headers))["withdrawn"] is False


async def test_reconsent_required_by_a_new_version(world: ConsentWorld, box: StudyBox) -> None:
    v1 = await world.published_form(box)
    person = await world.participant(box)
    headers = await world.participant_headers(person)
    await world.sign(person, v1, headers)

    v2 = await world.published_form(box, reconsent_required=True, title="Consent (amended)")
    assert await gate(world, person) == (False, "RECONSENT_REQUIRED")
    status = await world.status(person, headers)
    assert status["needs_reconsent"] is True
    assert status["signed_version"] == 1
    assert status["current_form"]["id"] == v2["id"]

    # The retired version can no longer be signed; the new one can.
    assert_error(await world.sign(person, v1, headers), 409)
    signed = await world.sign(person, v2, headers)
    assert signed.status_code == 201
    assert await consent_gate(world.session, await world.load(person)) == ALLOWED
    status = await world.status(person, headers)
    assert (status["needs_reconsent"], status["signed_version"]) == (False, 2)
    assert status["record_id"] == signed.json()["id"]


async def test_new_version_without_reconsent_keeps_the_signature_sufficient(
    world: ConsentWorld, box: StudyBox
) -> None:
    v1 = await world.published_form(box)
    person = await world.participant(box)
    await world.sign(person, v1, box.coordinator.headers)
    await world.published_form(box, reconsent_required=False, content="Typo fixed.")
    assert await consent_gate(world.session, await world.load(person)) == ALLOWED
    status = await world.status(person, box.coordinator.headers)
    assert (status["needs_reconsent"], status["signed_version"]) == (False, 1)
    assert status["current_form"]["version"] == 2


async def test_an_intermediate_reconsent_version_still_requires_reconsent(
    world: ConsentWorld, box: StudyBox
) -> None:
    v1 = await world.published_form(box)
    person = await world.participant(box)
    await world.sign(person, v1, box.coordinator.headers)
    await world.published_form(box, reconsent_required=True)
    await world.published_form(box, reconsent_required=False)
    assert await gate(world, person) == (False, "RECONSENT_REQUIRED")


async def test_reconsent_in_another_language_does_not_affect_this_one(
    world: ConsentWorld, box: StudyBox
) -> None:
    en = await world.published_form(box, language="en")
    await world.published_form(box, language="fr")
    person = await world.participant(box, language="en")
    await world.sign(person, en, box.coordinator.headers)
    await world.published_form(box, language="fr", reconsent_required=True)
    assert await consent_gate(world.session, await world.load(person)) == ALLOWED


async def test_current_form_falls_back_to_the_first_study_language(
    world: ConsentWorld, box: StudyBox
) -> None:
    en = await world.published_form(box, language="en")
    person = await world.participant(box, language="fr")
    status = await world.status(person, box.coordinator.headers)
    assert status["current_form"]["id"] == en["id"]
    french = await world.published_form(box, language="fr")
    status = await world.status(person, box.coordinator.headers)
    assert status["current_form"]["id"] == french["id"]


async def test_no_published_form_means_consent_cannot_be_given_yet(
    world: ConsentWorld, box: StudyBox
) -> None:
    await world.create_form(box)
    person = await world.participant(box)
    status = await world.status(person, box.coordinator.headers)
    assert (status["required"], status["current_form"]) == (True, None)
    assert await gate(world, person) == (False, "CONSENT_REQUIRED")


async def test_studies_without_builtin_consent_are_not_gated(world: ConsentWorld) -> None:
    for mode in (ConsentMode.NONE, ConsentMode.EXTERNAL):
        box = await world.study(consent_mode=mode)
        person = await world.participant(box)
        assert await consent_gate(world.session, await world.load(person)) == ALLOWED
        status = await world.status(person, box.coordinator.headers)
        assert status["required"] is False
        assert status["needs_reconsent"] is False


async def test_staff_withdraw_for_a_participant(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    await world.sign(person, form, box.coordinator.headers)
    await audit.mark()
    response = await world.client.post(
        "/api/consent/withdraw",
        json={"participant_id": str(person.id), "reason": "Told the coordinator by phone"},
        headers=box.coordinator.headers,
    )
    assert response.status_code == 200, response.text
    event = await audit.only("consent.withdrawn")
    assert event.actor_id == str(box.coordinator.user_id)
    assert await gate(world, person) == (False, "CONSENT_WITHDRAWN")


async def test_withdrawal_needs_a_reason(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = await world.participant_headers(person)
    await world.sign(person, form, headers)
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        assert_error(
            await world.client.post("/api/consent/withdraw", json=body, headers=headers), 422
        )


async def test_study_withdrawal_is_separate_from_consent(
    world: ConsentWorld, box: StudyBox, db_session: AsyncSession
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    await world.sign(person, form, box.coordinator.headers)
    participant = await world.load(person)
    participant.status = ParticipantStatus.WITHDRAWN
    await db_session.commit()
    # Consent itself stands until withdrawn; the session service refuses withdrawn participants.
    assert await consent_gate(world.session, await world.load(person)) == ALLOWED
    response = await world.client.post(
        "/api/consent/withdraw",
        json={"participant_id": str(person.id), "reason": "Left the study"},
        headers=box.coordinator.headers,
    )
    assert response.status_code == 200
    assert await gate(world, person) == (False, "CONSENT_WITHDRAWN")


async def test_status_for_staff_needs_a_participant(world: ConsentWorld, box: StudyBox) -> None:
    assert_error(
        await world.client.get("/api/consent/status", headers=box.coordinator.headers), 422
    )


async def test_records_listing(world: ConsentWorld, box: StudyBox) -> None:
    v1 = await world.published_form(box)
    person = await world.participant(box)
    other = await world.participant(box)
    headers = await world.participant_headers(person)
    first = (await world.sign(person, v1, headers)).json()
    v2 = await world.published_form(box, reconsent_required=True)
    second = (await world.sign(person, v2, headers)).json()
    await world.sign(other, v2, box.coordinator.headers)

    own = await world.client.get("/api/consent/records", headers=headers)
    assert [r["id"] for r in own.json()["data"]] == [first["id"], second["id"]]
    staff = await world.client.get(
        "/api/consent/records",
        params={"participant_id": str(person.id), "order": "desc"},
        headers=box.coordinator.headers,
    )
    assert [r["form_version"] for r in staff.json()["data"]] == [2, 1]
    by_study = await world.client.get(
        "/api/consent/records", params={"study_id": str(box.id)}, headers=box.coordinator.headers
    )
    assert by_study.json()["pagination"]["total"] == 3
    assert_error(
        await world.client.get("/api/consent/records", headers=box.coordinator.headers), 422
    )
