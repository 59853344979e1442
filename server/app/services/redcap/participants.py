"""Importing participants from a REDCap project: each record becomes a participant (its record
id the participant's code), created or updated, with a report of what became of every record.

New participants are enrolled exactly as one enrolled by hand (`create_participant`: the same
rules, the same audit event, `participant.enrolled` announced, visits planned); existing ones get
the mapped fields that differ (`update_participant`, visits moved as for a manual change). A
record that cannot be imported (a record id that is not a valid participant code, a value the
study refuses, a withdrawn participant) is skipped with the reason; the others still go in, each
in a savepoint of the request's transaction.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.errors import DomainError, ValidationFailedError
from app.core.security import FieldEncryptor
from app.models.participant import Participant, ParticipantStatus
from app.models.redcap import RedcapProject
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.participants import ParticipantFields, create_participant, update_participant
from app.services.principals import StaffPrincipal
from app.services.redcap import client
from app.services.redcap.projects import get_project

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The participant fields a REDCap field may fill.
IMPORTABLE_FIELDS = ("enrollment_date", "language", "timezone")
MAX_RECORDS = 5_000


class RowStatus(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ImportRequest:
    site_id: uuid.UUID | None = None  # which project: a site's own, else the study's
    event: str | None = None
    filter_field: str | None = None
    filter_value: str | None = None
    field_mapping: Mapping[str, str] = field(default_factory=dict)  # participant field -> REDCap
    records: Sequence[str] | None = None  # only these records (a Data Entry Trigger)


@dataclass(frozen=True, slots=True)
class ImportedRow:
    record: str
    status: RowStatus
    participant_id: uuid.UUID | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    rows: list[ImportedRow]

    def count(self, status: RowStatus) -> int:
        return sum(1 for row in self.rows if row.status is status)


def _refused(reason: str, message: str) -> ValidationFailedError:
    return ValidationFailedError(message, details={"reason": reason})


def _merge_rows(rows: Sequence[Mapping[str, str]], id_field: str) -> dict[str, dict[str, str]]:
    """One entry per record, in REDCap's order: the first non-empty value of each field over
    the record's events."""
    merged: dict[str, dict[str, str]] = {}
    for row in rows:
        record = str(row.get(id_field, "")).strip()
        if not record:
            continue
        values = merged.setdefault(record, {})
        for name, value in row.items():
            if value != "" and name not in values:
                values[name] = value
    return merged


def _fields_of(values: Mapping[str, str], mapping: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for target, source in mapping.items():
        value = values.get(source, "").strip()
        if not value:
            continue
        if target == "enrollment_date":
            try:
                found[target] = date.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"'{source}' is not a date (YYYY-MM-DD): {value!r}") from exc
        else:
            found[target] = value
    return found


def _changes(participant: Participant, wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in wanted.items() if getattr(participant, name) != value}


async def fetch_records(
    settings: Settings, project: RedcapProject, token: str, request: ImportRequest
) -> list[dict[str, str]]:
    fields = [project.record_id_field, *dict.fromkeys(request.field_mapping.values())]
    filter_logic = None
    if request.filter_field is not None:
        escaped = (request.filter_value or "").replace("\\", "\\\\").replace("'", "\\'")
        filter_logic = f"[{request.filter_field}] = '{escaped}'"
    try:
        return await asyncio.to_thread(
            client.export_records,
            project.api_url,
            token,
            settings.REDCAP_TIMEOUT_SECONDS,
            fields=fields,
            records=request.records,
            events=[request.event] if request.event else None,
            filter_logic=filter_logic,
        )
    except client.RedcapCallError as exc:
        raise _refused(
            "REDCAP_UNAVAILABLE" if exc.failure is not client.Failure.REDCAP else "REDCAP_ERROR",
            f"The records could not be exported from REDCap: {exc.message}",
        ) from exc


async def import_participants(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    request: ImportRequest,
) -> ImportResult:
    project = await get_project(session, principal, study_id, request.site_id)
    try:
        token = encryptor.decrypt(project.token_encrypted)
    except ValueError as exc:
        raise _refused(
            "TOKEN_UNREADABLE",
            "The stored token cannot be decrypted with ENCRYPTION_KEYS; save it again",
        ) from exc
    rows = await fetch_records(settings, project, token, request)
    merged = _merge_rows(rows, project.record_id_field)
    if len(merged) > MAX_RECORDS:
        raise _refused(
            "TOO_MANY_RECORDS",
            f"REDCap returned {len(merged)} records; import at most {MAX_RECORDS} at once "
            "(narrow it with an event or a filter)",
        )
    existing = {
        participant.participant_code: participant
        for participant in await session.scalars(
            select(Participant).where(
                Participant.study_id == study_id,
                Participant.participant_code.in_(list(merged)),
            )
        )
    }
    results: list[ImportedRow] = []
    for record, values in merged.items():
        results.append(
            await _import_one(
                session,
                settings,
                encryptor,
                context,
                principal,
                study_id,
                project,
                request,
                record,
                values,
                existing.get(record),
            )
        )
    result = ImportResult(results)
    await record_about(
        session,
        context,
        AuditSubject.configuration("redcap_project", project.id, study_id),
        "redcap.import_participants",
        after={
            "records": len(results),
            "created": result.count(RowStatus.CREATED),
            "updated": result.count(RowStatus.UPDATED),
            "skipped": result.count(RowStatus.SKIPPED),
            "event": request.event,
            "filter_field": request.filter_field,
            "records_requested": list(request.records) if request.records else None,
        },
    )
    return result


async def _import_one(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    project: RedcapProject,
    request: ImportRequest,
    record: str,
    values: Mapping[str, str],
    participant: Participant | None,
) -> ImportedRow:
    if not CODE_PATTERN.match(record):
        return ImportedRow(
            record, RowStatus.SKIPPED, message="The record id is not a valid participant code"
        )
    try:
        wanted = _fields_of(values, request.field_mapping)
    except ValueError as exc:
        return ImportedRow(record, RowStatus.SKIPPED, message=str(exc))
    if participant is not None:
        if participant.status is ParticipantStatus.WITHDRAWN:
            return ImportedRow(
                record, RowStatus.SKIPPED, participant.id, "The participant has withdrawn"
            )
        changes = _changes(participant, wanted)
        if not changes:
            return ImportedRow(record, RowStatus.SKIPPED, participant.id, "Nothing to change")
        try:
            async with session.begin_nested():
                await update_participant(
                    session,
                    settings,
                    encryptor,
                    context,
                    principal,
                    participant.id,
                    ParticipantFields(**changes),
                    set(changes),
                    "Imported from REDCap",
                )
        except DomainError as exc:
            return ImportedRow(record, RowStatus.SKIPPED, participant.id, exc.message)
        return ImportedRow(record, RowStatus.UPDATED, participant.id)
    try:
        async with session.begin_nested():
            created, _ = await create_participant(
                session,
                settings,
                encryptor,
                context,
                principal,
                study_id,
                ParticipantFields(
                    participant_code=record,
                    site=str(project.site_id) if project.site_id else None,
                    **wanted,
                ),
            )
    except DomainError as exc:
        return ImportedRow(record, RowStatus.SKIPPED, message=exc.message)
    return ImportedRow(record, RowStatus.CREATED, created.id)
