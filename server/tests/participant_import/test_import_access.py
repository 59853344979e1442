"""Who may import into which study, and the site restriction of site-scoped coordinators."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from app.models.participant import Participant
from app.models.study import MemberRole
from app.models.user import UserRole
from tests.participant_import.conftest import World, csv_bytes, error_of, upload

CONTENT = csv_bytes(("participant_id",), [["P001"], ["P002"]])


async def test_read_only_member_gets_403(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    viewer = await world.staff(UserRole.READ_ONLY)
    await world.member(study, viewer, MemberRole.READ_ONLY)
    error = error_of(await upload(client, viewer, study.id, CONTENT), 403, "FORBIDDEN")
    assert error["details"]["required"] == "edit_participants"
    assert await world.participant_count(study) == 0


async def test_study_of_someone_else_is_404(client: httpx.AsyncClient, world: World) -> None:
    mine, theirs = await world.study(), await world.study()
    researcher = await world.researcher_of(mine)
    error_of(await upload(client, researcher, theirs.id, CONTENT), 404, "NOT_FOUND")
    error_of(await upload(client, researcher, uuid.uuid4(), CONTENT), 404, "NOT_FOUND")
    assert await world.participant_count(theirs) == 0


async def test_unknown_study_is_404_even_for_admins(
    client: httpx.AsyncClient, world: World
) -> None:
    admin = await world.staff(UserRole.ADMIN)
    error_of(await upload(client, admin, uuid.uuid4(), CONTENT), 404, "NOT_FOUND")


async def test_admin_imports_without_membership(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    admin = await world.staff(UserRole.ADMIN)
    response = await upload(client, admin, study.id, CONTENT)
    assert response.status_code == 201, response.text
    assert await world.participant_count(study) == 2


async def test_unauthenticated_is_401(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    response = await client.post(
        "/api/participants/import",
        data={"study_id": str(study.id)},
        files={"file": ("p.csv", CONTENT, "text/csv")},
    )
    error_of(response, 401, "UNAUTHORIZED")


async def test_site_scoped_coordinator_imports_only_into_their_site(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study()
    paris = await world.site(study, "PARIS", "Europe/Paris")
    await world.site(study, "LYON", "Europe/Paris")
    coordinator = await world.staff(UserRole.COORDINATOR)
    await world.member(study, coordinator, MemberRole.COORDINATOR, paris)

    mixed = csv_bytes(
        ("participant_id", "site"), [["P001", "PARIS"], ["P002", "LYON"], ["P003", ""]]
    )
    details = error_of(await upload(client, coordinator, study.id, mixed), 422, "VALIDATION_ERROR")[
        "details"
    ]
    assert [row["status"] for row in details["rows"]] == ["valid", "invalid", "valid"]
    assert details["rows"][1]["errors"] == [
        {"field": "site", "message": "You can only enroll participants at your own site"}
    ]
    assert await world.participant_count(study) == 0

    own = csv_bytes(("participant_id", "site"), [["P001", "PARIS"], ["P003", ""]])
    response = await upload(client, coordinator, study.id, own)
    assert response.status_code == 201, response.text
    participants = (
        await world.session.scalars(select(Participant).where(Participant.study_id == study.id))
    ).all()
    # A row without a site goes to the coordinator's site, in that site's time zone.
    assert {(p.participant_code, p.site_id, p.timezone) for p in participants} == {
        ("P001", paris.id, "Europe/Paris"),
        ("P003", paris.id, "Europe/Paris"),
    }


async def test_study_wide_coordinator_may_use_any_site(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study()
    await world.site(study, "PARIS")
    await world.site(study, "LYON")
    coordinator = await world.staff(UserRole.COORDINATOR)
    await world.member(study, coordinator, MemberRole.COORDINATOR)
    content = csv_bytes(("participant_id", "site"), [["P001", "PARIS"], ["P002", "LYON"]])
    assert (await upload(client, coordinator, study.id, content)).status_code == 201
