"""Stored adaptive tests of a participant: online step by step, or uploaded from a device
(docs/item-banks.md, adaptive sessions).

A test runs inside an assessment session of the participant, on the bank version current when
it started (pinned). Online, the server gives one item at a time: each item given is a step row,
and its answer stores the estimate after it; the stopping rules of the version end the test.
Offline, the device runs the same algorithm on the manifest's snapshot and uploads the responses;
the server replays them with its own estimator. Either way the finished test is stored as a task
result of the assessment session (`results.store_result`).

Who: the participant's own token, or staff who may edit the participant (`edit_participants`,
the capability that starts sessions and submits data); reading the state needs `read`. Locks:
the assessment session's row first, then the test's, as every writer of a session's results.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, ValidationFailedError
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult
from app.models.audit import AuditCategory
from app.models.item_bank import (
    CatSession,
    CatSessionOrigin,
    CatSessionStatus,
    CatSessionStep,
    ItemBank,
    ItemBankVersion,
)
from app.scoring.irt import Estimate, eap_path, stop_reason
from app.services.assessment_sessions import load_session_for
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.item_banks.banks import bank_version
from app.services.item_banks.cat import Response, paired_responses, step_for
from app.services.item_banks.content import cat_rules, irt_items
from app.services.item_banks.results import DeviceEstimate, store_result
from app.services.participants import participant_row_for
from app.services.policy import Capability
from app.services.principals import Principal, StaffPrincipal
from app.services.source_storage import SourceStorage

# An offline test the bank's rules had not stopped when the device ended it.
STOP_ENDED_ON_DEVICE = "ended_on_device"
MISSING = "Adaptive session not found"


@dataclass(frozen=True, slots=True)
class CatState:
    """A test with its steps in order, its bank version and, once finished, its task result."""

    cat: CatSession
    steps: list[CatSessionStep]
    version: ItemBankVersion
    result: TaskResult | None

    @property
    def pending(self) -> CatSessionStep | None:
        """The item given and not answered yet (None once finished)."""
        if self.cat.status is CatSessionStatus.FINISHED or not self.steps:
            return None
        last = self.steps[-1]
        return last if last.response is None else None

    def item(self, item_id: str) -> dict[str, Any]:
        return next(item for item in self.version.items if item["id"] == item_id)


@dataclass(frozen=True, slots=True)
class OfflineTest:
    """A test a device ran on the manifest's snapshot, as its sync item gives it."""

    cat_session_id: uuid.UUID
    assessment_session_id: uuid.UUID
    bank_id: uuid.UUID
    bank_version: int
    responses: Sequence[Response]
    device_theta: float
    device_se: float
    started_at: datetime | None
    ended_at: datetime | None


def _subject(cat: CatSession) -> AuditSubject:
    return AuditSubject(
        AuditCategory.ASSESSMENT, "cat_session", cat.id, cat.study_id, cat.participant_id
    )


def _invalid(field: str, message: str) -> ValidationFailedError:
    return ValidationFailedError(
        "The answer does not fit the item bank",
        details={"errors": [{"field": field, "message": message}]},
    )


async def _state(session: AsyncSession, cat: CatSession) -> CatState:
    steps = (
        await session.scalars(
            select(CatSessionStep)
            .where(CatSessionStep.cat_session_id == cat.id)
            .order_by(CatSessionStep.position)
        )
    ).all()
    version = await session.get(ItemBankVersion, cat.bank_version_id)
    assert version is not None
    result = (
        await session.get(TaskResult, cat.task_result_id)
        if cat.task_result_id is not None
        else None
    )
    return CatState(cat, list(steps), version, result)


async def _bank_of_study(
    session: AsyncSession, bank_id: uuid.UUID, record: AssessmentSession
) -> ItemBank:
    bank = await session.get(ItemBank, bank_id)
    if bank is None or bank.study_id != record.study_id:
        raise NotFoundError("Item bank not found")
    return bank


async def _taken_by(
    session: AsyncSession, record: AssessmentSession, bank_id: uuid.UUID
) -> uuid.UUID | None:
    taken: uuid.UUID | None = await session.scalar(
        select(CatSession.id).where(
            CatSession.assessment_session_id == record.id, CatSession.bank_id == bank_id
        )
    )
    return taken


def _already_tested(record: AssessmentSession, cat_id: uuid.UUID) -> ConflictError:
    return ConflictError(
        "This assessment session already has an adaptive test on this item bank",
        details={"session_id": str(record.id), "cat_session_id": str(cat_id)},
    )


async def start(
    session: AsyncSession,
    context: AuditContext,
    principal: Principal,
    bank_id: uuid.UUID,
    assessment_session_id: uuid.UUID,
) -> CatState:
    """A new test on the bank's current version, with its first item given."""
    record = await load_session_for(
        session, principal, assessment_session_id, Capability.EDIT_PARTICIPANTS, lock=True
    )
    bank = await _bank_of_study(session, bank_id, record)
    if bank.archived:
        raise ConflictError("This item bank is archived", details={"reason": "BANK_ARCHIVED"})
    if record.status != SessionStatus.STARTED:
        raise ConflictError(
            f"The assessment session is {record.status}; adaptive tests start in a running one",
            details={"status": record.status},
        )
    taken = await _taken_by(session, record, bank.id)
    if taken is not None:
        raise _already_tested(record, taken)
    version = await bank_version(session, bank)
    first = step_for(bank, version, [])
    assert first.next_item is not None  # a bank has items and max_items is at least 1
    now = utcnow()
    cat = CatSession(
        id=uuid.uuid4(),
        study_id=record.study_id,
        participant_id=record.participant_id,
        assessment_session_id=record.id,
        bank_id=bank.id,
        bank_version_id=version.id,
        bank_version=version.version,
        origin=CatSessionOrigin.ONLINE,
        status=CatSessionStatus.RUNNING,
        theta=first.estimate.theta,
        se=first.estimate.se,
        n_items=0,
        started_at=now,
        started_by_user_id=principal.user_id if isinstance(principal, StaffPrincipal) else None,
    )
    session.add(cat)
    await session.flush()
    session.add(
        CatSessionStep(
            id=uuid.uuid4(),
            cat_session_id=cat.id,
            position=1,
            item_id=first.next_item.id,
            given_at=now,
        )
    )
    await session.flush()
    await record_about(
        session,
        context,
        _subject(cat),
        "cat_session.start",
        after={
            "assessment_session_id": str(record.id),
            "bank_id": str(bank.id),
            "bank_version": version.version,
            "first_item_id": first.next_item.id,
        },
    )
    return await _state(session, cat)


async def get(
    session: AsyncSession,
    principal: Principal,
    bank_id: uuid.UUID,
    cat_session_id: uuid.UUID,
    capability: Capability = Capability.READ,
) -> CatState:
    cat, _ = await participant_row_for(
        session, principal, CatSession, cat_session_id, capability, missing=MISSING
    )
    if cat.bank_id != bank_id:
        raise NotFoundError(MISSING)
    return await _state(session, cat)


async def get_for_answering(
    session: AsyncSession, principal: Principal, bank_id: uuid.UUID, cat_session_id: uuid.UUID
) -> CatState:
    """The test for a caller who may answer it (the item texts are part of running it)."""
    return await get(session, principal, bank_id, cat_session_id, Capability.EDIT_PARTICIPANTS)


async def answer(
    session: AsyncSession,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    bank_id: uuid.UUID,
    cat_session_id: uuid.UUID,
    item_id: str,
    response: int,
) -> CatState:
    """Store the answer to the item given, then give the next item or finish the test. The
    same answer again changes nothing; any other answer to an answered item is a conflict."""
    cat, _ = await participant_row_for(
        session,
        principal,
        CatSession,
        cat_session_id,
        Capability.EDIT_PARTICIPANTS,
        missing=MISSING,
    )
    if cat.bank_id != bank_id:
        raise NotFoundError(MISSING)
    record = await session.get(AssessmentSession, cat.assessment_session_id, with_for_update=True)
    assert record is not None
    await session.refresh(cat, with_for_update=True)
    state = await _state(session, cat)
    items = {item.id: item for item in irt_items(state.version.items)}
    item = items.get(item_id)
    if item is None:
        raise _invalid("item_id", "Not an item of the bank version this test runs on")
    answered = next(
        (s for s in state.steps if s.item_id == item_id and s.response is not None), None
    )
    if answered is not None:
        if answered.response == response:
            return state  # a repeated answer: the state it led to
        raise ConflictError(
            "This item was already answered otherwise",
            details={"item_id": item_id, "response": answered.response},
        )
    if cat.status is CatSessionStatus.FINISHED:
        raise ConflictError(
            "The adaptive test is finished",
            details={"status": cat.status.value, "stop_reason": cat.stop_reason},
        )
    pending = state.pending
    assert pending is not None  # a running test always has its item given
    if pending.item_id != item_id:
        raise ConflictError(
            "This is not the item the test gave",
            details={"reason": "NOT_THE_ITEM_GIVEN", "expected_item_id": pending.item_id},
        )
    if not 0 <= response < item.n_categories:
        raise _invalid("response", f"Must be between 0 and {item.n_categories - 1}")

    now = utcnow()
    pending.response = response
    pending.answered_at = now
    responses = [Response(s.item_id, s.response) for s in state.steps if s.response is not None]
    bank = await session.get(ItemBank, cat.bank_id)
    assert bank is not None
    step = step_for(bank, state.version, responses)
    pending.theta, pending.se = step.estimate.theta, step.estimate.se
    cat.theta, cat.se, cat.n_items = step.estimate.theta, step.estimate.se, len(responses)
    await record_about(
        session,
        context,
        _subject(cat),
        "cat_session.answer",
        after={
            "position": pending.position,
            "item_id": item_id,
            "response": response,
            "theta": step.estimate.theta,
            "se": step.estimate.se,
        },
    )
    if step.finished:
        assert step.reason is not None
        await _finish(
            session, storage, context, record, cat, responses, step.estimate, step.reason, None, now
        )
    else:
        assert step.next_item is not None
        session.add(
            CatSessionStep(
                id=uuid.uuid4(),
                cat_session_id=cat.id,
                position=pending.position + 1,
                item_id=step.next_item.id,
                given_at=now,
            )
        )
    await session.flush()
    return await _state(session, cat)


async def _finish(
    session: AsyncSession,
    storage: SourceStorage,
    context: AuditContext,
    record: AssessmentSession,
    cat: CatSession,
    responses: Sequence[Response],
    estimate: Estimate,
    reason: str,
    device: DeviceEstimate | None,
    at: datetime,
) -> None:
    cat.status = CatSessionStatus.FINISHED
    cat.stop_reason = reason
    cat.finished_at = at
    cat.theta, cat.se, cat.n_items = estimate.theta, estimate.se, len(responses)
    result = await store_result(
        session, storage, record, cat, responses, estimate, device, utcnow()
    )
    cat.task_result_id = result.id
    await session.flush()
    await record_about(
        session,
        context,
        _subject(cat),
        "cat_session.finish",
        after={
            "stop_reason": reason,
            "n_items": len(responses),
            "theta": estimate.theta,
            "se": estimate.se,
            "task": result.task,
            "task_result_id": str(result.id),
            "scorer_version": result.scorer_version,
            "flags": [flag["code"] for flag in result.flags],
        },
    )


def _same_upload(state: CatState, test: OfflineTest) -> bool:
    cat = state.cat
    return (
        cat.origin is CatSessionOrigin.OFFLINE
        and cat.assessment_session_id == test.assessment_session_id
        and cat.bank_id == test.bank_id
        and cat.bank_version == test.bank_version
        and cat.device_theta == test.device_theta
        and cat.device_se == test.device_se
        and [(s.item_id, s.response) for s in state.steps]
        == [(r.item_id, r.response) for r in test.responses]
    )


async def apply_offline(
    session: AsyncSession,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    test: OfflineTest,
) -> tuple[CatState, bool]:
    """Store a test run on a device, rescored by the server: (its state, whether it is new).
    The same upload again answers the stored test; other content under its id is a conflict."""
    record = await load_session_for(
        session, principal, test.assessment_session_id, Capability.EDIT_PARTICIPANTS, lock=True
    )
    existing = await session.get(CatSession, test.cat_session_id)
    if existing is not None:
        if existing.assessment_session_id == record.id:
            state = await _state(session, existing)
            if _same_upload(state, test):
                return state, False
        raise ConflictError(
            "Other data was already stored under this adaptive session id",
            details={"cat_session_id": str(test.cat_session_id)},
        )
    bank = await _bank_of_study(session, test.bank_id, record)
    version = await bank_version(session, bank, test.bank_version)
    if record.status not in (SessionStatus.STARTED, SessionStatus.COMPLETED):
        raise ConflictError(
            f"The assessment session is {record.status}",
            details={"status": record.status},
        )
    taken = await _taken_by(session, record, bank.id)
    if taken is not None:
        raise _already_tested(record, taken)
    items = irt_items(version.items)
    rules = cat_rules(version.rules)
    pairs = paired_responses(items, test.responses)
    if len(pairs) > rules.max_items:
        raise ValidationFailedError(
            "More responses than the bank version's max_items",
            details={
                "errors": [
                    {"field": "responses", "message": f"At most {rules.max_items} responses"}
                ]
            },
        )
    path = eap_path(pairs)
    final = path[-1]
    reason = stop_reason(final, len(pairs), rules, len(items) - len(pairs)) or STOP_ENDED_ON_DEVICE
    now = utcnow()
    ended = min(test.ended_at, now) if test.ended_at is not None else now
    started = min(test.started_at, ended) if test.started_at is not None else ended
    cat = CatSession(
        id=test.cat_session_id,
        study_id=record.study_id,
        participant_id=record.participant_id,
        assessment_session_id=record.id,
        bank_id=bank.id,
        bank_version_id=version.id,
        bank_version=version.version,
        origin=CatSessionOrigin.OFFLINE,
        status=CatSessionStatus.RUNNING,
        theta=final.theta,
        se=final.se,
        n_items=len(pairs),
        device_theta=test.device_theta,
        device_se=test.device_se,
        started_at=started,
        started_by_user_id=principal.user_id if isinstance(principal, StaffPrincipal) else None,
    )
    session.add(cat)
    await session.flush()
    for position, ((item, response), estimate) in enumerate(zip(pairs, path, strict=True), 1):
        session.add(
            CatSessionStep(
                id=uuid.uuid4(),
                cat_session_id=cat.id,
                position=position,
                item_id=item.id,
                response=response,
                theta=estimate.theta,
                se=estimate.se,
                given_at=ended,
                answered_at=ended,
            )
        )
    await session.flush()
    await record_about(
        session,
        context,
        _subject(cat),
        "cat_session.upload",
        after={
            "assessment_session_id": str(record.id),
            "bank_id": str(bank.id),
            "bank_version": version.version,
            "responses": [[r.item_id, r.response] for r in test.responses],
            "device_theta": test.device_theta,
            "device_se": test.device_se,
        },
    )
    device = DeviceEstimate(test.device_theta, test.device_se)
    await _finish(
        session, storage, context, record, cat, test.responses, final, reason, device, ended
    )
    return await _state(session, cat), True
