"""The pictures of docs/reports.md: page 1 of each PDF report, for a study shaped like the demo.

    python -m bench.report_images [--out ../docs/images]

Builds the reports' plain values for a demo-like study (the demo's three tasks, simple-rt,
flanker and digit-span, monthly visits at three sites, values drawn from a fixed seed), draws
them with the reports' own renderer (app/services/reports/render.py) and writes page 1 of each
as a PNG (pdfium, 80 dpi, palette), and the participant report's first domain page. Needs no
database: it shows the layout, not a query.
"""

from __future__ import annotations

import argparse
import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pypdfium2
from PIL import Image

from app.services.reports.content import (
    ConsentLine,
    DomainSection,
    FlagNote,
    Histogram,
    ParticipantReport,
    Point,
    SiteRow,
    StudyReport,
    TaskSeries,
    enrollment_by_site,
    histogram,
)
from app.services.reports.flag_text import explain_flag
from app.services.reports.metrics import domain_title, task_name, unit
from app.services.reports.render import render_participant_report, render_study_report

STUDY_CODE = "DEMO-2026-001"
STUDY_NAME = "Metricis demonstration study"
SITES = ("LYON – Hôpital Neurologique", "OSLO – Rikshospitalet", "YORK – District Hospital")
START = datetime(2026, 1, 12, 9, 30, tzinfo=UTC)
DPI = 80


def _participant(rng: random.Random) -> ParticipantReport:
    visits = [f"Month {n}" if n else "Baseline" for n in range(6)]
    when = [START + timedelta(days=30 * n, hours=rng.randint(0, 6)) for n in range(6)]

    def series(
        task: str, metrics: dict[str, tuple[float, float]], flags: list[FlagNote]
    ) -> TaskSeries:
        points = []
        for index, (label, started) in enumerate(zip(visits, when, strict=True)):
            values: dict[str, float | None] = {}
            for metric, (start, change) in metrics.items():
                noise = rng.gauss(0, abs(change) * 0.6)
                values[metric] = round(start + change * index + noise, 3)
            points.append(Point(label, started, values))
        names = list(metrics)
        return TaskSeries(
            task=task,
            name=task_name(task),
            metrics=names,
            units={m: unit(m) for m in names},
            points=points,
            flags=flags,
            scorer_versions=[f"{task if task != 'flanker' else 'interference'}/1.0.0"],
        )

    anticipations = {
        "anticipations": 4,
        "responses": 30,
        "share": 4 / 30,
        "share_limit": 0.1,
        "anticipation_limit_ms": 100,
    }
    speed = series(
        "simple-rt",
        {"median_rt": (412.0, -14.0), "mean_rt": (431.0, -15.0), "sd_rt": (78.0, -4.0)},
        [
            FlagNote(
                "Month 2", "ANTICIPATIONS_HIGH", explain_flag("ANTICIPATIONS_HIGH", anticipations)
            )
        ],
    )
    attention = series(
        "flanker",
        {
            "interference_rt": (96.0, -7.0),
            "accuracy": (0.86, 0.015),
            "mean_rt_incongruent": (655.0, -18.0),
            "mean_rt_congruent": (559.0, -11.0),
        },
        [FlagNote("Month 4", "FOCUS_LOST", explain_flag("FOCUS_LOST", {"visibility_changes": 2}))],
    )
    memory = series(
        "digit-span",
        {
            "max_span_forward": (5.0, 0.3),
            "max_span_backward": (3.0, 0.3),
            "total_correct": (9.0, 0.6),
        },
        [],
    )
    sections = {"attention": [attention], "processing_speed": [speed], "working_memory": [memory]}
    return ParticipantReport(
        study_code=STUDY_CODE,
        study_name=STUDY_NAME,
        site=SITES[0],
        participant_code="P001",
        status="enrolled",
        enrollment_date=START.date(),
        withdrawn_at=None,
        contact_included=False,
        email=None,
        phone=None,
        consents=[
            ConsentLine(
                "Consent to take part in the Metricis demonstration study",
                1,
                "en",
                "participant",
                START - timedelta(days=1),
                None,
            )
        ],
        sessions=6,
        sessions_completed=6,
        domains=[
            DomainSection(domain, domain_title(domain), tasks)
            for domain, tasks in sorted(sections.items())
        ],
        generated_at=START + timedelta(days=170),
    )


def _study(rng: random.Random) -> StudyReport:
    enrolled = []
    for site_index, site in enumerate(SITES):
        code = site.split(" – ")[0]
        for _ in range((32, 24, 18)[site_index]):
            enrolled.append((code, START.date() + timedelta(days=int(rng.triangular(0, 150, 20)))))
    rows = []
    for index, site in enumerate(SITES):
        participants = (32, 24, 18)[index]
        due = participants * 4
        completed = int(due * (0.93, 0.86, 0.78)[index])
        tasks = completed * 3
        flags = {
            "ANTICIPATIONS_HIGH": int(tasks * (0.02, 0.035, 0.05)[index]),
            "FOCUS_LOST": int(tasks * (0.04, 0.06, 0.03)[index]),
            "TIMEOUTS_HIGH": int(tasks * 0.01 * index),
        }
        rows.append(
            SiteRow(site, participants, completed, due, round(completed / due, 4), tasks, flags)
        )
    histograms = []
    for task, metric, mean, sd in (
        ("digit-span", "max_span_forward", 6.0, 1.1),
        ("flanker", "interference_rt", 85.0, 28.0),
        ("simple-rt", "median_rt", 395.0, 55.0),
    ):
        values = [
            round(rng.gauss(mean, sd)) if task == "digit-span" else rng.gauss(mean, sd)
            for _ in range(231)
        ]
        edges, counts = histogram(values)
        ordered = sorted(values)
        histograms.append(
            Histogram(
                task,
                task_name(task),
                metric,
                unit(metric),
                edges,
                counts,
                len(values),
                ordered[115],
            )
        )
    return StudyReport(
        study_code=STUDY_CODE,
        study_name=STUDY_NAME,
        study_status="active",
        site_scope=None,
        participants=len(enrolled),
        sessions=sum(row.visits_completed for row in rows),
        sites=rows,
        enrollment=enrollment_by_site(enrolled),
        flag_codes=sorted({code for row in rows for code in row.flags}),
        histograms=histograms,
        generated_at=START + timedelta(days=170),
    )


def page_png(pdf: bytes, index: int) -> bytes:
    document = pypdfium2.PdfDocument(pdf)
    try:
        image: Image.Image = document[index].render(scale=DPI / 72).to_pil()
    finally:
        document.close()
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=64).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[2] / "docs" / "images")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)
    participant = render_participant_report(_participant(rng))
    study = render_study_report(_study(rng))
    pictures = {
        "participant-report.png": (participant, 0),
        "participant-report-domain.png": (participant, 1),
        "study-report.png": (study, 0),
    }
    for name, (pdf, index) in pictures.items():
        data = page_png(pdf, index)
        (arguments.out / name).write_bytes(data)
        print(f"{name}: {len(data) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
