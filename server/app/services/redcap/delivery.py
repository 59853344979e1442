"""Pushing one completed session to REDCap: the outbox destination of kind `redcap`.

`prepare` (in the claim's transaction) reads the project's configuration as it is now, decrypts
the token and builds the record: the record id field holds the participant's code, the mapped
scores their fields and, in a longitudinal project, `redcap_event_name` the event the session's
visit maps to; the fields of a repeating instrument go in a row of their own, as the instance
the session was given at its first push. `send` imports it through PyCap in a worker thread. A
record is keyed by participant and event (and instance), and imported with overwrite behaviour
`normal`, so a session pushed twice (a retry whose first answer was lost, a redelivery) writes
the same values again, never a second record.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.outbox import AttemptOutcome, DestinationKind, OutboxDelivery
from app.models.redcap import RedcapProject, RedcapRepeatInstance
from app.models.schedule import Visit
from app.services.outbox.dispatch import AttemptResult, ClaimedDelivery, Destination
from app.services.redcap import client
from app.services.redcap.mapping import mapped_values

EVENT_NAME_FIELD = "redcap_event_name"


@dataclass(frozen=True, slots=True)
class RedcapJob:
    delivery_id: uuid.UUID
    url: str
    token: str
    records: list[dict[str, str]]

    def __repr__(self) -> str:  # never the token, should a job be logged
        return f"RedcapJob(delivery_id={self.delivery_id}, url={self.url!r})"


class RecordError(Exception):
    """The session cannot become a record with the configuration as it stands."""


async def _event_name(
    session: AsyncSession, project: RedcapProject, visit_id: str | None
) -> str | None:
    if not project.longitudinal:
        return None
    if visit_id is None:
        raise RecordError(
            "The session belongs to no visit, so it has no event in the longitudinal project"
        )
    event_key = await session.scalar(select(Visit.event_key).where(Visit.id == uuid.UUID(visit_id)))
    if event_key is None:
        raise RecordError("The session's visit no longer exists")
    event_name = project.event_mapping.get(event_key)
    if not event_name:
        raise RecordError(f"The visit '{event_key}' has no REDCap event in the event mapping")
    return str(event_name)


REPEAT_INSTRUMENT_FIELD = "redcap_repeat_instrument"
REPEAT_INSTANCE_FIELD = "redcap_repeat_instance"


async def _instance(
    session: AsyncSession,
    project: RedcapProject,
    record_id: str,
    event_name: str,
    instrument: str,
    session_id: uuid.UUID,
) -> int:
    """The instance this session has in a repeating instrument (or event) of the record: the
    one it was given at its first push, else the next free number, kept for later pushes."""
    where = (
        RedcapRepeatInstance.redcap_project_id == project.id,
        RedcapRepeatInstance.record_id == record_id,
        RedcapRepeatInstance.event_name == event_name,
        RedcapRepeatInstance.instrument == instrument,
    )
    given = await session.scalar(
        select(RedcapRepeatInstance.instance).where(
            *where, RedcapRepeatInstance.session_id == session_id
        )
    )
    if given is not None:
        return given
    highest = await session.scalar(select(func.max(RedcapRepeatInstance.instance)).where(*where))
    instance = (highest or 0) + 1
    session.add(
        RedcapRepeatInstance(
            redcap_project_id=project.id,
            record_id=record_id,
            event_name=event_name,
            instrument=instrument,
            session_id=session_id,
            instance=instance,
        )
    )
    await session.flush()
    return instance


async def build_records(
    session: AsyncSession, project: RedcapProject, payload: dict[str, object]
) -> list[dict[str, str]]:
    """The rows one session becomes: the record's plain fields in one row, and the fields of
    each repeating instrument (or of a repeating event) in a row of their own, as an instance
    of it (docs/redcap.md, repeating instruments)."""
    values = mapped_values(payload, project.field_mapping)
    if not values:
        raise RecordError("None of the session's scores is mapped to a REDCap field")
    record_id = str(payload["participant_code"])
    visit_id = payload.get("visit_id")
    event_name = await _event_name(session, project, str(visit_id) if visit_id else None)
    event = event_name or ""
    repeating = {(str(item["event"]), str(item["form"])) for item in project.repeating_forms}
    # Which row each value goes to: None for the plain one, else the repeating instrument
    # ("" when the whole event repeats).
    rows_by_instrument: dict[str | None, dict[str, str]] = {}
    for field_name, value in values.items():
        form = str(project.field_forms.get(field_name, ""))
        if (event, "") in repeating:
            instrument: str | None = ""
        elif form and (event, form) in repeating:
            instrument = form
        else:
            instrument = None
        rows_by_instrument.setdefault(instrument, {})[field_name] = value
    base = {project.record_id_field: record_id}
    if event_name is not None:
        base[EVENT_NAME_FIELD] = event_name
    records: list[dict[str, str]] = []
    if any(instrument is not None for instrument in rows_by_instrument):
        # Instances are numbered per record: one push at a time per project takes the next.
        await session.refresh(project, with_for_update=True)
    session_id = uuid.UUID(str(payload["session_id"]))
    for instrument, fields in sorted(rows_by_instrument.items(), key=lambda item: item[0] or ""):
        row = dict(base)
        if instrument is not None:
            number = await _instance(session, project, record_id, event, instrument, session_id)
            row[REPEAT_INSTRUMENT_FIELD] = instrument
            row[REPEAT_INSTANCE_FIELD] = str(number)
        row.update(fields)
        records.append(row)
    return records


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


async def send_record(job: RedcapJob, settings: Settings) -> AttemptResult:
    """One import; never raises (every failure is an outcome of the attempt)."""
    started = time.monotonic()
    try:
        await asyncio.to_thread(
            client.import_records, job.url, job.token, job.records, settings.REDCAP_TIMEOUT_SECONDS
        )
    except client.RedcapCallError as exc:
        outcome = {
            client.Failure.TIMEOUT: AttemptOutcome.TIMEOUT,
            client.Failure.CONNECTION: AttemptOutcome.CONNECTION_ERROR,
            client.Failure.REDCAP: AttemptOutcome.HTTP_ERROR,
        }[exc.failure]
        return AttemptResult(outcome, exc.status_code, _elapsed_ms(started), exc.message)
    return AttemptResult(AttemptOutcome.DELIVERED, 200, _elapsed_ms(started))


def redcap_destination(settings: Settings, encryptor: FieldEncryptor) -> Destination[RedcapJob]:
    async def prepare(session: AsyncSession, claimed: ClaimedDelivery) -> RedcapJob | AttemptResult:
        project = await session.get(RedcapProject, claimed.redcap_project_id)
        assert project is not None  # deleting a project deletes its deliveries
        try:
            token = encryptor.decrypt(project.token_encrypted)
        except ValueError:
            return AttemptResult(
                AttemptOutcome.CONFIGURATION_ERROR,
                error="The REDCap token cannot be decrypted with ENCRYPTION_KEYS; save it again",
            )
        try:
            records = await build_records(session, project, claimed.event.payload)
        except RecordError as exc:
            return AttemptResult(AttemptOutcome.CONFIGURATION_ERROR, error=str(exc))
        return RedcapJob(claimed.delivery_id, project.api_url, token, records)

    async def send(job: RedcapJob) -> AttemptResult:
        return await send_record(job, settings)

    return Destination(
        kind=DestinationKind.REDCAP,
        # A disabled project's pushes wait until it is enabled again.
        conditions=[
            OutboxDelivery.redcap_project_id.in_(
                select(RedcapProject.id).where(RedcapProject.enabled.is_(True))
            )
        ],
        prepare=prepare,
        send=send,
    )
