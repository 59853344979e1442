"""GET /api/audit through HTTP: who reads which events, and its filters."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditChainState
from app.models.study import MemberRole
from app.models.user import UserRole
from tests import factories


async def test_the_participant_filter_takes_a_uuid_or_a_code_within_the_study(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
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


async def test_the_audit_capability_decides_who_reads_a_studys_trail(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session)
    other_study = await factories.study(db_session)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    outsider = await factories.study_member(db_session, client, other_study, MemberRole.RESEARCHER)
    lesser: dict[MemberRole, factories.Staff] = {}
    for role in (MemberRole.COORDINATOR, MemberRole.READ_ONLY):
        lesser[role] = await factories.study_member(db_session, client, study, role)
    study_id, other_study_id = study.id, other_study.id
    for study_ref in (study_id, other_study_id):
        created = await client.post(
            f"/api/studies/{study_ref}/sites",
            headers=(researcher if study_ref == study_id else outsider).headers,
            json={"code": "SITE", "name": "Site"},
        )
        assert created.status_code == 201, created.text

    own = await client.get("/api/audit", headers=researcher.headers)
    assert own.status_code == 200, own.text
    assert {e["study_id"] for e in own.json()["data"]} == {str(study_id)}
    assert "site.create" in {e["action"] for e in own.json()["data"]}
    hidden = await client.get(
        "/api/audit", headers=researcher.headers, params={"study_id": str(other_study_id)}
    )
    assert hidden.status_code == 404

    for role, member in lesser.items():
        for params in ({"study_id": str(study_id)}, {}):
            refused = await client.get("/api/audit", headers=member.headers, params=params)
            assert refused.status_code == 403, (role, params, refused.text)
            details = refused.json()["error"]["details"]
            assert details["required"] == "audit", details
            if params:
                assert details["study_role"] == role.value

    # The whole chain runs through every study and account: only administrators verify it.
    refused_verify = await client.get("/api/audit/verify", headers=researcher.headers)
    assert refused_verify.status_code == 403
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    verified = await client.get("/api/audit/verify", headers=admin.headers)
    assert verified.status_code == 200 and verified.json()["valid"] is True


async def test_a_site_scoped_reader_sees_the_events_of_their_sites_participants(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    study = await factories.study(db_session)
    north = await factories.site(db_session, study, "NORTH")
    await factories.site(db_session, study, "SOUTH")
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    northern = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER, north)
    study_id = study.id
    for code, site in (("N1", "NORTH"), ("S1", "SOUTH")):
        created = await client.post(
            "/api/participants",
            headers=researcher.headers,
            json={"study_id": str(study_id), "participant_id": code, "site_id": site},
        )
        assert created.status_code == 201, created.text
    renamed = await client.patch(
        f"/api/studies/{study_id}", headers=researcher.headers, json={"name": "Renamed"}
    )
    assert renamed.status_code == 200

    def about(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {
            (e["after"] or {}).get("participant_id") or e["action"] for e in response.json()["data"]
        }

    everything = await client.get(
        "/api/audit", headers=researcher.headers, params={"study_id": str(study_id)}
    )
    assert {"N1", "S1", "study.update"} <= about(everything)
    for params in ({"study_id": str(study_id)}, {}):
        scoped = await client.get("/api/audit", headers=northern.headers, params=params)
        assert {"N1", "study.update"} <= about(scoped)
        assert "S1" not in about(scoped)
    other_site = await client.get(
        "/api/audit",
        headers=northern.headers,
        params={"study_id": str(study_id), "participant_id": "S1"},
    )
    assert other_site.status_code == 422


async def test_events_show_their_chain_link_once_the_chainer_reached_them(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    params = {"action": "user.create", "actor_id": "system"}

    async def created_event() -> dict[str, object]:
        listing = await client.get("/api/audit", headers=admin.headers, params=params)
        assert listing.status_code == 200, listing.text
        [event] = [e for e in listing.json()["data"] if e["entity_id"] == str(admin.user_id)]
        return dict(event)

    unchained = await created_event()
    assert (unchained["prev_hash"], unchained["hash"], unchained["key_id"]) == (None, None, None)

    verified = await client.get("/api/audit/verify", headers=admin.headers)
    assert verified.status_code == 200, verified.text
    report = verified.json()
    assert report["valid"] is True, report
    assert report["events_pending"] == 0
    assert report["last_sequence"] >= unchained["sequence"]
    assert set(report) >= {"gaps_checked", "checkpoints_checked", "last_hash"}

    chained = await created_event()
    assert chained["key_id"] == "dev"
    assert isinstance(chained["hash"], str) and len(chained["hash"]) == 64
    assert isinstance(chained["prev_hash"], str) and chained["prev_hash"] != chained["hash"]


async def test_a_damaged_chain_state_is_a_clear_report_never_a_failed_write(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    admin = await factories.staff(db_session, client, UserRole.ADMIN)
    await db_session.execute(delete(AuditChainState).execution_options(synchronize_session=False))
    await db_session.commit()

    # Audited writes go on: they never touch the chain state.
    created = await client.post(
        "/api/studies", headers=admin.headers, json={"code": "DAMAGED-1", "name": "Damaged"}
    )
    assert created.status_code == 201, created.text

    verified = await client.get("/api/audit/verify", headers=admin.headers)
    assert verified.status_code == 200, verified.text
    report = verified.json()
    assert report["valid"] is False
    assert report["problem"] == (
        "the audit chain state row is missing: the chain cannot be verified"
    )
