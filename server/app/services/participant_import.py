"""CSV import of participants: a report for every row; all rows or none.

Every row is checked with the rules of single enrollment (`services.participants.create_participant`
and `schemas.participants.ParticipantCreate`): code format and uniqueness, site of the study (and
the caller's own site for site-scoped members), email syntax, phone format, one of the study's
languages, an IANA time zone, no `withdrawn` status. Nothing is written unless every row passes.
Valid files are inserted with one multi-row INSERT and recorded by one audit event that lists the
created participants; contact details are encrypted (and the email blind-indexed) exactly as
`create_participant` does it. The file format and the report are described in
docs/participants-import-and-links.md, CSV import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import ConflictError, PayloadTooLargeError, ValidationFailedError
from app.core.security import FieldEncryptor
from app.models.audit import AuditCategory
from app.models.participant import Participant, ParticipantActor, ParticipantStatus
from app.models.study import Site, Study
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.outbox.announce import announce_participants_imported
from app.services.participants import email_index, valid_timezone
from app.services.policy import Capability, StudyAccess, study_access
from app.services.principals import StaffPrincipal
from app.services.references import match_site
from app.services.schedules.lifecycle import ParticipantDates, generate_visits_for_imported
from app.services.schedules.timing import local_date

IMPORT_COLUMNS: tuple[str, ...] = (
    "participant_id",
    "site",
    "email",
    "phone",
    "enrollment_date",
    "status",
    "actor",
    "language",
    "timezone",
    "anchor_date",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("participant_id",)
# Well below the application's 10 MiB body limit; 50,000 typical rows take about 4 MiB.
MAX_IMPORT_BYTES = 8 * 1024 * 1024
MAX_IMPORT_ROWS = 50_000

# The rules of app/schemas/participants.py (ParticipantCreate), applied per row.
PARTICIPANT_CODE_MAX_LENGTH = 64
PARTICIPANT_CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
PHONE_MAX_LENGTH = 32
PHONE_PATTERN = re.compile(r"\+?[0-9 ()-]{4,32}")
LANGUAGE_MAX_LENGTH = 16
TIMEZONE_MAX_LENGTH = 64
ISO_DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
IMPORTABLE_STATUSES: tuple[ParticipantStatus, ...] = (
    ParticipantStatus.SCREENED,
    ParticipantStatus.ENROLLED,
    ParticipantStatus.COMPLETED,
)
DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True, slots=True)
class RowError:
    field: str | None  # the CSV column, or None for the row as a whole
    message: str


@dataclass(frozen=True, slots=True)
class _Fields:
    """A valid row, normalized: what gets inserted (before encryption)."""

    participant_code: str
    site_id: uuid.UUID | None
    site_code: str | None
    email: str | None
    phone: str | None
    enrollment_date: date | None
    status: ParticipantStatus
    actor: ParticipantActor
    language: str
    timezone: str
    anchor_date: date | None


@dataclass(slots=True)
class ImportRow:
    row: int  # 1 for the first data row
    line: int  # line of the file where the row starts (the header is line 1)
    participant_code: str | None
    errors: list[RowError] = field(default_factory=list)
    fields: _Fields | None = None

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "line": self.line,
            "participant_id": self.participant_code,
            "status": "valid" if self.valid else "invalid",
            "errors": [{"field": e.field, "message": e.message} for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class ImportReport:
    dry_run: bool
    rows: Sequence[ImportRow]
    created: int = 0

    @property
    def total_rows(self) -> int:
        return len(self.rows)

    @property
    def invalid_rows(self) -> int:
        return sum(1 for row in self.rows if not row.valid)

    @property
    def valid(self) -> bool:
        return self.invalid_rows == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "valid": self.valid,
            "total_rows": self.total_rows,
            "created": self.created,
            "rows": [row.as_dict() for row in self.rows],
        }


@dataclass(frozen=True, slots=True)
class CsvRecord:
    row: int
    line: int
    cells: dict[str, str]
    has_extra_values: bool


@dataclass(frozen=True, slots=True)
class ParsedCsv:
    columns: tuple[str, ...]
    records: list[CsvRecord]


def _file_error(message: str, **details: Any) -> ValidationFailedError:
    return ValidationFailedError(message, details=details)


def _delimiter(text: str) -> str:
    """Comma, or the semicolon or tab of spreadsheets set to some European locales."""
    first_line = text.split("\n", 1)[0]
    counts = {delimiter: first_line.count(delimiter) for delimiter in DELIMITERS}
    best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > 0 else ","


def parse_participant_csv(content: bytes) -> ParsedCsv:
    """Header and data rows; ValidationFailedError (422) for problems with the file as a whole."""
    try:
        # utf-8-sig drops the byte order mark that spreadsheet programs write.
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_error(
            "The file is not UTF-8 text; save it as 'CSV UTF-8'", byte_offset=exc.start
        ) from exc
    if "\x00" in text:
        # UTF-16 without a byte order mark decodes as "UTF-8" full of NULs; nor can NULs be stored.
        raise _file_error(
            "The file contains NUL characters, so it is not UTF-8 text (UTF-16?);"
            " save it as 'CSV UTF-8'",
            byte_offset=content.index(b"\x00"),
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    columns: tuple[str, ...] | None = None
    records: list[CsvRecord] = []
    line = 1
    try:
        for cells in reader:
            start_line, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # blank lines, and rows of empty cells left by spreadsheets
            if columns is None:
                columns = _header(cells)
                continue
            if len(records) >= MAX_IMPORT_ROWS:
                raise _file_error(
                    f"The file has more than {MAX_IMPORT_ROWS} rows; split it into several imports",
                    max_rows=MAX_IMPORT_ROWS,
                )
            records.append(
                CsvRecord(
                    row=len(records) + 1,
                    line=start_line,
                    cells={
                        name: cells[index].strip() if index < len(cells) else ""
                        for index, name in enumerate(columns)
                    },
                    has_extra_values=any(cell.strip() for cell in cells[len(columns) :]),
                )
            )
    except csv.Error as exc:
        raise _file_error(
            f"The file is not valid CSV near line {reader.line_num}", line=reader.line_num
        ) from exc
    if columns is None:
        raise _file_error("The file is empty", required_columns=list(REQUIRED_COLUMNS))
    if not records:
        raise _file_error("The file has a header but no participant rows")
    return ParsedCsv(columns=columns, records=records)


def _header(cells: list[str]) -> tuple[str, ...]:
    names = [cell.strip().lower() for cell in cells]
    while names and not names[-1]:
        names.pop()  # empty trailing columns, as spreadsheets export them
    unknown = [
        name or f"(column {index + 1} has no name)"
        for index, name in enumerate(names)
        if name not in IMPORT_COLUMNS
    ]
    if unknown:
        raise _file_error(
            "Unknown columns: " + ", ".join(unknown),
            unknown_columns=unknown,
            allowed_columns=list(IMPORT_COLUMNS),
        )
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise _file_error(
            "Columns appear more than once: " + ", ".join(duplicated),
            duplicated_columns=duplicated,
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise _file_error(
            "Required columns are missing: " + ", ".join(missing),
            missing_columns=missing,
            allowed_columns=list(IMPORT_COLUMNS),
        )
    return tuple(names)


@dataclass(frozen=True, slots=True)
class _StudyRules:
    study: Study
    access: StudyAccess
    sites: Sequence[Site]
    sites_by_id: dict[uuid.UUID, Site]
    languages: dict[str, str]  # case-folded -> the study's spelling
    existing_codes: frozenset[str]
    now: datetime

    def site(self, reference: str) -> Site | None:
        return match_site(self.sites, reference)


def _validate(record: CsvRecord, rules: _StudyRules, first_row_of: dict[str, int]) -> ImportRow:
    cells = record.cells
    errors: list[RowError] = []

    def error(column: str | None, message: str) -> None:
        errors.append(RowError(column, message))

    code = cells.get("participant_id", "")
    if not code:
        error("participant_id", "The participant code is required")
    elif len(code) > PARTICIPANT_CODE_MAX_LENGTH:
        error("participant_id", f"At most {PARTICIPANT_CODE_MAX_LENGTH} characters")
    elif not PARTICIPANT_CODE_PATTERN.fullmatch(code):
        error(
            "participant_id",
            "Use letters, digits, '.', '_' and '-', starting with a letter or a digit",
        )
    else:
        if code in first_row_of:
            error("participant_id", f"Duplicate code in the file: also on row {first_row_of[code]}")
        else:
            first_row_of[code] = record.row
        if code in rules.existing_codes:
            error("participant_id", "A participant with this code already exists in the study")

    scope_site = rules.sites_by_id.get(rules.access.site_id) if rules.access.site_id else None
    site: Site | None = scope_site
    if site_reference := cells.get("site", ""):
        site = rules.site(site_reference)
        if site is None:
            error("site", f"Unknown site '{site_reference}' for this study")
        elif rules.access.site_id is not None and site.id != rules.access.site_id:
            error("site", "You can only enroll participants at your own site")

    email: str | None = None
    if raw_email := cells.get("email", ""):
        try:
            email = validate_email(raw_email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            error("email", str(exc))

    phone = cells.get("phone", "") or None
    if phone is not None and (len(phone) > PHONE_MAX_LENGTH or not PHONE_PATTERN.fullmatch(phone)):
        error("phone", "Use 4 to 32 digits, spaces, '(', ')' or '-', with an optional leading '+'")

    enrollment_date = _iso_date(cells, "enrollment_date", error)
    anchor_date = _iso_date(cells, "anchor_date", error)

    status = ParticipantStatus.ENROLLED
    if raw_status := cells.get("status", "").lower():
        if raw_status == ParticipantStatus.WITHDRAWN.value:
            error("status", "Withdrawn participants cannot be imported; withdraw them after import")
        elif raw_status not in {s.value for s in IMPORTABLE_STATUSES}:
            error("status", "Use one of: " + ", ".join(s.value for s in IMPORTABLE_STATUSES))
        else:
            status = ParticipantStatus(raw_status)

    actor = ParticipantActor.PATIENT
    if raw_actor := cells.get("actor", "").lower():
        if raw_actor not in {a.value for a in ParticipantActor}:
            error("actor", "Use one of: " + ", ".join(a.value for a in ParticipantActor))
        else:
            actor = ParticipantActor(raw_actor)

    supported = rules.study.supported_languages or []
    language = cells.get("language", "") or (supported or ["en"])[0]
    study_language = rules.languages.get(language.casefold())
    if len(language) > LANGUAGE_MAX_LENGTH or study_language is None:
        error(
            "language",
            f"'{language[:LANGUAGE_MAX_LENGTH]}' is not one of the study's languages"
            f" ({', '.join(supported) or 'none configured'})",
        )
    timezone = cells.get("timezone", "") or (site.timezone if site else rules.study.timezone)
    if len(timezone) > TIMEZONE_MAX_LENGTH or not valid_timezone(timezone):
        error("timezone", f"'{timezone[:TIMEZONE_MAX_LENGTH]}' is not an IANA time zone")

    if record.has_extra_values:
        error(None, "The row has more values than the header has columns")

    row = ImportRow(row=record.row, line=record.line, participant_code=code or None, errors=errors)
    if not errors:
        assert study_language is not None
        row.fields = _Fields(
            participant_code=code,
            site_id=site.id if site else None,
            site_code=site.code if site else None,
            email=email,
            phone=phone,
            # Enrolled today in the participant's own calendar, as single enrollment does.
            enrollment_date=enrollment_date
            or (local_date(rules.now, timezone) if status is ParticipantStatus.ENROLLED else None),
            status=status,
            actor=actor,
            language=study_language,
            timezone=timezone,
            anchor_date=anchor_date,
        )
    return row


def _iso_date(
    cells: dict[str, str], column: str, error: Callable[[str | None, str], None]
) -> date | None:
    raw = cells.get(column, "")
    if not raw:
        return None
    if ISO_DATE_PATTERN.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    error(column, "Use an ISO date, YYYY-MM-DD")
    return None


async def _study_rules(session: AsyncSession, access: StudyAccess) -> _StudyRules:
    study = await session.get(Study, access.study_id)
    assert study is not None  # study_access found it
    sites = (await session.scalars(select(Site).where(Site.study_id == study.id))).all()
    # One query for the duplicate check: every code of the study (no bind-parameter limits).
    existing = await session.scalars(
        select(Participant.participant_code).where(Participant.study_id == study.id)
    )
    return _StudyRules(
        study=study,
        access=access,
        sites=sites,
        sites_by_id={site.id: site for site in sites},
        languages={lang.casefold(): lang for lang in study.supported_languages or []},
        existing_codes=frozenset(existing.all()),
        now=utcnow(),
    )


def validate_rows(parsed: ParsedCsv, rules: _StudyRules) -> list[ImportRow]:
    first_row_of: dict[str, int] = {}
    return [_validate(record, rules, first_row_of) for record in parsed.records]


def _insert_values(
    settings: Settings,
    encryptor: FieldEncryptor,
    study_id: uuid.UUID,
    fields: _Fields,
    now: datetime,
) -> dict[str, Any]:
    # The same encryption and blind index as services.participants._set_contact.
    return {
        "id": uuid.uuid4(),
        "study_id": study_id,
        "participant_code": fields.participant_code,
        "site_id": fields.site_id,
        "email_encrypted": encryptor.encrypt(fields.email) if fields.email else None,
        "email_index": email_index(settings, fields.email) if fields.email else None,
        "phone_encrypted": encryptor.encrypt(fields.phone) if fields.phone else None,
        "enrollment_date": fields.enrollment_date,
        "status": fields.status,
        "actor": fields.actor,
        "language": fields.language,
        "timezone": fields.timezone,
        "anchor_date": fields.anchor_date,
        "created_at": now,
        "updated_at": now,
    }


async def import_participants(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    content: bytes,
    *,
    dry_run: bool,
) -> ImportReport:
    """Check every row; unless dry_run, insert them all. 422 with the report if any is invalid."""
    access = await study_access(session, principal, study_id)
    access.require(Capability.EDIT_PARTICIPANTS)
    if len(content) > MAX_IMPORT_BYTES:
        raise PayloadTooLargeError(
            f"The file exceeds the import limit of {MAX_IMPORT_BYTES // (1024 * 1024)} MiB;"
            " split it into several imports",
            details={"limit_bytes": MAX_IMPORT_BYTES},
        )
    parsed = parse_participant_csv(content)
    rules = await _study_rules(session, access)
    rows = validate_rows(parsed, rules)
    report = ImportReport(dry_run=dry_run, rows=rows)
    if not report.valid:
        raise ValidationFailedError(
            f"{report.invalid_rows} of {report.total_rows} rows are invalid; nothing was imported",
            details=report.as_dict(),
        )
    if dry_run:
        return report

    now = utcnow()
    values = [
        _insert_values(settings, encryptor, study_id, row.fields, now)
        for row in rows
        if row.fields is not None
    ]
    try:
        await session.execute(insert(Participant), values)
    except IntegrityError as exc:
        # Another request enrolled one of these codes since the duplicate check.
        raise ConflictError(
            "A participant code of the file was enrolled meanwhile; nothing was imported",
            details={"field": "participant_id"},
        ) from exc
    # Enrollment makes visits, for imported participants as for one enrolled alone.
    visits = await generate_visits_for_imported(
        session,
        study_id,
        [
            ParticipantDates(
                id=v["id"],
                study_id=study_id,
                timezone=v["timezone"],
                enrollment_date=v["enrollment_date"],
                anchor_date=v["anchor_date"],
            )
            for v in values
            if v["status"] is ParticipantStatus.ENROLLED
        ],
        now,
    )
    await announce_participants_imported(session, study_id, values)
    await record_about(
        session,
        context,
        AuditSubject(AuditCategory.DATA, "study", study_id, study_id),
        "participant.import",
        after={**_import_summary(rows, values, content), "visits_created": len(visits.created)},
    )
    return ImportReport(dry_run=False, rows=rows, created=len(values))


def _import_summary(
    rows: Sequence[ImportRow], values: Sequence[dict[str, Any]], content: bytes
) -> dict[str, Any]:
    """Counts and the created participants: never contact details."""
    fields = [row.fields for row in rows if row.fields is not None]
    return {
        "rows": len(rows),
        "created": len(values),
        "file_sha256": hashlib.sha256(content).hexdigest(),
        "file_bytes": len(content),
        "by_status": dict(Counter(f.status.value for f in fields)),
        "by_site": dict(Counter(f.site_code or "" for f in fields)),
        "with_email": sum(1 for f in fields if f.email),
        "with_phone": sum(1 for f in fields if f.phone),
        # Participant code -> id: where each imported participant came from.
        "participants": {v["participant_code"]: str(v["id"]) for v in values},
    }
