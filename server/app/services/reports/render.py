"""The reports' PDFs, drawn with reportlab (A4) from the plain values of `content`.

Pure and synchronous: no database and no settings, so the worker runs it in a thread. Every text
that comes from the data (codes, names, labels, flag sentences) goes into a Paragraph only
through `_text`, which escapes reportlab's markup, so a site named `<b>x` or
`=HYPERLINK(...)` prints as typed; chart labels are drawn as plain strings, never parsed. The
fonts are the consent PDF's (DejaVu Sans when the system has it).

A participant report has a first page (identity, consent, sessions, scorer versions) and one page
per domain of the tasks the participant did; a domain's content is shrunk to fit its page when
it holds many tasks. A study report has a page of enrollment and adherence, a page of data
quality by site and pages of histograms.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepInFrame,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from app.services.consent.pdf import fonts
from app.services.reports.content import (
    DomainSection,
    Histogram,
    ParticipantReport,
    StudyReport,
    TaskSeries,
)
from app.services.reports.flag_text import general_sentence

MARGIN = 16 * mm
PAGE_WIDTH, PAGE_HEIGHT = A4
FRAME_WIDTH = PAGE_WIDTH - 2 * MARGIN - 12  # less the frame's padding
# The frame's height, less the frame's own padding: what a KeepInFrame may fill.
FRAME_HEIGHT = PAGE_HEIGHT - 2 * MARGIN - 14 * mm
MAX_VISITS_IN_TABLE = 8
LABEL_CHARACTERS = 14
SERIES_COLORS = (
    colors.HexColor("#1f77b4"),
    colors.HexColor("#ff7f0e"),
    colors.HexColor("#2ca02c"),
    colors.HexColor("#d62728"),
    colors.HexColor("#9467bd"),
    colors.HexColor("#8c564b"),
    colors.HexColor("#e377c2"),
    colors.HexColor("#7f7f7f"),
)
GRID = colors.HexColor("#c8c8c8")
HEADER_FILL = colors.HexColor("#eef2f7")


class _Styles:
    def __init__(self) -> None:
        font = fonts()
        self.regular, self.bold = font.regular, font.bold
        self.body = ParagraphStyle("body", fontName=font.regular, fontSize=9.5, leading=12.5)
        self.title = ParagraphStyle(
            "title", parent=self.body, fontName=font.bold, fontSize=17, leading=21, spaceAfter=4
        )
        self.heading = ParagraphStyle(
            "heading",
            parent=self.body,
            fontName=font.bold,
            fontSize=12.5,
            leading=16,
            spaceBefore=8,
            spaceAfter=4,
        )
        self.subheading = ParagraphStyle(
            "subheading", parent=self.body, fontName=font.bold, fontSize=10.5, spaceBefore=6
        )
        self.cell = ParagraphStyle("cell", parent=self.body, fontSize=8.5, leading=10.5)
        self.cell_bold = ParagraphStyle("cell_bold", parent=self.cell, fontName=font.bold)
        self.small = ParagraphStyle(
            "small", parent=self.body, fontSize=8, leading=10, textColor=colors.grey
        )
        self.bullet = ParagraphStyle(
            "bullet", parent=self.body, fontSize=8.5, leading=11, leftIndent=10, bulletIndent=2
        )


def _text(value: object, style: ParagraphStyle) -> Paragraph:
    """A paragraph of data, never markup: `<`, `>` and `&` are escaped."""
    return Paragraph(escape(str(value)), style)


def _labelled(label: str, value: object, styles: _Styles) -> Paragraph:
    """`label` is the code's own constant (bold), `value` comes from the data (escaped)."""
    return Paragraph(f"<b>{escape(label)}</b> {escape(str(value))}", styles.body)


def _short(label: str, limit: int = LABEL_CHARACTERS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _when(value: datetime | date | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _value(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "proportion":
        return f"{value * 100:.1f} %"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def _table(
    rows: Sequence[Sequence[object]],
    styles: _Styles,
    widths: Sequence[float] | None = None,
    header: bool = True,
) -> Table:
    cells = [
        [_text(cell, styles.cell_bold if header and i == 0 else styles.cell) for cell in row]
        for i, row in enumerate(rows)
    ]
    table = Table(cells, colWidths=list(widths) if widths else None, hAlign="LEFT", repeatRows=1)
    commands: list[tuple[Any, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.4, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL))
    table.setStyle(TableStyle(commands))
    return table


def _bounds(values: Sequence[float], *, from_zero: bool) -> tuple[float, float]:
    low, high = min(values), max(values)
    if from_zero and low >= 0:
        low = 0.0
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        return low - (0 if from_zero and low == 0 else pad), high + pad
    pad = (high - low) * 0.08
    return (low if from_zero and low == 0 else low - pad), high + pad


def _count_axis(chart: Any, high: int) -> None:
    """A value axis of whole counts from 0, about five ticks."""
    step = max(1, -(-high // 5))
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = step * (-(-high // step) + (1 if high % step == 0 else 0))
    chart.valueAxis.valueStep = step
    chart.valueAxis.labelTextFormat = "%d"


def _axis_fonts(chart: Any, styles: _Styles, size: float = 6.5) -> None:
    for axis in (chart.categoryAxis, chart.valueAxis):
        axis.labels.fontName = styles.regular
        axis.labels.fontSize = size
        axis.strokeColor = colors.grey
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = colors.HexColor("#e6e6e6")


def _chart_title(drawing: Drawing, title: str, styles: _Styles) -> None:
    drawing.add(
        String(4, drawing.height - 10, _short(title, 70), fontName=styles.bold, fontSize=7.5)
    )


def metric_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    unit: str,
    styles: _Styles,
    width: float,
    height: float,
) -> Drawing:
    """One metric over visits: a line with points, or a single bar for a single visit."""
    drawing = Drawing(width, height)
    _chart_title(drawing, title + (f" ({unit})" if unit and unit != "proportion" else ""), styles)
    shown = [v * 100 for v in values] if unit == "proportion" else list(values)
    chart: Any = HorizontalLineChart() if len(shown) > 1 else VerticalBarChart()
    chart.x, chart.y = 30, 26
    chart.width, chart.height = width - 40, height - 42
    chart.data = [tuple(shown)]
    chart.categoryAxis.categoryNames = [_short(label) for label in labels]
    chart.categoryAxis.labels.angle = 25
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.categoryAxis.labels.dy = -2
    low, high = _bounds(shown, from_zero=not isinstance(chart, HorizontalLineChart))
    chart.valueAxis.valueMin, chart.valueAxis.valueMax = low, high
    if unit == "proportion":
        chart.valueAxis.labelTextFormat = "%.0f%%"
    _axis_fonts(chart, styles)
    if isinstance(chart, HorizontalLineChart):
        chart.lines[0].strokeColor = SERIES_COLORS[0]
        chart.lines[0].strokeWidth = 1.5
        chart.lines[0].symbol = makeMarker("FilledCircle", size=3)
    else:
        chart.bars[0].fillColor = SERIES_COLORS[0]
        chart.bars[0].strokeColor = None
        chart.barWidth = 14
    drawing.add(chart)
    return drawing


def _side_by_side(drawings: Sequence[Flowable]) -> Table:
    width = FRAME_WIDTH / max(len(drawings), 1)
    table = Table([list(drawings)], colWidths=[width] * len(drawings), hAlign="LEFT")
    table.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return table


# --------------------------------------------------------------------------- participant report


def _task_block(task: TaskSeries, styles: _Styles) -> list[Flowable]:
    parts: list[Flowable] = [_text(f"{task.name} ({task.task})", styles.subheading)]
    charts: list[Flowable] = []
    for metric in task.metrics[:2]:
        points = [(p.label, p.values.get(metric)) for p in task.points]
        kept = [(label, value) for label, value in points if value is not None]
        if kept:
            charts.append(
                metric_chart(
                    metric,
                    [label for label, _ in kept],
                    [value for _, value in kept],
                    task.units.get(metric, ""),
                    styles,
                    FRAME_WIDTH / 2 - 4,
                    46 * mm,
                )
            )
    if charts:
        parts.append(_side_by_side(charts))
    if task.metrics:
        recent = task.points[-MAX_VISITS_IN_TABLE:]
        header = ["Visit", "Date", *task.metrics]
        rows = [
            [
                p.label,
                p.started_at.strftime("%Y-%m-%d"),
                *(_value(p.values.get(m), task.units.get(m, "")) for m in task.metrics),
            ]
            for p in recent
        ]
        first = 34 * mm
        rest = (FRAME_WIDTH - first - 22 * mm) / len(task.metrics)
        parts.append(_table([header, *rows], styles, [first, 22 * mm, *[rest] * len(task.metrics)]))
        if len(task.points) > len(recent):
            parts.append(
                _text(f"The last {len(recent)} of {len(task.points)} visits.", styles.small)
            )
    else:
        parts.append(_text("No numeric metric was stored for this task.", styles.small))
    if task.flags:
        parts.append(Paragraph("<b>Flags</b>", styles.body))
        parts.extend(
            Paragraph(
                f"<b>{escape(note.label)}</b> – {escape(note.sentence)} "
                f"<font color='grey'>[{escape(note.code)}]</font>",
                styles.bullet,
                bulletText="•",
            )
            for note in task.flags
        )
    else:
        parts.append(_text("No validity flags.", styles.small))
    parts.append(Spacer(1, 3 * mm))
    return parts


def _domain_page(section: DomainSection, styles: _Styles) -> Flowable:
    content: list[Flowable] = [_text(section.title, styles.heading)]
    for task in section.tasks:
        content.extend(_task_block(task, styles))
    # One page per domain: a domain with many tasks is drawn smaller rather than spilling over.
    return KeepInFrame(FRAME_WIDTH, FRAME_HEIGHT, content, mode="shrink")


def _participant_story(report: ParticipantReport, styles: _Styles) -> list[Flowable]:
    story: list[Flowable] = [
        _text("Participant report", styles.title),
        _text(f"{report.study_code} – {report.study_name}", styles.body),
        Spacer(1, 4 * mm),
        _text("Participant", styles.heading),
    ]
    identity = [
        ["Participant code", report.participant_code],
        ["Study", f"{report.study_code} – {report.study_name}"],
        ["Site", report.site or "No site"],
        ["Status", report.status],
        ["Enrolled", _when(report.enrollment_date)],
    ]
    if report.withdrawn_at is not None:
        identity.append(["Withdrawn", _when(report.withdrawn_at)])
    if report.contact_included:
        identity.append(["Email", report.email or "–"])
        identity.append(["Phone", report.phone or "–"])
    story.append(_table(identity, styles, [40 * mm, FRAME_WIDTH - 40 * mm], header=False))
    if not report.contact_included:
        story.append(_text("Contact details are not included in this report.", styles.small))

    story.append(_text("Consent", styles.heading))
    if report.consents:
        active = [c for c in report.consents if c.withdrawn_at is None]
        state = "consent in force" if active else "consent withdrawn"
        story.append(_labelled("State:", state, styles))
        rows: list[list[object]] = [
            ["Form", "Version", "Language", "Signer", "Signed", "Withdrawn"]
        ]
        rows.extend(
            [
                c.form_title,
                c.form_version,
                c.language,
                c.signer_role,
                _when(c.signed_at),
                _when(c.withdrawn_at),
            ]
            for c in report.consents
        )
        widths = [46 * mm, 17 * mm, 19 * mm, 22 * mm, 35 * mm]
        story.append(_table(rows, styles, [*widths, FRAME_WIDTH - sum(widths)]))
    else:
        story.append(_labelled("State:", "no consent recorded", styles))

    story.append(_text("Sessions and tasks", styles.heading))
    tasks = [task for section in report.domains for task in section.tasks]
    story.append(
        _text(
            f"{report.sessions} session(s), {report.sessions_completed} completed; "
            f"{len(tasks)} task(s) in {len(report.domains)} domain(s), one page each below.",
            styles.body,
        )
    )
    if tasks:
        rows = [["Task", "Domain", "Visits", "Flags", "Scorer version(s)"]]
        rows.extend(
            [
                f"{task.name} ({task.task})",
                section.title,
                len(task.points),
                len(task.flags),
                ", ".join(task.scorer_versions),
            ]
            for section in report.domains
            for task in section.tasks
        )
        widths = [58 * mm, 34 * mm, 14 * mm, 14 * mm]
        story.append(_table(rows, styles, [*widths, FRAME_WIDTH - sum(widths)]))
    for section in report.domains:
        story.append(PageBreak())
        story.append(_domain_page(section, styles))
    return story


# --------------------------------------------------------------------------------- study report


def enrollment_chart(report: StudyReport, styles: _Styles) -> Drawing:
    width, height = FRAME_WIDTH, 62 * mm
    drawing = Drawing(width, height)
    _chart_title(drawing, "Participants enrolled (cumulative, by site)", styles)
    enrollment = report.enrollment
    chart = HorizontalLineChart()
    chart.x, chart.y = 30, 28
    chart.width, chart.height = width - 150, height - 44
    series = list(enrollment.by_site.items())
    chart.data = [tuple(counts) for _, counts in series]
    chart.categoryAxis.categoryNames = enrollment.periods
    chart.categoryAxis.labels.angle = 30
    chart.categoryAxis.labels.boxAnchor = "ne"
    high = max((max(counts) for _, counts in series), default=1)
    _count_axis(chart, high)
    _axis_fonts(chart, styles)
    legend = Legend()
    legend.x, legend.y = width - 110, height - 20
    legend.fontName, legend.fontSize = styles.regular, 7
    legend.alignment = "right"
    legend.columnMaximum = 10
    pairs = []
    for index, (label, _) in enumerate(series):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        chart.lines[index].strokeColor = color
        chart.lines[index].strokeWidth = 1.5
        chart.lines[index].symbol = makeMarker("FilledCircle", size=2.5)
        pairs.append((color, _short(label, 22)))
    legend.colorNamePairs = pairs
    drawing.add(chart)
    drawing.add(legend)
    return drawing


def adherence_chart(report: StudyReport, styles: _Styles) -> Drawing:
    width, height = FRAME_WIDTH, 52 * mm
    drawing = Drawing(width, height)
    _chart_title(drawing, "Visit adherence by site (completed / due, %)", styles)
    chart = VerticalBarChart()
    chart.x, chart.y = 30, 26
    chart.width, chart.height = width - 40, height - 40
    chart.data = [tuple((row.adherence or 0.0) * 100 for row in report.sites)]
    chart.categoryAxis.categoryNames = [_short(row.label, 20) for row in report.sites]
    chart.categoryAxis.labels.angle = 15
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.valueMin, chart.valueAxis.valueMax = 0, 100
    chart.valueAxis.valueStep = 20
    chart.bars[0].fillColor = SERIES_COLORS[2]
    chart.bars[0].strokeColor = None
    _axis_fonts(chart, styles)
    drawing.add(chart)
    return drawing


def histogram_chart(item: Histogram, styles: _Styles, width: float, height: float) -> Drawing:
    drawing = Drawing(width, height)
    unit = f" ({item.unit})" if item.unit and item.unit != "proportion" else ""
    _chart_title(drawing, f"{item.name}: {item.metric}{unit}", styles)
    drawing.add(
        String(
            4,
            height - 20,
            f"n = {item.n}, median = {_value(item.median, item.unit)}",
            fontName=styles.regular,
            fontSize=6.5,
            fillColor=colors.grey,
        )
    )
    chart = VerticalBarChart()
    chart.x, chart.y = 28, 24
    chart.width, chart.height = width - 36, height - 50
    chart.data = [tuple(item.counts)]
    scale = 100 if item.unit == "proportion" else 1
    names = [_value(edge * scale) for edge in item.edges[:-1]]
    chart.categoryAxis.categoryNames = [
        name if index % 2 == 0 else "" for index, name in enumerate(names)
    ]
    chart.categoryAxis.labels.angle = 30
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.groupSpacing = 1
    chart.barSpacing = 0
    _count_axis(chart, max(item.counts))
    chart.bars[0].fillColor = SERIES_COLORS[0]
    chart.bars[0].strokeColor = colors.white
    _axis_fonts(chart, styles, 6)
    drawing.add(chart)
    return drawing


def _study_story(report: StudyReport, styles: _Styles) -> list[Flowable]:
    story: list[Flowable] = [
        _text("Study report", styles.title),
        _text(f"{report.study_code} – {report.study_name} ({report.study_status})", styles.body),
    ]
    if report.site_scope is not None:
        story.append(_labelled("Site:", f"{report.site_scope} only", styles))
    story.append(
        _text(
            f"{report.participants} participant(s), {report.sessions} session(s), "
            f"{len(report.sites)} site row(s).",
            styles.body,
        )
    )
    story.append(_text("Enrollment by site over time", styles.heading))
    if report.enrollment.periods:
        story.append(enrollment_chart(report, styles))
    else:
        story.append(_text("No participant is enrolled yet.", styles.small))

    story.append(_text("Visit completion and adherence", styles.heading))
    rows: list[list[object]] = [
        ["Site", "Participants", "Visits completed", "Visits due", "Adherence"]
    ]
    rows.extend(
        [
            row.label,
            row.participants,
            row.visits_completed,
            row.visits_due,
            "–" if row.adherence is None else f"{row.adherence * 100:.1f} %",
        ]
        for row in report.sites
    )
    widths = [66 * mm, 26 * mm, 30 * mm, 24 * mm]
    story.append(_table(rows, styles, [*widths, FRAME_WIDTH - sum(widths)]))
    story.append(
        _text(
            "Due: visits whose window has closed, plus those completed early; cancelled visits "
            "count nowhere (as on the dashboard).",
            styles.small,
        )
    )
    if any(row.adherence is not None for row in report.sites):
        story.append(adherence_chart(report, styles))
    else:
        story.append(_text("No visit is due yet.", styles.small))

    story.append(PageBreak())
    story.append(_text("Data-quality flags by site", styles.heading))
    story.append(
        _text(
            "Tasks received from each site's participants, and how many carried each validity "
            "flag (a task counts once per code), over the whole study.",
            styles.body,
        )
    )
    codes = report.flag_codes
    site_rows = [row for row in report.sites if row.tasks or row.label != "No site"]
    if codes:
        rows = [["Site", "Tasks", *codes]]
        for row in site_rows:
            cells: list[object] = [row.label, row.tasks]
            for code in codes:
                count = row.flags.get(code, 0)
                share = f" ({count / row.tasks * 100:.0f} %)" if row.tasks else ""
                cells.append(f"{count}{share}")
            rows.append(cells)
        first = 44 * mm
        rest = (FRAME_WIDTH - first - 14 * mm) / len(codes)
        story.append(_table(rows, styles, [first, 14 * mm, *[rest] * len(codes)]))
        story.append(_text("What the flags mean", styles.subheading))
        story.extend(
            Paragraph(
                f"<b>{escape(code)}</b>: {escape(general_sentence(code))}",
                styles.bullet,
                bulletText="•",
            )
            for code in codes
        )
    else:
        tasks = sum(row.tasks for row in site_rows)
        story.append(_text(f"No validity flag on any of the {tasks} task(s).", styles.body))

    story.append(PageBreak())
    story.append(_text("Distribution of each task's main metric", styles.heading))
    if report.histograms:
        width = FRAME_WIDTH / 2 - 2
        drawings = [histogram_chart(item, styles, width, 60 * mm) for item in report.histograms]
        grid = [drawings[i : i + 2] for i in range(0, len(drawings), 2)]
        if len(grid[-1]) == 1:
            grid[-1].append(Spacer(1, 1))
        table = Table(grid, colWidths=[width + 2, width + 2], hAlign="LEFT")
        table.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0)]))
        story.append(table)
    else:
        story.append(_text("No task has been scored yet.", styles.body))
    return story


# ---------------------------------------------------------------------------------- documents


def _page_decorator(label: str, generated_at: datetime) -> Callable[[Canvas, Any], None]:
    regular = fonts().regular

    def draw(canvas: Canvas, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(colors.grey)
        # drawString prints its text as given: no markup to escape here.
        canvas.drawString(MARGIN, MARGIN / 2, _short(label, 90))
        canvas.drawRightString(
            PAGE_WIDTH - MARGIN,
            MARGIN / 2,
            f"Generated {_when(generated_at)} · page {document.page}",
        )
        canvas.restoreState()

    return draw


def _build(story: list[Flowable], title: str, footer: str, generated_at: datetime) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 4 * mm,
        title=title,
        author="Metricis",
        invariant=True,
    )
    decorate = _page_decorator(footer, generated_at)
    document.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


def render_participant_report(report: ParticipantReport) -> bytes:
    styles = _Styles()
    return _build(
        _participant_story(report, styles),
        f"Participant report {report.participant_code}",
        f"{report.study_code} · participant {report.participant_code}",
        report.generated_at,
    )


def render_study_report(report: StudyReport) -> bytes:
    styles = _Styles()
    scope = f" · {report.site_scope}" if report.site_scope else ""
    return _build(
        _study_story(report, styles),
        f"Study report {report.study_code}",
        f"{report.study_code} · study report{scope}",
        report.generated_at,
    )
