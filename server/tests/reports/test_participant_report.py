"""The participant report: created through the API, made by the worker, read back from the PDF."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import get_module
from app.models.audit import AuditEvent
from app.services.reports.flag_text import explain_flag
from tests.reports.conftest import (
    ALPHA_EMAIL,
    ALPHA_PHONE,
    FORMULA_SITE,
    MARKUP_SITE,
    MIN_INK_SHARE,
    Runner,
    World,
    folded,
    ink_shares,
    make_report,
    participant_url,
    pdf_text,
)


async def test_participant_report_holds_identity_metrics_flags_consent_and_versions(
    client: httpx.AsyncClient, runner: Runner, world: World, db_session: AsyncSession
) -> None:
    report, pdf = await make_report(
        client, runner, world.researcher.headers, participant_url(world, "ALPHA-001")
    )
    assert report["kind"] == "participant"
    assert report["participant_id"] == str(world.participant_ids["ALPHA-001"])
    assert report["include_pii"] is False
    assert report["progress"] == {"rows_done": 1, "rows_total": 1, "percent": 100.0}
    assert report["size_bytes"] == len(pdf)
    assert report["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert report["file_name"].endswith(".pdf")
    assert pdf.startswith(b"%PDF-")

    pages = pdf_text(pdf)
    text = " ".join(pages)
    assert "ALPHA-001" in pages[0]
    assert world.study.code in pages[0]
    # The site's name is markup: printed as typed, never interpreted.
    assert folded(MARKUP_SITE) in pages[0]
    assert "Contact details are not included" in pages[0]
    assert ALPHA_EMAIL not in text and ALPHA_PHONE not in text
    # Consent and scorer versions on the first page.
    assert "consent in force" in pages[0]
    assert "Consent to take part" in pages[0]
    assert "simple-rt/1.0.0" in pages[0] and "interference/1.0.0" in pages[0]
    # One page per domain: attention (flanker) and processing speed (simple-rt).
    assert len(pages) == 3
    attention, speed = pages[1], pages[2]
    assert "Attention" in attention and get_module("flanker").name in attention
    assert "interference_rt" in attention and "accuracy" in attention
    assert "Processing speed" in speed and get_module("simple-rt").name in speed
    assert "median_rt" in speed and "mean_rt" in speed
    # The second session's anticipations, in words, with their numbers.
    assert "ANTICIPATIONS_HIGH" in speed
    evidence = {
        "anticipations": 8,
        "responses": 10,
        "share": 0.8,
        "share_limit": 0.1,
        "anticipation_limit_ms": 100,
    }
    assert folded(explain_flag("ANTICIPATIONS_HIGH", evidence)) in speed
    assert all(share > MIN_INK_SHARE for share in ink_shares(pdf)), ink_shares(pdf)

    actions = (
        await db_session.scalars(
            select(AuditEvent.action).where(AuditEvent.entity_id == report["id"])
        )
    ).all()
    assert sorted(actions) == ["report.created", "report.downloaded", "report.ready"]


async def test_contact_details_only_when_asked(
    client: httpx.AsyncClient, runner: Runner, world: World
) -> None:
    report, pdf = await make_report(
        client,
        runner,
        world.researcher.headers,
        participant_url(world, "ALPHA-001"),
        {"include_pii": True},
    )
    assert report["include_pii"] is True
    first = pdf_text(pdf)[0]
    assert ALPHA_EMAIL in first and ALPHA_PHONE in first
    assert "not included" not in first


async def test_a_participant_without_flags_consent_or_contact(
    client: httpx.AsyncClient, runner: Runner, world: World
) -> None:
    _, pdf = await make_report(
        client, runner, world.researcher.headers, participant_url(world, "BRAVO-002")
    )
    pages = pdf_text(pdf)
    assert "BRAVO-002" in pages[0]
    assert folded(FORMULA_SITE) in pages[0]
    assert "no consent recorded" in pages[0]
    assert "ANTICIPATIONS_HIGH" not in " ".join(pages)
    assert "No validity flags." in pages[2]
    assert "Session 1" in pages[2]
    # One session: each metric is a single bar, and every page still carries ink.
    assert all(share > MIN_INK_SHARE for share in ink_shares(pdf))


async def test_site_scoped_researcher_reports_on_their_site(
    client: httpx.AsyncClient, runner: Runner, world: World
) -> None:
    headers = world.site_researcher.headers
    report, _ = await make_report(client, runner, headers, participant_url(world, "BRAVO-002"))
    assert report["site_id"] == str(world.site_ids["S2"])
    other_site = await client.post(participant_url(world, "ALPHA-001"), headers=headers, json={})
    assert other_site.status_code == 404
    assert other_site.json()["error"]["code"] == "NOT_FOUND"
