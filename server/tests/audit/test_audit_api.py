"""GET /api/audit through HTTP: who reads which events, and its filters."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.study import MemberRole
from app.models.user import UserRole
from tests import factories


async def test_the_participant_filter_takes_a_uuid_or_a_code_within_the_study(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher = await factories.staff(db_session, client, UserRole.RESEARCHER)
    study = await factories.study(db_session)
    await factories.member(db_session, study, researcher, MemberRole.RESEARCHER)
    study_id = study.id
    for code in ("P001", "P002"):
        created = await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": str(study_id), "participant_id": code},
        )
        assert created.status_code == 201, created.text
    listing = await client.get(
        "/api/participants", headers=researcher.headers, params={"study_id": str(study_id)}
    )
    p001 = next(p["id"] for p in listing.json()["data"] if p["participant_id"] == "P001")

    for params in (
        {"study_id": str(study_id), "participant_id": "P001"},
        {"participant_id": p001},
    ):
        response = await client.get("/api/audit", headers=researcher.headers, params=params)
        assert response.status_code == 200, response.text
        events = response.json()["data"]
        assert [e["action"] for e in events] == ["participant.create"]
        assert events[0]["participant_id"] == p001
    for params in (
        {"study_id": str(study_id), "participant_id": "P404"},
        {"participant_id": "P001"},  # a code is read within a study
        {"participant_id": str(uuid.uuid4())},
    ):
        refused = await client.get("/api/audit", headers=researcher.headers, params=params)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"]["errors"][0]["field"] == "participant_id"
