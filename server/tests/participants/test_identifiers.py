"""Sites and participants named in bodies and queries: by UUID or by code, one 422 otherwise
(docs/api-conventions.md, identifiers)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.study import MemberRole
from app.models.user import UserRole
from tests import factories


def assert_unknown(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in error["details"]["errors"]] == [field]


async def test_participant_bodies_name_a_site_by_uuid_or_code(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    lyon = await factories.site(db_session, study, "LYON")
    paris = await factories.site(db_session, study, "PARIS")
    elsewhere = await factories.study(db_session)
    foreign = await factories.site(db_session, elsewhere, "MARSEILLE")
    # The app shares this session: a refused request expires these rows.
    study_id, lyon_id, paris_id, foreign_id = study.id, lyon.id, paris.id, foreign.id

    async def enroll(code: str, site: str) -> httpx.Response:
        return await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": str(study_id), "participant_id": code, "site_id": site},
        )

    for code, site in (("P1", "LYON"), ("P2", "lyon"), ("P3", str(lyon_id))):
        created = await enroll(code, site)
        assert created.status_code == 201, created.text
        assert created.json()["site_id"] == str(lyon_id)
    # No such code, another study's site by code or by UUID: the same 422.
    for site in ("NANTES", "MARSEILLE", str(foreign_id), str(uuid.uuid4())):
        assert_unknown(await enroll("P9", site), "site_id")

    participant_id = (await enroll("P4", "LYON")).json()["id"]
    moved = await client.patch(
        f"/api/participants/{participant_id}",
        headers=researcher.headers,
        json={"site_id": "PARIS"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["site_id"] == str(paris_id)
    assert_unknown(
        await client.patch(
            f"/api/participants/{participant_id}",
            headers=researcher.headers,
            json={"site_id": "MARSEILLE"},
        ),
        "site_id",
    )

    # Paths keep UUIDs: a participant code in the path leads nowhere.
    by_code_in_path = await client.get("/api/participants/P1", headers=researcher.headers)
    assert by_code_in_path.status_code == 404


async def test_list_filters_name_a_site_by_uuid_or_by_code_within_the_study(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    lyon = await factories.site(db_session, study, "LYON")
    paris = await factories.site(db_session, study, "PARIS")
    await factories.participant(db_session, study, "L1", lyon)
    await factories.participant(db_session, study, "P1", paris)
    hidden_study = await factories.study(db_session)
    hidden = await factories.site(db_session, hidden_study, "HIDDEN")
    study_id, lyon_id, hidden_id = study.id, lyon.id, hidden.id

    async def codes(params: dict[str, str]) -> list[str]:
        response = await client.get("/api/participants", headers=researcher.headers, params=params)
        assert response.status_code == 200, response.text
        return [p["participant_id"] for p in response.json()["data"]]

    assert await codes({"study_id": str(study_id), "site_id": "LYON"}) == ["L1"]
    assert await codes({"site_id": str(lyon_id)}) == ["L1"]
    for params in (
        {"site_id": "LYON"},  # a code needs its study
        {"study_id": str(study_id), "site_id": "NANTES"},
        {"site_id": str(hidden_id)},  # a site of a study the caller cannot see
        {"site_id": str(uuid.uuid4())},
    ):
        assert_unknown(
            await client.get("/api/participants", headers=researcher.headers, params=params),
            "site_id",
        )


async def test_memberships_and_imports_name_a_site_by_uuid_or_code(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    coordinator = await factories.staff(db_session, client, UserRole.COORDINATOR)
    study = await factories.study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    lyon = await factories.site(db_session, study, "LYON")
    paris = await factories.site(db_session, study, "PARIS")
    study_id, lyon_id, paris_id = study.id, lyon.id, paris.id
    base = f"/api/studies/{study_id}/members"

    assert_unknown(
        await client.post(
            base,
            headers=researcher.headers,
            json={"user_id": str(coordinator.user_id), "role": "coordinator", "site_id": "MARS"},
        ),
        "site_id",
    )
    added = await client.post(
        base,
        headers=researcher.headers,
        json={"user_id": str(coordinator.user_id), "role": "coordinator", "site_id": "LYON"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["site_id"] == str(lyon_id)
    moved = await client.patch(
        f"{base}/{added.json()['id']}", headers=researcher.headers, json={"site_id": "paris"}
    )
    assert moved.json()["site_id"] == str(paris_id)

    content = f"participant_id,site\nI1,{lyon_id}\nI2,PARIS\n".encode()
    imported = await client.post(
        "/api/participants/import",
        headers=researcher.headers,
        data={"study_id": str(study_id)},
        files={"file": ("participants.csv", content, "text/csv")},
    )
    assert imported.status_code == 201, imported.text
    listing = await client.get(
        "/api/participants",
        headers=researcher.headers,
        params={"study_id": str(study_id), "sort": "participant_id"},
    )
    sites = {p["participant_id"]: p["site_id"] for p in listing.json()["data"]}
    assert sites == {"I1": str(lyon_id), "I2": str(paris_id)}
