"""Signing: who may sign for whom, what a signature must carry, what a record stores."""

from __future__ import annotations

import base64
import os
import struct
import uuid
import zlib
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.consent import ConsentRecord
from app.models.participant import ParticipantActor, ParticipantStatus
from app.models.study import ConsentMode, MemberRole
from app.services.consent.signatures import PNG_MAGIC, SIGNATURE_MAX_BYTES, SIGNATURE_MAX_SIDE
from tests.consent.conftest import (
    ANSWERS,
    ConsentAudit,
    ConsentWorld,
    StudyBox,
    assert_error,
    flat,
    pdf_text,
)
from tests.factories import SIGNATURE, png_bytes, png_data_uri


async def test_participant_signs_their_own_consent(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit, db_session: AsyncSession
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = {**await world.participant_headers(person), "User-Agent": "MetricisClient/2.1"}
    await audit.mark()

    body = world.sign_body(person, form, answers={**ANSWERS, "comments": "  Happy to help  "})
    del body["participant_id"]  # a participant token signs for itself
    response = await world.client.post("/api/consent/sign", json=body, headers=headers)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["participant_id"] == str(person.id)
    assert record["form_id"] == form["id"]
    assert record["form_version"] == 1
    assert record["content_hash"] == form["content_hash"]
    assert record["signer_role"] == "participant"
    assert record["answers"] == {"agree": True, "contact": "no", "comments": "Happy to help"}
    assert record["signature_image_type"] == "png"
    assert "signature_image" not in record
    assert record["recorded_by"] is None
    assert record["device"] == "MetricisClient/2.1"
    assert record["ip"]
    assert record["withdrawn_at"] is None

    event = await audit.only("consent.signed")
    assert event.actor_type == "participant"
    assert event.actor_id == str(person.id)
    assert event.participant_id == person.id
    assert event.entity_id == record["id"]
    assert event.before == {"active_consent": None}
    assert event.after is not None
    assert event.after["content_hash"] == form["content_hash"]
    assert event.after["signature_image"]["type"] == "png"

    stored = await db_session.get(ConsentRecord, uuid.UUID(record["id"]))
    assert stored is not None and stored.signature_image == SIGNATURE

    detail = await world.client.get(f"/api/consent/records/{record['id']}", headers=headers)
    assert detail.status_code == 200
    assert detail.json()["signature_image"] == SIGNATURE


async def test_staff_record_an_in_person_signature(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    await audit.mark()
    response = await world.sign(
        person,
        form,
        box.coordinator.headers,
        signer_name="Sam Martin",
        signer_role="lar",
        witness_name="Dr. Jo Witness",
    )
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["recorded_by"] == str(box.coordinator.user_id)
    assert record["signer_role"] == "lar"
    assert record["witness_name"] == "Dr. Jo Witness"
    event = await audit.only("consent.signed")
    assert event.actor_type == "user"
    assert event.actor_id == str(box.coordinator.user_id)


async def test_lar_signature_needs_a_witness(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    details = assert_error(
        await world.sign(person, form, box.coordinator.headers, signer_role="lar"), 422
    )
    assert details["errors"][0]["field"] == "witness_name"


async def test_witness_attests_an_existing_signature(
    world: ConsentWorld, box: StudyBox, db_session: AsyncSession
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = box.coordinator.headers
    # A witness alone is not consent.
    assert_error(
        await world.sign(person, form, headers, signer_role="witness", signer_name="Jo"), 409
    )
    assert (await world.sign(person, form, headers)).status_code == 201
    witness = await world.sign(person, form, headers, signer_role="witness", signer_name="Jo")
    assert witness.status_code == 201, witness.text
    status = await world.status(person, headers)
    assert status["record_id"] != witness.json()["id"]
    assert status["signed_version"] == 1


SIGN_IN_ROLES: list[tuple[ParticipantActor, str, bool]] = [
    (ParticipantActor.PATIENT, "caregiver", False),
    (ParticipantActor.PATIENT, "lar", False),
    (ParticipantActor.PATIENT, "witness", False),
    (ParticipantActor.PATIENT, "participant", True),
    (ParticipantActor.CAREGIVER, "lar", False),
    (ParticipantActor.CAREGIVER, "witness", False),
    (ParticipantActor.CAREGIVER, "caregiver", True),
    (ParticipantActor.CAREGIVER, "participant", True),
]


async def test_signer_roles_open_to_a_participant_sign_in(
    world: ConsentWorld, box: StudyBox
) -> None:
    form = await world.published_form(box)
    people = {
        actor: await world.participant(box, actor=actor)
        for actor in (ParticipantActor.PATIENT, ParticipantActor.CAREGIVER)
    }
    headers = {actor: await world.participant_headers(person) for actor, person in people.items()}
    for actor, role, allowed in SIGN_IN_ROLES:
        response = await world.sign(people[actor], form, headers[actor], signer_role=role)
        if allowed:
            assert response.status_code == 201, (actor, role, response.text)
        else:
            details = assert_error(response, 422, "VALIDATION_ERROR")
            assert details["errors"][0]["field"] == "signer_role", (actor, role)


async def test_participant_cannot_name_a_witness(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = await world.participant_headers(person)
    assert_error(await world.sign(person, form, headers, witness_name="Someone"), 422)


async def test_participant_cannot_act_for_another_participant(
    world: ConsentWorld, box: StudyBox
) -> None:
    """Naming another participant in a body or a query is the 422 of a participant that does
    not exist; another participant's record by its path is 404."""
    form = await world.published_form(box)
    me = await world.participant(box)
    other = await world.participant(box)
    headers = await world.participant_headers(me)

    def unknown_participant(response: httpx.Response) -> None:
        details = assert_error(response, 422, "VALIDATION_ERROR")
        assert [error["field"] for error in details["errors"]] == ["participant_id"]

    unknown_participant(
        await world.client.post(
            "/api/consent/sign", json=world.sign_body(other, form), headers=headers
        )
    )
    for reference in (str(other.id), other.code, str(uuid.uuid4())):
        unknown_participant(
            await world.client.get(
                "/api/consent/status", params={"participant_id": reference}, headers=headers
            )
        )
    unknown_participant(
        await world.client.post(
            "/api/consent/withdraw",
            json={"participant_id": str(other.id), "reason": "x"},
            headers=headers,
        )
    )
    signed = await world.sign(other, form, box.coordinator.headers)
    record_id = signed.json()["id"]
    for path in (f"/api/consent/records/{record_id}", f"/api/consent/records/{record_id}/pdf"):
        assert_error(await world.client.get(path, headers=headers), 404)
    unknown_participant(
        await world.client.get(
            "/api/consent/records", params={"participant_id": str(other.id)}, headers=headers
        )
    )
    # Its own code names it as well as its UUID.
    own = await world.client.get(
        "/api/consent/status", params={"participant_id": me.code}, headers=headers
    )
    assert own.status_code == 200, own.text
    assert own.json()["participant_id"] == str(me.id)


async def test_read_only_staff_cannot_sign(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    read_only = await world.member(box.id, MemberRole.READ_ONLY)
    assert_error(await world.sign(person, form, read_only.headers), 403, "FORBIDDEN")
    assert_error(
        await world.client.post(
            "/api/consent/withdraw",
            json={"participant_id": str(person.id), "reason": "x"},
            headers=read_only.headers,
        ),
        403,
    )
    # Reading is allowed.
    assert (await world.status(person, read_only.headers))["required"] is True


async def test_staff_of_another_study_get_404(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    outsider = await world.study()
    signed = (await world.sign(person, form, box.coordinator.headers)).json()
    headers = outsider.coordinator.headers
    assert_error(await world.sign(person, form, headers), 404, "NOT_FOUND")
    for path in (
        f"/api/consent/records/{signed['id']}",
        f"/api/consent/records/{signed['id']}/pdf",
    ):
        assert_error(await world.client.get(path, headers=headers), 404)
    # Named by UUID without a study, the participant is one the outsider cannot reach: 422,
    # as for a participant that does not exist. Named within the study, the study is 404.
    assert_error(
        await world.client.get(
            "/api/consent/status", params={"participant_id": str(person.id)}, headers=headers
        ),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(
        await world.client.get(
            "/api/consent/status",
            params={"participant_id": person.code, "study_id": str(box.id)},
            headers=headers,
        ),
        404,
        "NOT_FOUND",
    )
    # A participant of the outsider's own study cannot sign a form of this study.
    theirs = await world.participant(outsider)
    assert_error(await world.sign(theirs, form, headers), 404)


async def test_site_scoped_coordinator_sees_only_their_site(
    world: ConsentWorld, box: StudyBox
) -> None:
    form = await world.published_form(box)
    north = await world.site(box, "NORTH")
    south = await world.site(box, "SOUTH")
    northern = await world.member(box.id, MemberRole.COORDINATOR, site_id=north)
    here = await world.participant(box, site_id=north)
    there = await world.participant(box, site_id=south)
    assert (await world.sign(here, form, northern.headers)).status_code == 201
    assert_error(await world.sign(there, form, northern.headers), 422, "VALIDATION_ERROR")
    await world.sign(there, form, box.coordinator.headers)
    listing = await world.client.get(
        "/api/consent/records", params={"study_id": str(box.id)}, headers=northern.headers
    )
    assert [r["participant_id"] for r in listing.json()["data"]] == [str(here.id)]


async def test_only_the_current_published_version_can_be_signed(
    world: ConsentWorld, box: StudyBox
) -> None:
    v1 = await world.published_form(box)
    v2 = await world.published_form(box)
    draft = await world.create_form(box)
    person = await world.participant(box)
    headers = box.coordinator.headers
    details = assert_error(await world.sign(person, v1, headers), 409, "CONFLICT")
    assert details["current_form_id"] == v2["id"]
    assert details["current_version"] == 2
    assert_error(await world.sign(person, draft, headers), 409)
    assert_error(await world.sign(person, {"id": str(uuid.uuid4())}, headers), 404)
    assert (await world.sign(person, v2, headers)).status_code == 201
    # The same version in the same role is signed once.
    assert_error(await world.sign(person, v2, headers), 409)


async def test_a_form_in_another_study_language_may_be_signed(
    world: ConsentWorld, box: StudyBox
) -> None:
    await world.published_form(box, language="en")
    french = await world.published_form(box, language="fr", title="Consentement")
    person = await world.participant(box, language="en")
    response = await world.sign(person, french, box.coordinator.headers)
    assert response.status_code == 201, response.text


async def test_withdrawn_participant_cannot_sign(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box, status=ParticipantStatus.WITHDRAWN)
    assert_error(await world.sign(person, form, box.coordinator.headers), 409, "CONFLICT")


async def test_required_questions_must_be_answered(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = box.coordinator.headers
    await audit.mark()
    details = assert_error(await world.sign(person, form, headers, answers={}), 422)
    assert details["missing"] == ["agree", "contact"]
    # An unticked required checkbox is not consent; a "no" to a yes/no question is an answer.
    details = assert_error(
        await world.sign(person, form, headers, answers={"agree": False, "contact": "no"}), 422
    )
    assert details["missing"] == ["agree"]
    details = assert_error(
        await world.sign(
            person, form, headers, answers={"agree": True, "contact": "maybe", "extra": "x"}
        ),
        422,
    )
    assert details["missing"] == []
    assert {error["field"] for error in details["errors"]} == {
        "answers.contact",
        "answers.extra",
    }
    assert_error(
        await world.sign(person, form, headers, answers={"agree": "yes", "contact": True}), 422
    )
    assert await audit.events() == []
    response = await world.sign(person, form, headers, answers={"agree": True, "contact": True})
    assert response.status_code == 201
    assert response.json()["answers"] == {"agree": True, "contact": "yes"}


async def test_signature_required_when_the_form_says_so(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    details = assert_error(
        await world.sign(person, form, box.coordinator.headers, signature_image=None), 422
    )
    assert details["errors"][0]["field"] == "signature_image"

    other = await world.study()
    unsigned_form = await world.published_form(other, requires_signature=False)
    someone = await world.participant(other)
    response = await world.sign(
        someone, unsigned_form, other.coordinator.headers, signature_image=None
    )
    assert response.status_code == 201
    assert response.json()["signature_image_type"] is None


def svg_base64(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


SVG_DRAWING = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80">'
    '<path d="M10 60 L80 15 L150 65" stroke="black" fill="none"/></svg>'
)
# Known ways through SVG filters. With PNG-only signatures every one of them is refused, whether
# declared as SVG (any spelling of the media type or encoding) or smuggled under image/png.
SVG_BYPASSES: dict[str, str] = {
    "script": '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "script-cdata": "<svg><script><![CDATA[alert(1)]]></script></svg>",
    "cdata-hidden-tag": "<svg><![CDATA[<]]>script>alert(1)<![CDATA[</]]>script></svg>",
    "uppercase-script": "<SVG><SCRIPT>alert(1)</SCRIPT></SVG>",
    "mixed-case-handler": '<sVg OnLoAd="alert(1)"><path d="M0 0"/></sVg>',
    "handler-on-path": '<svg><path d="M0 0" onmouseover="alert(1)"/></svg>',
    "href-javascript": '<svg><a href="javascript:alert(1)"><path d="M0 0"/></a></svg>',
    "xlink-javascript-entity": (
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink">'
        '<a xlink:href="jav&#x61;script:alert(1)"><path d="M0 0"/></a></svg>'
    ),
    "set-href": (
        '<svg><a href="#s"><set attributeName="href" to="javascript:alert(1)"/>'
        '<path d="M0 0"/></a></svg>'
    ),
    "animate-href": (
        '<svg><a><animate attributeName="href" values="javascript:alert(1)"/>'
        '<path d="M0 0"/></a></svg>'
    ),
    "foreign-object": (
        '<svg><foreignObject><iframe xmlns="http://www.w3.org/1999/xhtml" '
        'src="javascript:alert(1)"/></foreignObject></svg>'
    ),
    "use-external": '<svg><use href="https://evil.example/sprite.svg#x"/></svg>',
    "image-data-uri": (
        '<svg><image href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="/></svg>'
    ),
    "style-url": '<svg><path style="fill:url(https://evil.example/x)" d="M0 0"/></svg>',
    "entity-expansion": (
        '<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<svg>&b;</svg>"
    ),
    "doctype-external": '<!DOCTYPE svg SYSTEM "https://evil.example/x.dtd"><svg/>',
    "plain-drawing": SVG_DRAWING,
}


@pytest.mark.parametrize("svg", SVG_BYPASSES.values(), ids=SVG_BYPASSES.keys())
async def test_svg_signatures_are_refused_however_they_are_sent(
    world: ConsentWorld, box: StudyBox, svg: str
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    encoded = base64.b64encode(svg.encode()).decode()
    for image in (
        svg_base64(svg),
        "data:image/svg+xml;utf8," + svg,
        "data:IMAGE/SVG+XML;base64," + encoded,
        "data:image/svg;base64," + encoded,
        "data:text/html;base64," + encoded,
        # Declared as a PNG: the magic bytes give it away.
        png_data_uri(svg.encode()),
        png_data_uri(PNG_MAGIC + svg.encode()),
    ):
        response = await world.sign(person, form, box.coordinator.headers, signature_image=image)
        details = assert_error(response, 422, "VALIDATION_ERROR")
        assert details["errors"][0]["field"] == "signature_image", image[:40]
    status = await world.status(person, box.coordinator.headers)
    assert status["record_id"] is None


async def test_a_signature_stored_as_svg_before_is_still_read_but_never_served(
    world: ConsentWorld, box: StudyBox, db_session: AsyncSession
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    signed = await world.sign(person, form, box.coordinator.headers)
    assert signed.status_code == 201, signed.text
    record_id = uuid.UUID(signed.json()["id"])
    # A record from before SVG was refused, holding markup the old checks let through.
    legacy = svg_base64(SVG_BYPASSES["set-href"])
    stored = await db_session.get(ConsentRecord, record_id)
    assert stored is not None
    stored.signature_image = legacy
    await db_session.commit()

    headers = box.researcher.headers
    detail = await world.client.get(f"/api/consent/records/{record_id}", headers=headers)
    assert detail.status_code == 200, detail.text
    assert detail.json()["signature_image_type"] == "svg"
    assert detail.json()["signature_image"] is None
    listed = await world.client.get(
        "/api/consent/records", params={"participant_id": str(person.id)}, headers=headers
    )
    assert [row["signature_image_type"] for row in listed.json()["data"]] == ["svg"]

    pdf = await world.client.get(f"/api/consent/records/{record_id}/pdf", headers=headers)
    assert pdf.status_code == 200, pdf.text
    assert "captured as an SVG drawing" in flat(pdf_text(pdf.content))
    await db_session.refresh(stored)
    assert stored.signature_image == legacy


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_size(width: int, height: int) -> bytes:
    """A PNG header of that size and no pixels: refused by its dimensions before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_MAGIC + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


BAD_IMAGES: list[tuple[str, str, int]] = [
    ("bad-base64", "data:image/png;base64,@@not*base64@@", 422),
    ("wrong-magic", png_data_uri(b"GIF89a" + b"\x00" * 64), 422),
    ("png-magic-only", png_data_uri(PNG_MAGIC + b"\x00" * 64), 422),
    (
        "truncated-png",
        png_data_uri(base64.b64decode(SIGNATURE.split(",", 1)[1])[:60]),
        422,
    ),
    ("not-a-data-uri", "https://example.org/signature.png", 422),
    ("gif", "data:image/gif;base64,R0lGODlhAQABAAAAACw=", 422),
    ("png-not-base64", "data:image/png,abc", 422),
    ("empty", "data:image/png;base64,", 422),
    ("too-big", png_data_uri(PNG_MAGIC + os.urandom(SIGNATURE_MAX_BYTES)), 413),
    ("svg-too-big", svg_base64("<svg>" + " " * SIGNATURE_MAX_BYTES + "</svg>"), 422),
    ("too-wide", png_data_uri(png_with_size(SIGNATURE_MAX_SIDE + 1, 10)), 422),
    ("too-many-pixels", png_data_uri(png_with_size(2001, 2000)), 422),
    ("zero-height", png_data_uri(png_with_size(10, 0)), 422),
    ("header-only", png_data_uri(png_with_size(10, 10)), 422),
    ("html-after-iend", png_data_uri(png_bytes() + b"<html><script>alert(1)</script></html>"), 422),
]


async def test_bad_signature_images_are_refused(
    world: ConsentWorld, box: StudyBox, audit: ConsentAudit
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    await audit.mark()
    for name, image, status in BAD_IMAGES:
        response = await world.sign(person, form, box.coordinator.headers, signature_image=image)
        assert response.status_code == status, (name, response.text)
        code = "PAYLOAD_TOO_LARGE" if status == 413 else "VALIDATION_ERROR"
        assert_error(response, status, code)
    assert await audit.events() == []


async def test_refused_signatures_store_nothing(
    world: ConsentWorld, box: StudyBox, db_session: AsyncSession
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    await world.sign(person, form, box.coordinator.headers, answers={})
    rows = (
        await db_session.scalars(
            select(ConsentRecord).where(ConsentRecord.participant_id == person.id)
        )
    ).all()
    assert rows == []


async def test_staff_must_name_the_participant(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    body: dict[str, Any] = world.sign_body(person, form)
    del body["participant_id"]
    details = assert_error(
        await world.client.post("/api/consent/sign", json=body, headers=box.coordinator.headers),
        422,
    )
    assert details["errors"][0]["field"] == "participant_id"


async def test_consent_not_recorded_in_metricis(world: ConsentWorld) -> None:
    external = await world.study(consent_mode=ConsentMode.EXTERNAL)
    form = await world.published_form(external)
    person = await world.participant(external)
    details = assert_error(await world.sign(person, form, external.coordinator.headers), 409)
    assert details["consent_mode"] == "external"


async def test_text_the_database_cannot_store_is_refused(
    world: ConsentWorld, box: StudyBox
) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = box.coordinator.headers
    answers = {**ANSWERS, "comments": "a\x00b"}
    assert_error(await world.sign(person, form, headers, answers=answers), 422)
    assert_error(await world.sign(person, form, headers, signer_name="A\x00"), 422)
    assert_error(await world.sign(person, form, headers, answers={**ANSWERS, "\x00": "x"}), 422)
