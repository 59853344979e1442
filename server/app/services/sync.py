"""Offline sync (docs/sync.md): the manifest a device works from, and its uploaded batches.

One service, two doors: a `session` item goes through the same `start_session`,
`accept_submission` and `close_session` as the online routes (the caller's access checked once,
by the start), a `consent` item through `sign_consent`, a `cat` item (an adaptive test run on
the device) through `item_banks.sessions.apply_offline`, which rescores it. Each item runs in
a transaction of its own, so one bad item never sinks the others; replaying a batch changes
nothing. Decisions are written up in docs/sync.md.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import UnknownModuleError, get_module
from app.core.clock import clock_offset_seconds, utcnow
from app.core.errors import ConflictError, DomainError
from app.core.json_values import unstorable_errors
from app.core.logging import get_logger
from app.db.concurrent_writes import is_unique_violation
from app.db.session import transaction_scope
from app.models.assessment import SessionStatus
from app.models.battery import Battery
from app.models.consent import ConsentRecord
from app.models.item_bank import ItemBank
from app.schemas.assessments import SubmitRequest
from app.schemas.item_banks import CatRulesRead, ItemRead
from app.schemas.modules import ModuleRead
from app.schemas.sync import (
    SYNC_ITEM,
    CatItem,
    ConsentItem,
    ItemError,
    ItemStatus,
    ManifestBattery,
    ManifestConsent,
    ManifestConsentForm,
    ManifestItemBank,
    ManifestParticipant,
    ManifestStudy,
    ManifestTask,
    SessionItem,
    SyncItemResult,
    SyncManifest,
)
from app.scoring.irt import t_score
from app.services.assessment_sessions import close_session, start_session
from app.services.audit import AuditContext
from app.services.batteries import get_battery_version
from app.services.consent.gate import consent_state
from app.services.consent.signing import SignatureInput, sign_consent, signing_participant
from app.services.item_banks import results as cat_results
from app.services.item_banks import sessions as cat_sessions
from app.services.item_banks.banks import bank_version
from app.services.item_banks.cat import SCORER_VERSION, Response
from app.services.modules import module_read
from app.services.participants import resolve_participant
from app.services.policy import Capability
from app.services.principals import Principal
from app.services.schedules.visits import manifest_visits
from app.services.session_store import SessionStore
from app.services.source_storage import SourceStorage
from app.services.submissions import accept_submission

logger = get_logger(__name__)

# Attempts of an item that keeps colliding with concurrent writers of the same rows.
ITEM_ATTEMPTS = 3

ItemSessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]
"""Opens the database session one item runs in (`app.state.sessionmaker` in production)."""


# ---------------------------------------------------------------------------------------------
# Manifest


@dataclass(frozen=True, slots=True)
class Manifest:
    content: SyncManifest
    etag: str  # quoted, strong: '"<sha256 of the canonical JSON>"'


def _module_read(module_id: str) -> ModuleRead | None:
    try:
        return module_read(get_module(module_id))
    except UnknownModuleError:
        return None


async def manifest_item_banks(session: AsyncSession, study_id: uuid.UUID) -> list[ManifestItemBank]:
    """The snapshot of every bank the study uses: its non-archived banks, at their current
    version (a bank belongs to one study, docs/item-banks.md)."""
    banks = (
        await session.scalars(
            select(ItemBank)
            .where(ItemBank.study_id == study_id, ItemBank.archived.is_(False))
            .order_by(ItemBank.name, ItemBank.id)
        )
    ).all()
    snapshots: list[ManifestItemBank] = []
    for bank in banks:
        version = await bank_version(session, bank)
        snapshots.append(
            ManifestItemBank(
                id=bank.id,
                name=version.name,
                description=version.description,
                version=version.version,
                task=cat_results.task_name(bank.id),
                scorer_version=SCORER_VERSION,
                rules=CatRulesRead.model_validate(version.rules),
                items=[
                    ItemRead(
                        id=item["id"],
                        a=item["a"],
                        b=item["b"],
                        model="2pl" if len(item["b"]) == 1 else "grm",
                        domain=item["domain"],
                        text=item["text"],
                        options=item["options"],
                    )
                    for item in version.items
                ],
            )
        )
    return snapshots


def manifest_etag(content: SyncManifest) -> str:
    canonical = orjson.dumps(content.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return f'"{hashlib.sha256(canonical).hexdigest()}"'


async def build_manifest(
    session: AsyncSession,
    principal: Principal,
    participant_ref: str | None,
    study_id: uuid.UUID | None,
) -> Manifest:
    """What the participant's device needs offline; only that participant's own data.

    `participant_ref` is the UUID, or the code within `study_id`."""
    participant = await resolve_participant(
        session, principal, participant_ref, Capability.READ, study_id=study_id
    )
    state = await consent_state(session, participant)
    study = state.study
    batteries = (
        await session.scalars(
            select(Battery)
            .where(Battery.study_id == study.id, Battery.archived.is_(False))
            .order_by(Battery.name, Battery.id)
        )
    ).all()
    battery_reads: list[ManifestBattery] = []
    module_ids: set[str] = set()
    for battery in batteries:
        _, version = await get_battery_version(session, battery.id)
        battery_reads.append(
            ManifestBattery(
                id=battery.id,
                name=version.name,
                description=version.description,
                version=version.version,
                estimated_minutes=version.estimated_minutes,
                tasks=[ManifestTask(**task) for task in version.tasks],
            )
        )
        module_ids.update(str(task["module_id"]) for task in version.tasks)
    modules = [m for m in (_module_read(mid) for mid in sorted(module_ids)) if m is not None]
    form = state.current_form
    record = state.active_record
    content = SyncManifest(
        participant=ManifestParticipant(
            id=participant.id,
            code=participant.participant_code,
            study_id=participant.study_id,
            status=participant.status,
            language=participant.language,
            actor=participant.actor,
            timezone=participant.timezone,
        ),
        study=ManifestStudy.model_validate(study),
        batteries=battery_reads,
        modules=modules,
        consent=ManifestConsent(
            required=state.required,
            current_form=ManifestConsentForm.model_validate(form) if form is not None else None,
            signed_version=record.form_version if record else None,
            needs_reconsent=state.needs_reconsent,
            withdrawn=state.withdrawn,
        ),
        visits=await manifest_visits(session, participant),
        item_banks=await manifest_item_banks(session, study.id),
    )
    return Manifest(content=content, etag=manifest_etag(content))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """`If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `W/` is ignored."""
    if not if_none_match:
        return False
    candidates = [part.strip() for part in if_none_match.split(",")]
    return any(c == "*" or c.removeprefix("W/") == etag for c in candidates)


# ---------------------------------------------------------------------------------------------
# Batch


@dataclass(frozen=True, slots=True)
class _Applied:
    status: ItemStatus
    result: dict[str, Any]


async def _apply_session(
    session: AsyncSession,
    store: SessionStore,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    item: SessionItem,
    offset: float | None,
) -> _Applied:
    # The caller's access is checked once, by the start; submitting and ending then act on the
    # session it returned.
    started = await start_session(
        session,
        store,
        context,
        principal,
        participant_ref=item.participant_id,
        battery_id=item.battery_id,
        battery_version=item.battery_version,
        visit_id=item.visit_id,
        session_id=item.session_id,
        device=item.device,
        started_at=item.started_at,
        clock_offset_seconds=offset,
    )
    record = started.session
    if not started.created and (
        record.battery_version != item.battery_version or record.visit_id != item.visit_id
    ):
        raise ConflictError(
            "This session was started with another battery version or visit",
            details={
                "session_id": str(record.id),
                "battery_version": record.battery_version,
                "visit_id": str(record.visit_id) if record.visit_id else None,
            },
        )
    submits = bool(item.trials or item.task_summaries)
    if not started.created and (submits or item.status is not None):
        # As on the online routes, writes to a session hold its row lock (one created by this
        # item is not visible to anyone else yet).
        await session.refresh(record, with_for_update=True)
    changed = started.created
    receipt: dict[str, Any] | None = None
    if submits:
        # Validated already, item by item (per-task limits included): no second pass.
        payload = SubmitRequest.model_construct(
            session_id=record.id,
            task_summaries=item.task_summaries,
            trials=item.trials,
            device_info=item.device_info,
            completed_at=item.ended_at,
            client_time=item.client_time,
        )
        outcome = await accept_submission(
            session, store, storage, context, record, payload, clock_offset_seconds=offset
        )
        receipt = outcome.receipt
        changed = changed or outcome.created
    if item.status is not None:
        before = record.status
        await close_session(session, store, context, record, SessionStatus(item.status))
        if record.status != before:
            changed = True
            if item.ended_at is not None:
                # The device knows when the session ended; the sync only reports it later.
                record.ended_at = max(record.started_at, min(item.ended_at, utcnow()))
    return _Applied(
        ItemStatus.ACCEPTED if changed else ItemStatus.DUPLICATE,
        {"session_id": str(record.id), "status": record.status, "receipt": receipt},
    )


async def _replayed_signature(
    session: AsyncSession, participant_id: uuid.UUID, item: ConsentItem
) -> ConsentRecord | None:
    """The record an earlier upload of this signature created, if any.

    Same participant, form version, signer role and signer name. A withdrawn record still
    counts unless the device says the signature was given after that withdrawal: replaying an
    old batch must never consent again a participant who has withdrawn.
    """
    records = (
        await session.scalars(
            select(ConsentRecord)
            .where(
                ConsentRecord.participant_id == participant_id,
                ConsentRecord.form_id == item.form_id,
                ConsentRecord.signer_role == item.signer_role,
            )
            .order_by(ConsentRecord.signed_at.desc(), ConsentRecord.id)
        )
    ).all()
    name = item.signer_name.strip()
    for record in records:
        if record.signer_name != name:
            continue
        if record.withdrawn_at is None:
            return record
        if item.signed_at is None or item.signed_at <= record.withdrawn_at:
            return record
    return None


async def _apply_consent(
    session: AsyncSession, context: AuditContext, principal: Principal, item: ConsentItem
) -> _Applied:
    participant, _ = await signing_participant(
        session, principal, item.participant_id, item.form_id
    )
    # The lock `sign_consent` takes, taken before looking for the replay: a concurrent copy of
    # this item waits for the first one's commit, then finds its record (`duplicate`).
    await session.refresh(participant, with_for_update=True)
    existing = await _replayed_signature(session, participant.id, item)
    status = ItemStatus.DUPLICATE
    if existing is None:
        existing = await sign_consent(
            session,
            context,
            principal,
            SignatureInput(
                participant_ref=str(participant.id),
                form_id=item.form_id,
                signer_name=item.signer_name,
                signer_role=item.signer_role,
                answers=item.answers,
                signature_image=item.signature_image,
                witness_name=item.witness_name,
                device_signed_at=item.signed_at,
            ),
        )
        await session.flush()
        status = ItemStatus.ACCEPTED
    return _Applied(
        status,
        {
            "record_id": str(existing.id),
            "form_version": existing.form_version,
            "signed_at": existing.signed_at.isoformat(),
            "device_signed_at": existing.device_signed_at.isoformat()
            if existing.device_signed_at
            else None,
        },
    )


async def _apply_cat(
    session: AsyncSession,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    item: CatItem,
) -> _Applied:
    state, created = await cat_sessions.apply_offline(
        session,
        storage,
        context,
        principal,
        cat_sessions.OfflineTest(
            cat_session_id=item.cat_session_id,
            assessment_session_id=item.session_id,
            bank_id=item.bank_id,
            bank_version=item.bank_version,
            responses=[Response(r.item_id, r.response) for r in item.responses],
            device_theta=item.theta,
            device_se=item.se,
            started_at=item.started_at,
            ended_at=item.ended_at,
        ),
    )
    test = state.cat
    return _Applied(
        ItemStatus.ACCEPTED if created else ItemStatus.DUPLICATE,
        {
            "cat_session_id": str(test.id),
            "session_id": str(test.assessment_session_id),
            "status": test.status.value,
            "theta": test.theta,
            "se": test.se,
            "t_score": t_score(test.theta),
            "n_items": test.n_items,
            "stop_reason": test.stop_reason,
            "flags": state.result.flags if state.result is not None else [],
        },
    )


def _validation_error(exc: ValidationError) -> ItemError:
    # Like the API's 422 body: field, message and type, never the submitted values.
    return ItemError(
        code="VALIDATION_ERROR",
        message="The item is not valid",
        details={
            "errors": [
                {
                    "field": ".".join(str(part) for part in error["loc"]),
                    "message": error["msg"],
                    "type": error["type"],
                }
                for error in exc.errors(include_input=False, include_url=False)
            ]
        },
    )


def _answer(
    index: int,
    raw: object,
    status: ItemStatus,
    error: ItemError | None = None,
    result: dict[str, Any] | None = None,
) -> SyncItemResult:
    return SyncItemResult(
        index=index,
        id=_raw_field(raw, "id"),
        type=_raw_field(raw, "type"),
        status=status,
        error=error,
        result=result,
    )


def _raw_field(raw: object, name: str) -> str | None:
    if isinstance(raw, dict):
        value = raw.get(name)
        if isinstance(value, str):
            return value[:128]
    return None


async def _apply_item(
    sessions: ItemSessionFactory,
    store: SessionStore,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    item: SessionItem | ConsentItem | CatItem,
    offset: float | None,
) -> _Applied:
    """One item in a transaction of its own, run again when it collided with a concurrent writer.

    A unique violation means another request stored the same row meanwhile and has committed: run
    again, the item reads that row and answers `duplicate` or `conflict`. The writes known to race
    (a session's creation) do not collide at all; this covers any other.
    """
    attempts_left = ITEM_ATTEMPTS
    while True:
        try:
            return await _apply_item_once(
                sessions, store, storage, context, principal, item, offset
            )
        except sa_exc.IntegrityError as exc:
            attempts_left -= 1
            if not is_unique_violation(exc):
                raise
            if attempts_left == 0:
                raise ConflictError(
                    "Other requests were storing the same data at the same time; send the item "
                    "again",
                    details={"reason": "CONCURRENT_WRITE"},
                ) from exc
            logger.info("sync_item_collided", item_type=item.type)


async def _apply_item_once(
    sessions: ItemSessionFactory,
    store: SessionStore,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    item: SessionItem | ConsentItem | CatItem,
    offset: float | None,
) -> _Applied:
    async with sessions() as session, transaction_scope(session):
        if isinstance(item, SessionItem):
            return await _apply_session(session, store, storage, context, principal, item, offset)
        if isinstance(item, CatItem):
            return await _apply_cat(session, storage, context, principal, item)
        return await _apply_consent(session, context, principal, item)


async def apply_batch(
    sessions: ItemSessionFactory,
    store: SessionStore,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    items: Sequence[object],
    *,
    client_time: datetime | None,
    received_at: datetime,
) -> list[SyncItemResult]:
    """Apply each item in order, each in its own transaction, and answer each."""
    results: list[SyncItemResult] = []
    for index, raw in enumerate(items):
        unstorable = unstorable_errors(raw, "item")
        if unstorable:
            error = ItemError(
                code="VALIDATION_ERROR",
                message="The item holds a value that cannot be stored",
                details={"errors": unstorable},
            )
            results.append(_answer(index, raw, ItemStatus.REJECTED, error))
            continue
        try:
            item = SYNC_ITEM.validate_python(raw)
        except ValidationError as exc:
            results.append(_answer(index, raw, ItemStatus.REJECTED, _validation_error(exc)))
            continue
        offset = clock_offset_seconds(item.client_time or client_time, received_at)
        try:
            applied = await _apply_item(sessions, store, storage, context, principal, item, offset)
        except DomainError as exc:
            error = ItemError(code=exc.code, message=exc.message, details=exc.details)
            status = ItemStatus.CONFLICT if exc.status_code == 409 else ItemStatus.REJECTED
            results.append(_answer(index, raw, status, error))
        except (
            sa_exc.OperationalError,
            sa_exc.InterfaceError,
            sa_exc.TimeoutError,
            ConnectionError,
            TimeoutError,
        ):
            # The database is away, not the item at fault: the whole request fails (503) and the
            # device sends the batch again; what committed before answers `duplicate` then.
            raise
        except sa_exc.DataError:
            logger.info("sync_item_refused_by_database", index=index, item_type=item.type)
            results.append(
                _answer(
                    index,
                    raw,
                    ItemStatus.REJECTED,
                    ItemError(
                        code="VALIDATION_ERROR",
                        message=(
                            "The item contains a value the database cannot store "
                            "(for example a NUL character or an out-of-range number)"
                        ),
                    ),
                )
            )
        except Exception:
            logger.exception("sync_item_failed", index=index, item_type=item.type)
            results.append(
                _answer(
                    index,
                    raw,
                    ItemStatus.REJECTED,
                    ItemError(code="INTERNAL_ERROR", message="An unexpected error occurred"),
                )
            )
        else:
            results.append(_answer(index, raw, applied.status, result=applied.result))
    return results
