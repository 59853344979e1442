from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.audit import AuditEvent
from app.models.participant import Participant, ParticipantStatus
from app.models.study import MemberRole
from app.models.user import UserRole
from tests import factories


async def count_events(db_session: AsyncSession, action: str) -> int:
    return int(
        await db_session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )
        or 0
    )


async def setup_study(client: httpx.AsyncClient, db_session: AsyncSession):  # type: ignore[no-untyped-def]
    study = await factories.study(db_session, languages=["en", "fr"])
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    paris = await factories.site(db_session, study, "PARIS", "Europe/Paris")
    return researcher, study, paris


async def test_enroll_defaults_and_encryption_at_rest(
    client: httpx.AsyncClient, db_session: AsyncSession, is_postgres: bool
) -> None:
    researcher, study, paris = await setup_study(client, db_session)
    response = await client.post(
        "/api/participants",
        headers=researcher.headers,
        json={
            "study_id": str(study.id),
            "participant_id": "P001",
            "site_id": str(paris.id),
            "email": "Patient.One@Example.org",
            "phone": "+33 6 12 34 56 78",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["timezone"] == "Europe/Paris"  # the site's zone
    assert body["language"] == "en"  # the study's first language
    assert body["status"] == "enrolled" and body["enrollment_date"] is not None
    assert body["email"] == "Patient.One@example.org"
    participant_key = uuid.UUID(body["id"])
    raw = (
        await db_session.execute(
            text(
                "SELECT email_encrypted, phone_encrypted, email_index"
                " FROM participants WHERE id = :id"
            ),
            # SQLite stores UUIDs as 32 hex characters.
            {"id": participant_key if is_postgres else participant_key.hex},
        )
    ).one()
    assert "Patient" not in raw[0] and "example" not in raw[0].lower()
    assert "12 34" not in raw[1]
    assert len(raw[2]) == 64
    event = await db_session.scalar(
        select(AuditEvent).where(AuditEvent.action == "participant.create")
    )
    assert event is not None
    assert "example" not in str(event.after).lower()


async def test_key_rotation_keeps_old_values_readable(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    old = FieldEncryptor(["ZGV2LW9ubHktZmVybmV0LWtleS1jaGFuZ2UtbWUtMDA="])
    ciphertext = old.encrypt("someone@example.org")
    rotated = FieldEncryptor(
        [
            "x2Yc0Yl6Wm2-5VhT4A6mX3cY2p8bS9dQ1rF7gH0jK4M=",
            "ZGV2LW9ubHktZmVybmV0LWtleS1jaGFuZ2UtbWUtMDA=",
        ]
    )
    assert rotated.decrypt(ciphertext) == "someone@example.org"
    renewed = rotated.rotate(ciphertext)
    only_new = FieldEncryptor(["x2Yc0Yl6Wm2-5VhT4A6mX3cY2p8bS9dQ1rF7gH0jK4M="])
    assert only_new.decrypt(renewed) == "someone@example.org"


async def test_validation_rules(client: httpx.AsyncClient, db_session: AsyncSession) -> None:
    researcher, study, _paris = await setup_study(client, db_session)
    other_study = await factories.study(db_session)
    foreign_site = await factories.site(db_session, other_study, "X")
    base = {"study_id": str(study.id)}
    cases = [
        ({"participant_id": "P1", "language": "de"}, "language"),
        ({"participant_id": "P1", "timezone": "Nowhere/Land"}, "timezone"),
        ({"participant_id": "P1", "site_id": str(foreign_site.id)}, "site_id"),
        ({"participant_id": "bad code!"}, "body.participant_id"),
        ({"participant_id": "P1", "email": "not-an-email"}, "body.email"),
        ({"participant_id": "P1", "status": "withdrawn"}, "status"),
    ]
    for payload, field in cases:
        response = await client.post(
            "/api/participants", headers=researcher.headers, json={**base, **payload}
        )
        assert response.status_code == 422, (payload, response.text)
        fields = [e["field"] for e in response.json()["error"]["details"]["errors"]]
        assert field in fields, (payload, fields)
    ok = await client.post(
        "/api/participants", headers=researcher.headers, json={**base, "participant_id": "P1"}
    )
    assert ok.status_code == 201
    duplicate = await client.post(
        "/api/participants", headers=researcher.headers, json={**base, "participant_id": "P1"}
    )
    assert duplicate.status_code == 409


async def test_list_filters_pagination_and_sorting(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher, study, paris = await setup_study(client, db_session)
    for index in range(25):
        await factories.participant(
            db_session, study, f"P{index:03d}", paris if index % 2 else None
        )
    listing = await client.get(
        f"/api/participants?study_id={study.id}&per_page=10&page=2&sort=participant_id&order=desc",
        headers=researcher.headers,
    )
    body = listing.json()
    assert body["pagination"] == {
        "page": 2,
        "per_page": 10,
        "total": 25,
        "total_pages": 3,
        "has_next": True,
        "has_prev": True,
    }
    assert [p["participant_id"] for p in body["data"]][:2] == ["P014", "P013"]
    by_site = await client.get(
        f"/api/participants?study_id={study.id}&site_id={paris.id}&per_page=100",
        headers=researcher.headers,
    )
    assert by_site.json()["pagination"]["total"] == 12
    query = await client.get(
        f"/api/participants?study_id={study.id}&q=P02", headers=researcher.headers
    )
    assert query.json()["pagination"]["total"] == 5
    bad_sort = await client.get("/api/participants?sort=email", headers=researcher.headers)
    assert bad_sort.status_code == 422
    too_many = await client.get("/api/participants?per_page=101", headers=researcher.headers)
    assert too_many.status_code == 422


async def test_site_scoped_coordinator_and_masking(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    researcher, study, paris = await setup_study(client, db_session)
    lyon = await factories.site(db_session, study, "LYON")
    viewer = await factories.staff(db_session, client, UserRole.READ_ONLY)
    coordinator = await factories.study_member(
        db_session, client, study, MemberRole.COORDINATOR, paris
    )
    await factories.member(db_session, study, viewer, MemberRole.READ_ONLY)
    # The app shares this session: a refused request rolls back and expires these objects.
    study_id, paris_id, lyon_id = study.id, paris.id, lyon.id
    created = {}
    for code, site_id in (("PA1", paris_id), ("LY1", lyon_id)):
        response = await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={
                "study_id": str(study_id),
                "participant_id": code,
                "site_id": str(site_id),
                "email": f"{code.lower()}@example.org",
                "phone": "+44 20 7946 0958",
            },
        )
        created[code] = response.json()["id"]
    listing = await client.get(
        f"/api/participants?study_id={study_id}", headers=coordinator.headers
    )
    assert [p["participant_id"] for p in listing.json()["data"]] == ["PA1"]
    assert (
        await client.get(f"/api/participants/{created['LY1']}", headers=coordinator.headers)
    ).status_code == 404
    seen = await client.get(f"/api/participants/{created['PA1']}", headers=coordinator.headers)
    assert seen.json()["email"] == "pa1@example.org"
    enrolled_elsewhere = await client.post(
        "/api/participants",
        headers=coordinator.headers,
        json={"study_id": str(study_id), "participant_id": "X1", "site_id": str(lyon_id)},
    )
    assert enrolled_elsewhere.status_code == 422
    defaulted = await client.post(
        "/api/participants",
        headers=coordinator.headers,
        json={"study_id": str(study_id), "participant_id": "X2"},
    )
    assert defaulted.status_code == 201 and defaulted.json()["site_id"] == str(paris_id)
    masked = await client.get(f"/api/participants/{created['LY1']}", headers=viewer.headers)
    assert masked.json()["email"] == "l***@example.org"
    assert masked.json()["phone"] == "***58"
    refused = await client.patch(
        f"/api/participants/{created['LY1']}", headers=viewer.headers, json={"language": "fr"}
    )
    assert refused.status_code == 403


async def test_update_and_audit(client: httpx.AsyncClient, db_session: AsyncSession) -> None:
    researcher, study, _paris = await setup_study(client, db_session)
    participant = await factories.participant(db_session, study, "P1")
    response = await client.patch(
        f"/api/participants/{participant.id}",
        headers=researcher.headers,
        json={"language": "fr", "email": "new@example.org", "reason": "moved"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["language"] == "fr"
    assert response.json()["email"] == "new@example.org"
    event = await db_session.scalar(
        select(AuditEvent).where(AuditEvent.action == "participant.update")
    )
    assert event is not None and event.reason == "moved"
    assert event.before is not None and event.before["language"] == "en"
    assert event.after is not None and event.after["contact_details_changed"] is True
    assert "new@example.org" not in str(event.after)


async def test_withdrawal_scopes(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    researcher, study, _paris = await setup_study(client, db_session)
    study_id, study_code = study.id, study.code
    keep = (
        await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": str(study_id), "participant_id": "K1", "email": "k@example.org"},
        )
    ).json()["id"]
    erase = (
        await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": str(study_id), "participant_id": "E1", "email": "e@example.org"},
        )
    ).json()["id"]
    code = await client.post(f"/api/participants/{erase}/access-code", headers=researcher.headers)
    assert code.status_code == 201
    stopped = await client.post(
        f"/api/participants/{keep}/withdraw",
        headers=researcher.headers,
        json={"reason": "moved away", "scope": "stop_collection"},
    )
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "withdrawn" and stopped.json()["email"] == "k@example.org"
    again = await client.post(
        f"/api/participants/{keep}/withdraw", headers=researcher.headers, json={"reason": "x"}
    )
    assert again.status_code == 409
    assert (
        await client.patch(
            f"/api/participants/{keep}", headers=researcher.headers, json={"language": "fr"}
        )
    ).status_code == 409
    erased = await client.post(
        f"/api/participants/{erase}/withdraw",
        headers=researcher.headers,
        json={"reason": "asked to delete", "scope": "delete_data"},
    )
    assert erased.status_code == 200
    assert erased.json()["email"] is None and erased.json()["has_access_code"] is False
    row = await db_session.get(Participant, uuid.UUID(erase))
    assert row is not None
    await db_session.refresh(row)
    assert row.email_encrypted is None and row.email_index is None and row.access_code_hash is None
    event = await db_session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "participant.withdrawn")
        .where(AuditEvent.entity_id == erase)
    )
    assert event is not None and event.reason == "asked to delete"
    assert event.after is not None
    assert event.after["erased"] == {"email": True, "phone": False, "sessions": 0, "trials": 0}
    # An erased participant can no longer sign in with the old code.
    login = await client.post(
        "/api/auth/participant",
        json={
            "study_code": study_code,
            "participant_id": "E1",
            "access_code": code.json()["access_code"],
        },
    )
    assert login.status_code == 401


async def test_access_code_shown_once_and_replaced(
    client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings
) -> None:
    researcher, study, _paris = await setup_study(client, db_session)
    participant = await factories.participant(db_session, study, "P9")
    first = await client.post(
        f"/api/participants/{participant.id}/access-code", headers=researcher.headers
    )
    assert first.status_code == 201
    code = first.json()["access_code"]
    assert len(code.replace("-", "")) == 10
    await db_session.refresh(participant)
    assert participant.access_code_hash is not None and code not in participant.access_code_hash
    second = await client.post(
        f"/api/participants/{participant.id}/access-code", headers=researcher.headers
    )
    assert second.json()["access_code"] != code
    assert await count_events(db_session, "participant.access_code_issued") == 2
    detail = await client.get(f"/api/participants/{participant.id}", headers=researcher.headers)
    assert "access_code" not in detail.json() and detail.json()["has_access_code"] is True


async def test_list_of_one_study_is_404_when_the_caller_cannot_see_it(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    researcher, study, paris = await setup_study(client, db_session)
    other = await factories.study(db_session)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    await factories.participant(db_session, study, "P001", paris)
    study_id, paris_id, other_id, missing = study.id, paris.id, other.id, uuid.uuid4()
    # A member sees their studies only; another study is "not found", like a missing one.
    for study_ref in (other_id, missing):
        refused = await client.get(
            f"/api/participants?study_id={study_ref}", headers=researcher.headers
        )
        assert refused.status_code == 404, refused.text
    # An administrator sees every study, an empty one as an empty page ...
    empty = await client.get(f"/api/participants?study_id={other_id}", headers=admin.headers)
    assert empty.status_code == 200, empty.text
    assert empty.json()["data"] == [] and empty.json()["pagination"]["total"] == 0
    past_end = await client.get(
        f"/api/participants?study_id={study_id}&page=3", headers=admin.headers
    )
    assert past_end.json()["data"] == [] and past_end.json()["pagination"]["total"] == 1
    # ... and a missing one as 404, before a site or a sort it would otherwise refuse.
    for query in ("", f"&site_id={paris_id}", "&site_id=PARIS", "&sort=email"):
        missing_study = await client.get(
            f"/api/participants?study_id={missing}{query}", headers=admin.headers
        )
        assert missing_study.status_code == 404, (query, missing_study.text)
    bad_sort = await client.get(
        f"/api/participants?study_id={study_id}&sort=email", headers=admin.headers
    )
    assert bad_sort.status_code == 422


async def test_list_of_every_study_filters_the_same_for_administrators_and_members(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    """Without `study_id`: an administrator's list (one statement built once per shape) and a
    member's (narrowed to their studies and site per request) take the same filters."""
    first = await factories.study(db_session)
    second = await factories.study(db_session)
    paris = await factories.site(db_session, first, "PARIS")
    for index in range(6):
        status = ParticipantStatus.WITHDRAWN if index % 3 == 0 else ParticipantStatus.ENROLLED
        await factories.participant(
            db_session, first, f"A{index}", paris if index % 2 else None, status=status
        )
        await factories.participant(db_session, second, f"B{index}", status=status)
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    coordinator = await factories.study_member(
        db_session, client, first, MemberRole.COORDINATOR, paris
    )
    outsider = await factories.staff(db_session, client, UserRole.RESEARCHER)
    paris_id = paris.id

    async def codes(caller: factories.Staff, query: str) -> list[str]:
        response = await client.get(f"/api/participants?{query}", headers=caller.headers)
        assert response.status_code == 200, response.text
        return [row["participant_id"] for row in response.json()["data"]]

    assert await codes(admin, "per_page=100") == [f"A{i}" for i in range(6)] + [
        f"B{i}" for i in range(6)
    ]
    assert await codes(admin, "status=withdrawn&order=desc") == ["B3", "B0", "A3", "A0"]
    assert await codes(admin, f"site_id={paris_id}") == ["A1", "A3", "A5"]
    assert await codes(admin, "q=b&sort=participant_id") == [f"B{i}" for i in range(6)]
    assert await codes(admin, "q=5&status=enrolled") == ["A5", "B5"]
    assert await codes(coordinator, "") == ["A1", "A3", "A5"]
    assert await codes(coordinator, "status=enrolled&order=desc") == ["A5", "A1"]
    assert await codes(coordinator, "q=a3") == ["A3"]
    assert await codes(outsider, "status=enrolled") == []
    page = await client.get("/api/participants?per_page=5&page=3", headers=admin.headers)
    assert page.json()["pagination"]["total"] == 12
    assert [row["participant_id"] for row in page.json()["data"]] == ["B4", "B5"]
