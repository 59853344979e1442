"""The study report: enrollment, adherence, data quality by site, histograms of main metrics."""

from __future__ import annotations

import httpx

from app.catalogue import get_module
from app.services.reports.flag_text import general_sentence
from tests.reports.conftest import (
    ALPHA_EMAIL,
    FORMULA_SITE,
    MARKUP_SITE,
    MIN_INK_SHARE,
    Runner,
    World,
    folded,
    ink_shares,
    make_report,
    pdf_text,
    study_url,
)


async def test_study_report_holds_enrollment_adherence_quality_and_histograms(
    client: httpx.AsyncClient, runner: Runner, world: World
) -> None:
    report, pdf = await make_report(client, runner, world.researcher.headers, study_url(world))
    assert report["kind"] == "study"
    assert report["participant_id"] is None
    assert report["site_id"] is None

    pages = pdf_text(pdf)
    text = " ".join(pages)
    assert len(pages) == 3
    first, quality, distributions = pages
    assert world.study.code in first
    assert "Enrollment by site over time" in first
    assert "Participants enrolled (cumulative, by site)" in first
    assert "Visit completion and adherence" in first
    # Both sites, whose names are markup and a formula, printed as typed.
    assert folded(MARKUP_SITE) in first and folded(FORMULA_SITE) in first
    # Three participants enrolled (the one who withdrew counts, as on the dashboard).
    assert "3 participant(s), 3 session(s)" in first

    assert "Data-quality flags by site" in quality
    assert "ANTICIPATIONS_HIGH" in quality
    assert folded(general_sentence("ANTICIPATIONS_HIGH")) in quality
    # S1: ALPHA-001's four tasks (the withdrawn participant's were erased), one flagged.
    assert "4 1 (25 %)" in quality
    assert "2 0 (0 %)" in quality

    assert "Distribution of each task's main metric" in distributions
    assert f"{get_module('simple-rt').name}: median_rt (ms)" in distributions
    assert f"{get_module('flanker').name}: interference_rt (ms)" in distributions
    assert "n = 3" in distributions

    assert ALPHA_EMAIL not in text and "ALPHA-001" not in text
    assert all(share > MIN_INK_SHARE for share in ink_shares(pdf)), ink_shares(pdf)


async def test_site_scoped_study_report_covers_their_site(
    client: httpx.AsyncClient, runner: Runner, world: World
) -> None:
    report, pdf = await make_report(client, runner, world.site_researcher.headers, study_url(world))
    assert report["site_id"] == str(world.site_ids["S2"])
    first, quality, distributions = pdf_text(pdf)
    assert f"{folded(FORMULA_SITE)} only" in first
    assert folded(MARKUP_SITE) not in " ".join((first, quality, distributions))
    assert "1 participant(s), 1 session(s)" in first
    assert "No validity flag on any of the 2 task(s)." in quality
    assert "n = 1" in distributions
