"""The signed consent form as a PDF (reportlab, A4).

The renderer (`render_consent_pdf`) is pure and synchronous: it receives plain data, never ORM
objects, so callers run it in a worker thread. DejaVu Sans is used when the system has it (Latin,
Greek and Cyrillic scripts); otherwise the PDF standard fonts, which cover Western European
languages only. reportlab takes a noticeable time to import, so only PDF requests load this module.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
)

FONT_DIRECTORIES = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)
_FONT_FILES = {
    "MetricisSans": "DejaVuSans.ttf",
    "MetricisSans-Bold": "DejaVuSans-Bold.ttf",
    "MetricisSans-Oblique": "DejaVuSans-Oblique.ttf",
    "MetricisSans-BoldOblique": "DejaVuSans-BoldOblique.ttf",
    "MetricisMono": "DejaVuSansMono.ttf",
}

SIGNATURE_MAX_WIDTH = 70 * mm
SIGNATURE_MAX_HEIGHT = 30 * mm

ROLE_LABELS = {
    "participant": "Participant",
    "caregiver": "Caregiver",
    "lar": "Legally authorized representative",
    "witness": "Witness",
}


@dataclass(frozen=True, slots=True)
class PdfQuestion:
    text: str
    answer: Any
    kind: str


@dataclass(frozen=True, slots=True)
class ConsentPdfData:
    record_id: str
    study_code: str
    study_name: str
    participant_code: str
    form_title: str
    form_language: str
    form_version: int
    content_hash: str
    content: str
    questions: list[PdfQuestion]
    signer_name: str
    signer_role: str
    witness_name: str | None
    recorded_by: str | None
    signed_at: datetime
    timezone: ZoneInfo
    signature_kind: str | None
    signature_data: bytes | None
    withdrawn_at: datetime | None
    withdrawal_reason: str | None
    generated_at: datetime
    device_signed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Fonts:
    regular: str
    bold: str
    mono: str


_font_lock = threading.Lock()
_fonts: _Fonts | None = None


def _find_font_directory() -> Path | None:
    for directory in FONT_DIRECTORIES:
        if all((directory / name).is_file() for name in _FONT_FILES.values()):
            return directory
    return None


def fonts() -> _Fonts:
    """Register DejaVu once per process when available; the standard fonts otherwise."""
    global _fonts
    with _font_lock:
        if _fonts is None:
            directory = _find_font_directory()
            if directory is None:
                _fonts = _Fonts(regular="Helvetica", bold="Helvetica-Bold", mono="Courier")
            else:
                for name, filename in _FONT_FILES.items():
                    pdfmetrics.registerFont(TTFont(name, str(directory / filename)))
                pdfmetrics.registerFontFamily(
                    "MetricisSans",
                    normal="MetricisSans",
                    bold="MetricisSans-Bold",
                    italic="MetricisSans-Oblique",
                    boldItalic="MetricisSans-BoldOblique",
                )
                _fonts = _Fonts(
                    regular="MetricisSans", bold="MetricisSans-Bold", mono="MetricisMono"
                )
        return _fonts


@dataclass(frozen=True, slots=True)
class _Styles:
    title: ParagraphStyle
    heading: ParagraphStyle
    subheading: ParagraphStyle
    body: ParagraphStyle
    bullet: ParagraphStyle
    small: ParagraphStyle
    mono: ParagraphStyle


def _styles(font: _Fonts) -> _Styles:
    body = ParagraphStyle(
        "body", fontName=font.regular, fontSize=10, leading=13.5, alignment=TA_LEFT, spaceAfter=5
    )
    return _Styles(
        title=ParagraphStyle(
            "title", parent=body, fontName=font.bold, fontSize=16, leading=20, spaceAfter=8
        ),
        heading=ParagraphStyle(
            "heading",
            parent=body,
            fontName=font.bold,
            fontSize=12.5,
            leading=16,
            spaceBefore=8,
            spaceAfter=4,
        ),
        subheading=ParagraphStyle(
            "subheading", parent=body, fontName=font.bold, fontSize=10.5, spaceBefore=4
        ),
        body=body,
        bullet=ParagraphStyle("bullet", parent=body, leftIndent=14, bulletIndent=4, spaceAfter=2),
        small=ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.grey),
        mono=ParagraphStyle("mono", parent=body, fontName=font.mono, fontSize=8.5, leading=11),
    )


# --- Markdown, the subset consent forms use: headings, paragraphs, lists, rules, emphasis ---

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_ORDERED = re.compile(r"^\s*(\d{1,4})[.)]\s+(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_INLINE_RULES = (
    (re.compile(r"`([^`]+)`"), r"<font face='{mono}'>\1</font>"),
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), r"<b>\1</b>"),
    (re.compile(r"__(?=\S)(.+?)(?<=\S)__"), r"<b>\1</b>"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"<i>\1</i>"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"<i>\1</i>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r"\1 (\2)"),
)


def _inline(text: str, font: _Fonts) -> str:
    """Escaped for reportlab's mini-markup, then emphasis, code and links as markup."""
    markup = escape(text)
    for pattern, replacement in _INLINE_RULES:
        markup = pattern.sub(replacement.replace("{mono}", font.mono), markup)
    return markup


def _paragraph(text: str, style: ParagraphStyle, font: _Fonts, **kwargs: Any) -> Paragraph:
    """Markdown inline markup when it parses; the escaped plain text when it does not."""
    try:
        return Paragraph(_inline(text, font), style, **kwargs)
    except ValueError:
        return Paragraph(escape(text), style, **kwargs)


def markdown_flowables(markdown: str, styles: _Styles, font: _Fonts) -> list[Flowable]:
    flowables: list[Flowable] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            flowables.append(_paragraph(" ".join(paragraph), styles.body, font))
            paragraph.clear()

    for raw in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        if not line.strip():
            flush()
            continue
        if _RULE.match(line):
            flush()
            flowables.append(HRFlowable(width="100%", thickness=0.5, color=colors.grey))
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            style = styles.heading if len(heading.group(1)) <= 2 else styles.subheading
            flowables.append(_paragraph(heading.group(2), style, font))
            continue
        bullet = _BULLET.match(line)
        if bullet:
            flush()
            flowables.append(_paragraph(bullet.group(1), styles.bullet, font, bulletText="•"))
            continue
        ordered = _ORDERED.match(line)
        if ordered:
            flush()
            flowables.append(
                _paragraph(ordered.group(2), styles.bullet, font, bulletText=f"{ordered.group(1)}.")
            )
            continue
        paragraph.append(line.strip())
    flush()
    return flowables


# --- The document ---


def _utc(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {local.tzname() or ''} (UTC{offset}, {zone.key})"


def _answer_text(question: PdfQuestion) -> str:
    if question.answer is None:
        return "(not answered)"
    if isinstance(question.answer, bool):
        if question.kind == "checkbox":
            return "Checked" if question.answer else "Not checked"
        return "Yes" if question.answer else "No"
    text = str(question.answer)
    return text.capitalize() if question.kind == "yes_no" else text


def signature_meaning(role: str, signer_name: str, version: int) -> str:
    """What the signature means, by role, as printed on the form."""
    if role == "witness":
        return (
            f"By signing, {signer_name} attests to having witnessed the consent discussion for "
            f"version {version} of this form: the information was explained, questions were "
            "answered, and consent was given freely."
        )
    acting = {
        "participant": "agrees to take part in the study",
        "caregiver": "agrees, as the participant's caregiver, to the participant taking part "
        "in the study",
        "lar": "gives consent, as the participant's legally authorized representative, on the "
        "participant's behalf for the participant to take part in the study",
    }.get(role, "agrees to the participant taking part in the study")
    return (
        f"By signing, {signer_name} confirms having read this consent form (version {version}), or "
        "had it read to them, having had the opportunity to ask questions and have them "
        f"answered, and {acting}, voluntarily. Consent may be withdrawn at any time without "
        "giving a reason. This electronic signature is intended to be the legally binding "
        "equivalent of a handwritten signature."
    )


def _field(label: str, value: str, styles: _Styles) -> Paragraph:
    return Paragraph(f"<b>{escape(label)}:</b> {escape(value)}", styles.body)


def _signature_flowable(data: ConsentPdfData, styles: _Styles) -> Flowable:
    if data.signature_kind is None or data.signature_data is None:
        return Paragraph("No signature image was captured.", styles.body)
    if data.signature_kind != "png":
        return Paragraph(
            "The signature was captured as an SVG drawing, which this document does not "
            "reproduce; it is kept unchanged in the electronic consent record.",
            styles.body,
        )
    try:
        reader = ImageReader(io.BytesIO(data.signature_data))
        width, height = reader.getSize()
        scale = min(SIGNATURE_MAX_WIDTH / width, SIGNATURE_MAX_HEIGHT / height, 1.0)
        image = Image(io.BytesIO(data.signature_data), width=width * scale, height=height * scale)
    except (OSError, ValueError, ZeroDivisionError):
        return Paragraph(
            "The signature image could not be reproduced here; it is kept unchanged in the "
            "electronic consent record.",
            styles.body,
        )
    image.hAlign = "LEFT"
    return image


def _build_story(data: ConsentPdfData, styles: _Styles, font: _Fonts) -> list[Flowable]:
    role = ROLE_LABELS.get(data.signer_role, data.signer_role)
    story: list[Flowable] = [
        Paragraph(escape(f"{data.study_code}: {data.study_name}"), styles.small),
        Paragraph(escape(data.form_title), styles.title),
        _field("Form version", f"{data.form_version} (language: {data.form_language})", styles),
        Paragraph(f"<b>Form SHA-256:</b> {escape(data.content_hash)}", styles.body),
        Paragraph(
            "The SHA-256 hash identifies the exact text of the form version that was signed.",
            styles.small,
        ),
        HRFlowable(width="100%", thickness=0.8, color=colors.black, spaceAfter=6),
    ]
    story.extend(markdown_flowables(data.content, styles, font))
    if data.questions:
        story.append(Paragraph("Answers", styles.heading))
        for question in data.questions:
            story.append(
                KeepTogether(
                    [
                        _paragraph(question.text, styles.subheading, font),
                        Paragraph(escape(_answer_text(question)), styles.body),
                    ]
                )
            )
    signature_block: list[Flowable] = [
        Paragraph("Signature", styles.heading),
        _field("Signed by", data.signer_name, styles),
        _field("Signing as", role, styles),
        _field("Participant", f"{data.participant_code} ({data.study_code})", styles),
    ]
    if data.witness_name:
        signature_block.append(_field("Witness", data.witness_name, styles))
    signature_block.append(
        _field(
            "Recorded by",
            f"{data.recorded_by} (in person)"
            if data.recorded_by
            else "the signer, through their own sign-in",
            styles,
        )
    )
    signature_block.extend(
        [
            _field("Signed (UTC)", _utc(data.signed_at), styles),
            _field("Signed (participant's time)", _local(data.signed_at, data.timezone), styles),
            *(
                [
                    _field(
                        "Signed offline on the device (device clock, UTC)",
                        _utc(data.device_signed_at),
                        styles,
                    )
                ]
                if data.device_signed_at
                else []
            ),
            Spacer(1, 4),
            _signature_flowable(data, styles),
            Spacer(1, 6),
            Paragraph(
                escape(signature_meaning(data.signer_role, data.signer_name, data.form_version)),
                styles.body,
            ),
        ]
    )
    story.append(KeepTogether(signature_block))
    if data.withdrawn_at is not None:
        story.extend(
            [
                Paragraph("Consent withdrawn", styles.heading),
                _field("Withdrawn (UTC)", _utc(data.withdrawn_at), styles),
                _field(
                    "Withdrawn (participant's time)",
                    _local(data.withdrawn_at, data.timezone),
                    styles,
                ),
                _field("Reason", data.withdrawal_reason or "(none given)", styles),
            ]
        )
    return story


def render_consent_pdf(data: ConsentPdfData) -> bytes:
    font = fonts()
    styles = _styles(font)
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Consent: {data.form_title} (v{data.form_version})",
        author="Metricis",
        subject=f"{data.study_code} consent record {data.record_id}",
        creator="Metricis",
    )
    footer = f"Consent record {data.record_id} - generated {_utc(data.generated_at)} - page "

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font.regular, 7.5)
        canvas.setFillColor(colors.grey)
        canvas.drawString(20 * mm, 10 * mm, f"{footer}{doc.page}")
        canvas.restoreState()

    document.build(_build_story(data, styles, font), onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()
