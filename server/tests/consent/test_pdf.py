"""The signed form as a PDF: what it states, who may download it."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pypdf

from app.services.consent.pdf import ConsentPdfData, PdfQuestion, render_consent_pdf
from tests.consent.conftest import (
    ConsentWorld,
    StudyBox,
    assert_error,
    flat,
    pdf_text,
)
from tests.factories import png_bytes

CONTENT = """# Why this study

We study **memory** & <attention> in ageing; see [the site](https://example.org).

## What happens

- Short games on a phone, *twice a week*
- About `10 minutes` each time

1. You sign this form
2. You play

---

Overlapping **bold *and** italic* stays as typed.
"""


async def test_pdf_states_the_signature(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box, content=CONTENT, title="Consent to take part")
    person = await world.participant(box, timezone="America/New_York")
    signed = await world.sign(
        person,
        form,
        box.coordinator.headers,
        signer_name="Dana Quinn",
        signer_role="lar",
        witness_name="Robin Witness",
        answers={"agree": True, "contact": "yes", "comments": "Fine by me"},
    )
    record = signed.json()
    response = await world.client.get(
        f"/api/consent/records/{record['id']}/pdf", headers=box.researcher.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="consent-{box.code}-{person.code}-v1.pdf"'
    )
    assert response.content.startswith(b"%PDF")

    text = pdf_text(response.content)
    folded = flat(text)
    signed_at = datetime.fromisoformat(record["signed_at"])
    utc = signed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    local = signed_at.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M:%S")
    for expected in (
        box.code,
        "Memory and Attention in Ageing",
        "Consent to take part",
        "Form version: 1",
        form["content_hash"],
        "Dana Quinn",
        "Legally authorized representative",
        "Robin Witness",
        box.coordinator.name,
        person.code,
        utc,
        local,
        "America/New_York",
        "We study memory & <attention> in ageing",
        "the site (https://example.org)",
        "Short games on a phone, twice a week",
        "Overlapping **bold *and** italic* stays as typed.",
        "I agree to take part",
        "Checked",
        "Fine by me",
        "By signing, Dana Quinn confirms",
        "legally authorized representative",
    ):
        assert expected in folded, expected
    # The 64-character hash is never split across lines.
    assert form["content_hash"] in text


async def test_participant_downloads_their_own_pdf(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = await world.participant_headers(person)
    record = (await world.sign(person, form, headers, signer_name="Alex Martin")).json()
    response = await world.client.get(f"/api/consent/records/{record['id']}/pdf", headers=headers)
    assert response.status_code == 200
    text = flat(pdf_text(response.content))
    assert "Alex Martin" in text
    assert "through their own sign-in" in text
    assert "By signing, Alex Martin confirms" in text


async def test_withdrawn_record_pdf_says_so(world: ConsentWorld, box: StudyBox) -> None:
    form = await world.published_form(box)
    person = await world.participant(box)
    headers = await world.participant_headers(person)
    record = (await world.sign(person, form, headers)).json()
    await world.client.post(
        "/api/consent/withdraw", json={"reason": "Moving abroad"}, headers=headers
    )
    response = await world.client.get(
        f"/api/consent/records/{record['id']}/pdf", headers=box.coordinator.headers
    )
    text = flat(pdf_text(response.content))
    assert "Consent withdrawn" in text
    assert "Moving abroad" in text


async def test_unknown_record_is_404(world: ConsentWorld, box: StudyBox) -> None:
    assert_error(
        await world.client.get(
            "/api/consent/records/00000000-0000-4000-8000-000000000000/pdf",
            headers=box.coordinator.headers,
        ),
        404,
    )


def sample(**overrides: object) -> ConsentPdfData:
    values: dict[str, object] = {
        "record_id": "rec-1",
        "study_code": "NEURO-2024-001",
        "study_name": "Neuro study",
        "participant_code": "P001",
        "form_title": "Consentement éclairé",
        "form_language": "fr",
        "form_version": 3,
        "content_hash": "a" * 64,
        "content": "Texte du formulaire: données, sécurité.",
        "questions": [PdfQuestion(text="D'accord ?", answer="no", kind="yes_no")],
        "signer_name": "Zoé Łukasiewicz",
        "signer_role": "participant",
        "witness_name": None,
        "recorded_by": None,
        "signed_at": datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        "timezone": ZoneInfo("Europe/Paris"),
        "signature_kind": "png",
        "signature_data": png_bytes(),
        "withdrawn_at": None,
        "withdrawal_reason": None,
        "generated_at": datetime(2026, 3, 30, tzinfo=UTC),
    }
    values.update(overrides)
    return ConsentPdfData(**values)  # type: ignore[arg-type]


def test_times_in_utc_and_in_the_participant_zone_across_dst() -> None:
    text = flat(pdf_text(render_consent_pdf(sample())))
    assert "2026-03-29 00:30:00 UTC" in text
    # Paris moved to summer time at 01:00 UTC that night: still CET (+01:00) at 00:30 UTC.
    assert "2026-03-29 01:30:00 CET (UTC+01:00, Europe/Paris)" in text
    assert "Consentement éclairé" in text
    assert "No" in text


def test_svg_signature_is_noted_not_drawn() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L9 9"/></svg>'
    text = flat(pdf_text(render_consent_pdf(sample(signature_kind="svg", signature_data=svg))))
    assert "captured as an SVG drawing" in text


def test_png_signature_is_drawn() -> None:
    content = render_consent_pdf(sample())
    reader = pypdf.PdfReader(io.BytesIO(content))
    images = [image for page in reader.pages for image in page.images]
    assert len(images) == 1


def test_unreadable_png_is_noted() -> None:
    broken = base64.b64decode(base64.b64encode(png_bytes()[:40]))
    text = flat(pdf_text(render_consent_pdf(sample(signature_data=broken))))
    assert "could not be reproduced" in text
