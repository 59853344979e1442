"""Pushing one completed session to REDCap: the outbox destination of kind `redcap`.

`prepare` (in the claim's transaction) reads the project's configuration as it is now, decrypts
the token and builds the record: the record id field holds the participant's code, the mapped
scores their fields and, in a longitudinal project, `redcap_event_name` the event the session's
visit maps to. `send` imports it through PyCap in a worker thread. A record is keyed by
participant and event, and imported with overwrite behaviour `normal`, so a session pushed
twice (a retry whose first answer was lost, a redelivery) writes the same values again, never a
second record.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.outbox import AttemptOutcome, DestinationKind, OutboxDelivery
from app.models.redcap import RedcapProject
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
    record: dict[str, str]

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


async def build_record(
    session: AsyncSession, project: RedcapProject, payload: dict[str, object]
) -> dict[str, str]:
    values = mapped_values(payload, project.field_mapping)
    if not values:
        raise RecordError("None of the session's scores is mapped to a REDCap field")
    record = {project.record_id_field: str(payload["participant_code"])}
    visit_id = payload.get("visit_id")
    event_name = await _event_name(session, project, str(visit_id) if visit_id else None)
    if event_name is not None:
        record[EVENT_NAME_FIELD] = event_name
    record.update(values)
    return record


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


async def send_record(job: RedcapJob, settings: Settings) -> AttemptResult:
    """One import; never raises (every failure is an outcome of the attempt)."""
    started = time.monotonic()
    try:
        await asyncio.to_thread(
            client.import_records, job.url, job.token, [job.record], settings.REDCAP_TIMEOUT_SECONDS
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
            record = await build_record(session, project, claimed.event.payload)
        except RecordError as exc:
            return AttemptResult(AttemptOutcome.CONFIGURATION_ERROR, error=str(exc))
        return RedcapJob(claimed.delivery_id, project.api_url, token, record)

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
