"""Access-code sign-in: `POST /api/auth/participant`."""

from __future__ import annotations

import httpx

from app.config import Settings
from tests.magic_links.conftest import People

URL = "/api/auth/participant"
CODE = "ABCDE-FGH23"


async def test_right_code_gives_a_participant_token(
    client: httpx.AsyncClient, people: People, settings: Settings
) -> None:
    participant = await people.participant(access_code=CODE)
    response = await client.post(
        URL,
        json={
            "study_code": participant.study_code.lower(),
            "participant_id": participant.code,
            "access_code": "abcde fgh23",  # codes are read aloud and typed loosely
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "participant"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.PARTICIPANT_TOKEN_EXPIRE_HOURS * 3600
    assert body["participant"] == {
        "id": str(participant.id),
        "participant_id": participant.code,
        "study_id": str(participant.study_id),
        "language": "fr",
    }


async def test_wrong_code_is_401(client: httpx.AsyncClient, people: People) -> None:
    participant = await people.participant(access_code=CODE)
    response = await client.post(
        URL,
        json={
            "study_code": participant.study_code,
            "participant_id": participant.code,
            "access_code": "WRONG-CODE2",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_five_wrong_codes_lock_the_participant(
    client: httpx.AsyncClient, people: People
) -> None:
    participant = await people.participant(access_code=CODE)
    body = {"study_code": participant.study_code, "participant_id": participant.code}
    statuses = [
        (await client.post(URL, json={**body, "access_code": f"WRONG-{n:05d}"})).status_code
        for n in range(5)
    ]
    assert statuses == [401, 401, 401, 401, 423]
    locked = await client.post(URL, json={**body, "access_code": CODE})
    assert locked.status_code == 423
    assert locked.headers["retry-after"] == "900"
    assert locked.json()["error"]["code"] == "ACCOUNT_LOCKED"


async def test_missing_fields_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"study_code": "S", "participant_id": "P"})
    assert response.status_code == 422
