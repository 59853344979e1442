"""The renderer alone, on plain values: page budget per domain and hostile text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.services.reports.content import (
    ConsentLine,
    DomainSection,
    FlagNote,
    ParticipantReport,
    Point,
    TaskSeries,
    enrollment_by_site,
    histogram,
)
from app.services.reports.render import render_participant_report
from tests.reports.conftest import MIN_INK_SHARE, folded, ink_shares, pdf_text

HOSTILE = '<b>x</b></para><font name=\'nope\'>& =HYPERLINK("http://evil.example","x")'
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _task(index: int, visits: int, flags: int) -> TaskSeries:
    metrics = ["median_rt", "accuracy", "mean_rt", "sd_rt"]
    points = [
        Point(
            f"{HOSTILE} {n}" if n == 0 else f"Month {n}",
            START + timedelta(days=30 * n),
            {"median_rt": 400.0 - n, "accuracy": 0.8, "mean_rt": None, "sd_rt": float("nan")},
        )
        for n in range(visits)
    ]
    notes = [FlagNote(f"Month {n}", "FOCUS_LOST", f"{HOSTILE} sentence {n}.") for n in range(flags)]
    return TaskSeries(
        task=f"task-{index}",
        name=f"{HOSTILE} task {index}",
        metrics=metrics,
        units={"median_rt": "ms", "accuracy": "proportion", "mean_rt": "ms", "sd_rt": "ms"},
        points=points,
        flags=notes,
        scorer_versions=["generic/1.0.0"],
    )


def _report(domains: list[DomainSection]) -> ParticipantReport:
    return ParticipantReport(
        study_code="ST-1",
        study_name=HOSTILE,
        site=HOSTILE,
        participant_code="<P&1>",
        status="enrolled",
        enrollment_date=START.date(),
        withdrawn_at=None,
        contact_included=True,
        email="<script>@example.org",
        phone=None,
        consents=[ConsentLine(HOSTILE, 1, "en", "participant", START, START)],
        sessions=12,
        sessions_completed=12,
        domains=domains,
        generated_at=START,
    )


def test_a_crowded_domain_keeps_to_one_page_and_hostile_text_prints_as_typed() -> None:
    crowded = DomainSection("attention", "Attention", [_task(i, 12, 6) for i in range(6)])
    single = DomainSection("language", "Language", [_task(9, 1, 0)])
    pdf = render_participant_report(_report([crowded, single]))
    pages = pdf_text(pdf)
    assert len(pages) == 3
    assert folded(HOSTILE) in pages[0]
    assert "<P&1>" in pages[0] and "<script>@example.org" in pages[0]
    assert "consent withdrawn" in pages[0]
    assert all(share > MIN_INK_SHARE for share in ink_shares(pdf))


def test_a_participant_without_sessions_has_one_page() -> None:
    pdf = render_participant_report(_report([]))
    pages = pdf_text(pdf)
    assert len(pages) == 1
    assert "0 task(s) in 0 domain(s)" in pages[0]


def test_enrollment_periods_and_histogram_bins() -> None:
    day = START.date()
    weekly = enrollment_by_site([("A", day), ("A", day + timedelta(days=8)), ("B", day)])
    assert weekly.periods[0] == (day - timedelta(days=7)).isoformat()
    assert weekly.by_site == {"A": [0, 1, 2], "B": [0, 1, 1]}
    monthly = enrollment_by_site([("A", day), ("A", day + timedelta(days=400))])
    assert monthly.periods[0] == "2025-12" and monthly.periods[-1] == "2027-02"
    assert monthly.by_site["A"][0] == 0 and monthly.by_site["A"][-1] == 2
    assert len(enrollment_by_site([("A", day), ("A", day + timedelta(days=3650))]).periods) <= 36
    edges, counts = histogram([1.0, 2.0, 3.0, 4.0], bins=3)
    assert counts == [1, 1, 2] and edges[0] == 1.0 and edges[-1] == 4.0
    assert histogram([5.0, 5.0]) == ([5.0, 5.0], [2])
