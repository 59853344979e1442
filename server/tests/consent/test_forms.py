"""Consent forms: versions per study and language, drafts, immutability, publication."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from app.models.study import MemberRole
from tests.consent.conftest import QUESTIONS, ConsentAudit, ConsentWorld, StudyBox, assert_error


def independent_hash(form: dict[str, Any]) -> str:
    """The documented recipe (docs/consent.md), recomputed from the API's own representation."""
    payload = {
        "title": form["title"],
        "content": form["content"],
        "questions": [
            {"id": q["id"], "text": q["text"], "type": q["type"], "required": q["required"]}
            for q in form["questions"]
        ],
        "requires_signature": form["requires_signature"],
        "language": form["language"],
        "version": form["version"],
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def test_versions_are_numbered_per_study_and_language(
    world: ConsentWorld, box: StudyBox
) -> None:
    en1 = await world.create_form(box, language="en")
    en2 = await world.create_form(box, language="en", title="Consent, revised")
    fr1 = await world.create_form(box, language="fr", title="Consentement")
    other = await world.study()
    other_en1 = await world.create_form(other, language="en")

    assert (en1["version"], en2["version"], fr1["version"]) == (1, 2, 1)
    assert other_en1["version"] == 1
    for form in (en1, en2, fr1):
        assert form["status"] == "draft"
        assert form["content_hash"] is None
        assert form["published_at"] is None
        assert form["created_by"] == str(box.researcher.user_id)
    assert en1["questions"] == QUESTIONS

    # Deleting the newest draft frees its number; published versions keep theirs.
    await world.publish(box, en1)
    deleted = await world.client.delete(
        f"/api/consent/forms/{en2['id']}", headers=box.researcher.headers
    )
    assert deleted.status_code == 204
    assert (await world.create_form(box, language="en"))["version"] == 2


async def test_language_must_be_one_of_the_study_languages(
    world: ConsentWorld, box: StudyBox
) -> None:
    details = assert_error(
        await world.client.post(
            "/api/consent/forms",
            json={
                "study_id": str(box.id),
                "language": "de",
                "title": "Einwilligung",
                "content": "Text",
            },
            headers=box.researcher.headers,
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert details["supported_languages"] == ["en", "fr"]


@pytest.mark.parametrize(
    "questions",
    [
        [
            {"id": "a", "text": "One", "type": "yes_no", "required": True},
            {"id": "a", "text": "Two", "type": "text", "required": False},
        ],
        [{"id": "a", "text": "One", "type": "signature", "required": True}],
        [{"id": "", "text": "One", "type": "text", "required": True}],
    ],
    ids=["duplicate-ids", "unknown-type", "empty-id"],
)
async def test_questions_are_validated(
    world: ConsentWorld, box: StudyBox, questions: list[dict[str, Any]]
) -> None:
    await world.create_form(box, questions=questions, expect=422)


async def test_only_configuring_roles_manage_forms(world: ConsentWorld, box: StudyBox) -> None:
    body = {"study_id": str(box.id), "language": "en", "title": "T", "content": "C"}
    assert_error(
        await world.client.post("/api/consent/forms", json=body, headers=box.coordinator.headers),
        403,
        "FORBIDDEN",
    )
    outsider = await world.study()
    assert_error(
        await world.client.post(
            "/api/consent/forms", json=body, headers=outsider.researcher.headers
        ),
        404,
        "NOT_FOUND",
    )
    draft = await world.create_form(box)
    read_only = await world.member(box.id, MemberRole.READ_ONLY)
    for headers in (box.coordinator.headers, read_only.headers):
        assert_error(
            await world.client.patch(
                f"/api/consent/forms/{draft['id']}", json={"title": "X"}, headers=headers
            ),
            403,
        )
        assert_error(
            await world.client.post(f"/api/consent/forms/{draft['id']}/publish", headers=headers),
            403,
        )
        assert_error(
            await world.client.delete(f"/api/consent/forms/{draft['id']}", headers=headers), 403
        )
        # Reading is open to every member.
        response = await world.client.get(f"/api/consent/forms/{draft['id']}", headers=headers)
        assert response.status_code == 200
    # Staff of another study do not see the form at all.
    for method in ("GET", "PATCH", "DELETE"):
        response = await world.client.request(
            method,
            f"/api/consent/forms/{draft['id']}",
            headers=outsider.researcher.headers,
            json={"title": "X"} if method == "PATCH" else None,
        )
        assert_error(response, 404, "NOT_FOUND")


async def test_draft_is_editable(world: ConsentWorld, box: StudyBox, audit: ConsentAudit) -> None:
    draft = await world.create_form(box)
    await audit.mark()
    response = await world.client.patch(
        f"/api/consent/forms/{draft['id']}",
        json={
            "title": "Consent (clarified)",
            "questions": QUESTIONS[:1],
            "reconsent_required": True,
            "reason": "Ethics committee wording",
        },
        headers=box.researcher.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["title"] == "Consent (clarified)"
    assert updated["questions"] == QUESTIONS[:1]
    assert updated["reconsent_required"] is True
    assert updated["version"] == draft["version"]
    event = await audit.only("consent.form_updated")
    assert event.reason == "Ethics committee wording"
    assert event.before is not None and event.after is not None
    assert event.before["title"] == "Consent to take part"
    assert event.after["title"] == "Consent (clarified)"

    assert_error(
        await world.client.patch(
            f"/api/consent/forms/{draft['id']}",
            json={"title": None},
            headers=box.researcher.headers,
        ),
        422,
    )


async def test_published_form_is_immutable_and_hashed(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    draft = await world.create_form(box, content="Café & <tea> — ünïcode")
    await audit.mark()
    published = await world.publish(box, draft)
    await audit.only("consent.form_published")

    assert published["status"] == "published"
    assert published["published_at"] is not None
    assert published["content_hash"] == independent_hash(published)
    assert len(published["content_hash"]) == 64

    url = f"/api/consent/forms/{draft['id']}"
    headers = box.researcher.headers
    details = assert_error(
        await world.client.patch(url, json={"title": "Changed"}, headers=headers), 409, "CONFLICT"
    )
    assert details["status"] == "published"
    assert_error(await world.client.delete(url, headers=headers), 409, "CONFLICT")
    assert_error(await world.client.post(f"{url}/publish", headers=headers), 409, "CONFLICT")
    assert await audit.events() == []

    again = (await world.client.get(url, headers=headers)).json()
    assert again == published
    assert again["content_hash"] == independent_hash(again)


async def test_hash_covers_the_version(world: ConsentWorld, box: StudyBox) -> None:
    v1 = await world.published_form(box)
    v2 = await world.published_form(box)
    assert v1["content"] == v2["content"]
    assert v1["content_hash"] != v2["content_hash"]
    assert v2["content_hash"] == independent_hash(v2)


async def test_publishing_retires_the_previous_version_of_that_language(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    en1 = await world.published_form(box, language="en")
    fr1 = await world.published_form(box, language="fr")
    en2 = await world.create_form(box, language="en")
    await audit.mark()
    await world.client.post(
        f"/api/consent/forms/{en2['id']}/publish",
        json={"reason": "Amendment 3"},
        headers=box.researcher.headers,
    )
    event = await audit.only("consent.form_published")
    assert event.reason == "Amendment 3"
    assert event.before is not None and event.after is not None
    assert event.before["status"] == "draft"
    assert event.before["previous_published"]["form_id"] == en1["id"]
    assert event.after["retired"]["version"] == 1
    assert event.after["content_hash"] is not None

    async def state(form: dict[str, Any]) -> str:
        response = await world.client.get(
            f"/api/consent/forms/{form['id']}", headers=box.researcher.headers
        )
        status: str = response.json()["status"]
        return status

    assert await state(en1) == "retired"
    assert await state(en2) == "published"
    assert await state(fr1) == "published"


async def test_an_older_draft_cannot_replace_a_newer_published_version(
    world: ConsentWorld, box: StudyBox
) -> None:
    v1 = await world.create_form(box)
    await world.published_form(box)  # v2
    details = assert_error(
        await world.client.post(
            f"/api/consent/forms/{v1['id']}/publish", headers=box.researcher.headers
        ),
        409,
    )
    assert details == {"published_version": 2, "version": 1}


async def test_draft_deletion(world: ConsentWorld, box: StudyBox, audit: ConsentAudit) -> None:
    draft = await world.create_form(box)
    await audit.mark()
    response = await world.client.delete(
        f"/api/consent/forms/{draft['id']}",
        params={"reason": "Created by mistake"},
        headers=box.researcher.headers,
    )
    assert response.status_code == 204
    event = await audit.only("consent.form_deleted")
    assert event.reason == "Created by mistake"
    assert event.before is not None and event.before["form_id"] == draft["id"]
    assert_error(
        await world.client.get(f"/api/consent/forms/{draft['id']}", headers=box.researcher.headers),
        404,
    )


async def test_create_writes_one_consent_event(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    await audit.mark()
    form = await world.create_form(box)
    event = await audit.only("consent.form_created")
    assert event.entity_id == form["id"]
    assert event.study_id == box.id
    assert event.actor_id == str(box.researcher.user_id)
    assert event.after is not None and event.after["version"] == 1


async def test_list_forms(world: ConsentWorld, box: StudyBox) -> None:
    en1 = await world.published_form(box, language="en")
    en2 = await world.create_form(box, language="en")
    fr1 = await world.create_form(box, language="fr")
    other = await world.study()
    await world.create_form(other)

    async def ids(headers: dict[str, str], **params: Any) -> list[str]:
        response = await world.client.get("/api/consent/forms", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "pagination"}
        return [form["id"] for form in body["data"]]

    headers = box.coordinator.headers
    assert set(await ids(headers, study_id=str(box.id))) == {en1["id"], en2["id"], fr1["id"]}
    assert set(await ids(headers)) == {en1["id"], en2["id"], fr1["id"]}
    assert await ids(headers, study_id=str(box.id), language="en", sort="version") == [
        en1["id"],
        en2["id"],
    ]
    assert await ids(headers, study_id=str(box.id), status="published") == [en1["id"]]
    assert await ids(headers, study_id=str(box.id), language="fr", status="draft") == [fr1["id"]]

    page = (
        await world.client.get(
            "/api/consent/forms",
            params={"study_id": str(box.id), "per_page": 2, "sort": "version", "order": "desc"},
            headers=headers,
        )
    ).json()
    assert page["pagination"]["total"] == 3
    assert page["pagination"]["has_next"] is True
    assert len(page["data"]) == 2

    assert_error(
        await world.client.get(
            "/api/consent/forms",
            params={"study_id": str(box.id)},
            headers=other.researcher.headers,
        ),
        404,
    )


async def test_participants_read_published_forms_of_their_study_only(
    world: ConsentWorld, box: StudyBox
) -> None:
    published = await world.published_form(box)
    draft = await world.create_form(box)
    participant = await world.participant(box)
    headers = await world.participant_headers(participant)

    response = await world.client.get(f"/api/consent/forms/{published['id']}", headers=headers)
    assert response.status_code == 200
    assert_error(await world.client.get(f"/api/consent/forms/{draft['id']}", headers=headers), 404)
    # Staff-only routes refuse a valid participant token with 403.
    assert_error(await world.client.get("/api/consent/forms", headers=headers), 403, "FORBIDDEN")


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/consent/status"), 401, "UNAUTHORIZED")
    assert_error(await client.get("/api/consent/forms"), 401, "UNAUTHORIZED")


async def test_text_the_database_cannot_store_is_refused(
    world: ConsentWorld, box: StudyBox
) -> None:
    await world.create_form(box, title="Consent\x00", expect=422)
    await world.create_form(box, content="Text\x00", expect=422)
    await world.create_form(box, language="e\x00", expect=422)
    response = await world.client.get(
        "/api/consent/forms", params={"language": "en\x00"}, headers=box.researcher.headers
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    draft = await world.create_form(box)
    response = await world.client.delete(
        f"/api/consent/forms/{draft['id']}",
        params={"reason": "oops\x00"},
        headers=box.researcher.headers,
    )
    assert_error(response, 422, "VALIDATION_ERROR")
