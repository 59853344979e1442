"""A study with known data for the report tests, built through the API and the factories.

Two sites whose names are markup and a spreadsheet formula; ALPHA-001 at S1 with contact
details, signed consent and two sessions (the second full of anticipations, so flagged);
BRAVO-002 at S2 with one session; WIPED-003 at S1, withdrawn with deletion of their data; and a
participant of another study. Jobs run in the test's transaction through the function the
Celery task calls, with sessions that join that transaction (as in tests/exports).
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pypdfium2
import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.study import ConsentMode, MemberRole, Study
from tests import factories
from tests.exports.conftest import Runner as Runner  # shared with the export tests
from tests.exports.conftest import job_sessions as job_sessions  # the fixture, shared
from tests.exports.conftest import runner as runner  # the fixture, shared

MARKUP_SITE = "<b>x</b> & <i>unclosed <font"
FORMULA_SITE = '=HYPERLINK("http://evil.example","x")'
ALPHA_EMAIL = "alpha.contact@example.org"
ALPHA_PHONE = "+15550001234"
# A page counts as drawn when more than this share of its pixels is not white.
MIN_INK_SHARE = 0.01


@dataclass
class World:
    study: Study
    study_id: str
    site_ids: dict[str, uuid.UUID]
    participant_ids: dict[str, uuid.UUID]
    foreign_participant_id: uuid.UUID
    researcher: factories.Staff
    coordinator: factories.Staff
    viewer: factories.Staff
    site_researcher: factories.Staff  # a researcher scoped to S2
    outsider: factories.Staff


async def _post(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(url, headers=headers, json=body)
    assert response.status_code in (200, 201, 202), (url, response.text)
    payload: dict[str, Any] = response.json()
    return payload


async def _session(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    participant_id: uuid.UUID,
    battery_id: uuid.UUID,
    trials: list[dict[str, object]],
) -> None:
    started = await factories.start_session(client, headers, participant_id, battery_id)
    assert started.status_code == 201, started.text
    submitted = await factories.submit(
        client, headers, started.json()["session_id"], {"trials": trials}
    )
    assert submitted.status_code == 201, submitted.text


@pytest.fixture
async def world(client: httpx.AsyncClient, db_session: AsyncSession, settings: Settings) -> World:
    study = await factories.active_study(db_session)
    s1 = await factories.site(db_session, study, "S1", name=MARKUP_SITE)
    s2 = await factories.site(db_session, study, "S2", name=FORMULA_SITE)
    researcher = await factories.study_member(db_session, client, study, MemberRole.RESEARCHER)
    coordinator = await factories.study_member(db_session, client, study, MemberRole.COORDINATOR)
    viewer = await factories.study_member(db_session, client, study, MemberRole.READ_ONLY)
    site_researcher = await factories.study_member(
        db_session, client, study, MemberRole.RESEARCHER, s2
    )
    other = await factories.active_study(db_session)
    outsider = await factories.study_member(db_session, client, other, MemberRole.RESEARCHER)
    foreign = await factories.participant(db_session, other, "FOREIGN-9")
    battery_id, _ = await factories.battery(db_session, study, ["simple-rt", "flanker"])
    people = {
        "ALPHA-001": await factories.participant(
            db_session,
            study,
            "ALPHA-001",
            s1,
            settings=settings,
            email=ALPHA_EMAIL,
            phone=ALPHA_PHONE,
        ),
        "BRAVO-002": await factories.participant(db_session, study, "BRAVO-002", s2),
        "WIPED-003": await factories.participant(db_session, study, "WIPED-003", s1),
    }
    headers = researcher.headers
    for code, person in people.items():
        trials = factories.simple_rt_trials(10) + factories.task_trials("flanker", 12)
        await _session(client, headers, person.id, battery_id, trials)
        if code == "ALPHA-001":
            # Eight of ten responses faster than 100 ms: ANTICIPATIONS_HIGH.
            fast = factories.simple_rt_trials(10, base=50.0)
            await _session(
                client,
                headers,
                person.id,
                battery_id,
                fast + factories.task_trials("flanker", 12, seed=3),
            )
    # Sessions first, without a consent gate; then ALPHA-001 signs the study's form.
    study.consent_mode = ConsentMode.BUILTIN
    await db_session.commit()
    form = await _post(
        client,
        "/api/consent/forms",
        headers,
        {
            "study_id": str(study.id),
            "language": "en",
            "title": "Consent to take part",
            "content": "# Consent\n\nYou may stop at any time.",
            "requires_signature": False,
        },
    )
    await _post(client, f"/api/consent/forms/{form['id']}/publish", headers, {})
    await _post(
        client,
        "/api/consent/sign",
        headers,
        {
            "participant_id": str(people["ALPHA-001"].id),
            "form_id": form["id"],
            "signer_name": "Alpha Signer",
            "signer_role": "participant",
        },
    )
    await _post(
        client,
        f"/api/participants/{people['WIPED-003'].id}/withdraw",
        headers,
        {"reason": "asked for erasure", "scope": "delete_data"},
    )
    return World(
        study=study,
        study_id=str(study.id),
        site_ids={"S1": s1.id, "S2": s2.id},
        participant_ids={code: p.id for code, p in people.items()},
        foreign_participant_id=foreign.id,
        researcher=researcher,
        coordinator=coordinator,
        viewer=viewer,
        site_researcher=site_researcher,
        outsider=outsider,
    )


def participant_url(world: World, code: str) -> str:
    return f"/api/reports/studies/{world.study_id}/participants/{world.participant_ids[code]}"


def study_url(world: World) -> str:
    return f"/api/reports/studies/{world.study_id}"


async def wait_until_ready(
    client: httpx.AsyncClient, runner: Runner, headers: dict[str, str], report_id: str
) -> dict[str, Any]:
    """Run the worker until the report leaves queued and running (a few rounds at most)."""
    for _ in range(5):
        await runner.run()
        found = await client.get(f"/api/reports/{report_id}", headers=headers)
        assert found.status_code == 200, found.text
        body: dict[str, Any] = found.json()
        if body["status"] not in ("queued", "running"):
            return body
    raise AssertionError(f"report {report_id} still {body['status']}")


async def make_report(
    client: httpx.AsyncClient,
    runner: Runner,
    headers: dict[str, str],
    url: str,
    body: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Create a report, run it, check it is ready, download it: (the report, the PDF)."""
    created = await client.post(url, headers=headers, json=body or {})
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued"
    report = await wait_until_ready(client, runner, headers, created.json()["id"])
    assert report["status"] == "ready", report
    assert report["download_url"] == f"/api/reports/{report['id']}/download"
    downloaded = await client.get(report["download_url"], headers=headers)
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-type"] == "application/pdf"
    return report, downloaded.content


def pdf_text(data: bytes) -> list[str]:
    """Each page's text, its whitespace folded to single spaces."""
    reader = PdfReader(io.BytesIO(data))
    return [" ".join((page.extract_text() or "").split()) for page in reader.pages]


def folded(text: str) -> str:
    return " ".join(text.split())


def ink_shares(data: bytes) -> list[float]:
    """Each page rendered (pdfium, 50 dpi): the share of its pixels that are not white."""
    document = pypdfium2.PdfDocument(data)
    shares = []
    try:
        for index in range(len(document)):
            page = document[index]
            image: Image.Image = page.render(scale=50 / 72).to_pil().convert("L")
            histogram = image.histogram()
            dark = sum(histogram[:245])
            shares.append(dark / (image.width * image.height))
            page.close()
    finally:
        document.close()
    return shares
