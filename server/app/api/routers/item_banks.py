"""IRT item banks, their versions, stateless adaptive testing and stored adaptive tests
(docs/item-banks.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile, status

from app.api.dependencies import (
    ActorContextDep,
    AnyActorContextDep,
    AnyPrincipal,
    CurrentUser,
    PageParamsDep,
    SessionDep,
    StorageDep,
)
from app.api.openapi import error_responses
from app.models.item_bank import ItemBank, ItemBankVersion
from app.schemas.common import DB_INTEGER_MAX, Page
from app.schemas.item_banks import (
    CatAnswerIn,
    CatNextItemRead,
    CatNextRead,
    CatRulesRead,
    CatSessionRead,
    CatSessionStart,
    CatStepRead,
    ItemBankCreate,
    ItemBankRead,
    ItemBankVersionCreate,
    ItemRead,
    ResponsesIn,
    ScoreRead,
)
from app.scoring.irt import t_score
from app.services.item_banks import banks as service
from app.services.item_banks import cat, results, sessions

router = APIRouter(prefix="/item-banks", tags=["item-banks"])


def _item(stored: dict[str, Any]) -> ItemRead:
    return ItemRead(
        id=stored["id"],
        a=stored["a"],
        b=stored["b"],
        model="2pl" if len(stored["b"]) == 1 else "grm",
        domain=stored["domain"],
        text=stored["text"],
        options=stored["options"],
    )


def _read(bank: ItemBank, version: ItemBankVersion) -> ItemBankRead:
    return ItemBankRead(
        id=bank.id,
        study_id=bank.study_id,
        name=version.name,
        description=version.description,
        version=version.version,
        current_version=bank.current_version,
        archived=bank.archived,
        rules=CatRulesRead.model_validate(version.rules),
        items=[_item(item) for item in version.items],
        version_created_at=version.created_at,
        version_created_by=version.created_by,
    )


def _responses(body: ResponsesIn) -> list[cat.Response]:
    return [cat.Response(item_id=r.item_id, response=r.response) for r in body.responses]


@router.get("", responses=error_responses(404))
async def list_item_banks(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    include_archived: bool = False,
) -> Page[ItemBankRead]:
    """Banks of a study (or of every study the caller can see) at their current version.
    `sort` = `name` (default) or `created_at`."""
    rows, pagination = await service.list_banks(
        session, principal, page, study_id=study_id, include_archived=include_archived
    )
    return Page[ItemBankRead](data=[_read(b, v) for b, v in rows], pagination=pagination)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409))
async def create_item_bank(
    body: ItemBankCreate, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> ItemBankRead:
    """Version 1 of a new bank; every item and rule is checked and every problem named."""
    bank, version = await service.create_bank(
        session,
        context,
        principal,
        body.study_id,
        service.BankContent(
            name=body.name, description=body.description, items=body.items, rules=body.rules
        ),
    )
    return _read(bank, version)


@router.post("/import", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409))
async def import_item_bank(
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    file: Annotated[
        UploadFile,
        File(
            description="JSON `{name?, description?, rules?, items}`, or CSV with columns id, "
            "a, b (or b1, b2, ...), domain, text_<lang>, options_<lang> (labels split by `|`)"
        ),
    ],
    study_id: Annotated[uuid.UUID | None, Form()] = None,
    name: Annotated[str | None, Form(max_length=255)] = None,
    bank_id: Annotated[uuid.UUID | None, Form()] = None,
) -> ItemBankRead:
    """A new bank in `study_id` from a file, or, with `bank_id`, the bank's next version. CSV
    problems are named `rows.<line>.<column>` (the header is line 1)."""
    data = await file.read(service.MAX_IMPORT_BYTES + 1)
    content = service.parse_import(data, file.filename, file.content_type)
    if name is not None:
        content = service.BankContent(name, content.description, content.items, content.rules)
    if bank_id is not None:
        bank, version = await service.add_version(session, context, principal, bank_id, content)
    else:
        bank, version = await service.create_bank(
            session, context, principal, service.require_study_id(study_id), content
        )
    return _read(bank, version)


@router.get("/{bank_id:uuid}", responses=error_responses(404))
async def get_item_bank(
    bank_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=DB_INTEGER_MAX)] = None,
) -> ItemBankRead:
    """The bank at its current version, or at `?version=`."""
    bank, row = await service.get_bank(session, principal, bank_id, version)
    return _read(bank, row)


@router.post("/{bank_id:uuid}/versions", responses=error_responses(404, 409))
async def add_item_bank_version(
    bank_id: uuid.UUID,
    body: ItemBankVersionCreate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> ItemBankRead:
    bank, version = await service.add_version(
        session,
        context,
        principal,
        bank_id,
        service.BankContent(
            name=body.name, description=body.description, items=body.items, rules=body.rules
        ),
        reason=body.reason,
    )
    return _read(bank, version)


@router.delete(
    "/{bank_id:uuid}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409)
)
async def archive_item_bank(
    bank_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
    reason: Annotated[str | None, Query(max_length=1000)] = None,
) -> None:
    """Archive: the bank leaves the lists; its versions stay for rescoring."""
    await service.archive_bank(session, context, principal, bank_id, reason=reason)


@router.post("/{bank_id:uuid}/cat/next", responses=error_responses(404))
async def cat_next(
    bank_id: uuid.UUID, body: ResponsesIn, principal: CurrentUser, session: SessionDep
) -> CatNextRead:
    """The estimate after the responses so far and the next item, or `finished` with the reason."""
    answer = await cat.next_item(session, principal, bank_id, _responses(body), body.version)
    step = answer.step
    stored = (
        next(i for i in answer.version.items if i["id"] == step.next_item.id)
        if step.next_item is not None
        else None
    )
    return CatNextRead(
        next_item=_item(stored) if stored is not None else None,
        theta=step.estimate.theta,
        se=step.estimate.se,
        t_score=t_score(step.estimate.theta),
        n_items=len(body.responses),
        finished=step.finished,
        reason=step.reason,
        version=answer.version.version,
    )


@router.post("/{bank_id:uuid}/score", responses=error_responses(404))
async def score_responses(
    bank_id: uuid.UUID, body: ResponsesIn, principal: CurrentUser, session: SessionDep
) -> ScoreRead:
    """EAP estimate, its SE and the T-score of the responses."""
    result = await cat.score(session, principal, bank_id, _responses(body), body.version)
    return ScoreRead(
        theta=result.estimate.theta,
        se=result.estimate.se,
        t_score=result.t_score,
        n_items=result.n_items,
        version=result.version.version,
        scorer_version=cat.SCORER_VERSION,
    )


def _session_read(state: sessions.CatState) -> CatSessionRead:
    test = state.cat
    pending = state.pending
    return CatSessionRead(
        id=test.id,
        bank_id=test.bank_id,
        bank_version=test.bank_version,
        study_id=test.study_id,
        participant_id=test.participant_id,
        session_id=test.assessment_session_id,
        origin=test.origin.value,
        status=test.status.value,
        theta=test.theta,
        se=test.se,
        t_score=t_score(test.theta),
        n_items=test.n_items,
        stop_reason=test.stop_reason,
        next_item_id=pending.item_id if pending is not None else None,
        device_theta=test.device_theta,
        device_se=test.device_se,
        started_at=test.started_at,
        finished_at=test.finished_at,
        task=results.task_name(test.bank_id),
        task_result_id=test.task_result_id,
        scorer_version=state.result.scorer_version if state.result is not None else None,
        flags=state.result.flags if state.result is not None else [],
        steps=[CatStepRead.model_validate(step) for step in state.steps],
    )


@router.post(
    "/{bank_id:uuid}/sessions",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409),
)
async def start_cat_session(
    bank_id: uuid.UUID,
    body: CatSessionStart,
    principal: AnyPrincipal,
    session: SessionDep,
    context: AnyActorContextDep,
) -> CatSessionRead:
    """Start an adaptive test of the assessment session's participant on the bank's current
    version (pinned for the whole test); the first item is given at once. The participant's
    token, or staff who may edit the participant."""
    state = await sessions.start(session, context, principal, bank_id, body.session_id)
    return _session_read(state)


@router.get("/{bank_id:uuid}/sessions/{cat_session_id:uuid}")
async def get_cat_session(
    bank_id: uuid.UUID, cat_session_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> CatSessionRead:
    """The test's state: estimate, status, stop reason, every step with the estimate after it."""
    return _session_read(await sessions.get(session, principal, bank_id, cat_session_id))


@router.get("/{bank_id:uuid}/sessions/{cat_session_id:uuid}/next")
async def next_cat_item(
    bank_id: uuid.UUID, cat_session_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> CatNextItemRead:
    """The item to answer now with its texts and options (the same until it is answered), or
    `finished` with the stop reason."""
    state = await sessions.get_for_answering(session, principal, bank_id, cat_session_id)
    pending = state.pending
    return CatNextItemRead(
        cat_session_id=state.cat.id,
        status=state.cat.status.value,
        finished=pending is None,
        position=pending.position if pending is not None else None,
        item=_item(state.item(pending.item_id)) if pending is not None else None,
        theta=state.cat.theta,
        se=state.cat.se,
        n_items=state.cat.n_items,
        stop_reason=state.cat.stop_reason,
    )


@router.post(
    "/{bank_id:uuid}/sessions/{cat_session_id:uuid}/answers",
    responses=error_responses(404, 409),
)
async def answer_cat_item(
    bank_id: uuid.UUID,
    cat_session_id: uuid.UUID,
    body: CatAnswerIn,
    principal: AnyPrincipal,
    session: SessionDep,
    storage: StorageDep,
    context: AnyActorContextDep,
) -> CatSessionRead:
    """Answer the item given. The answer is stored with the estimate after it; then the next
    item is given, or the test finishes and its result is stored in the assessment session.
    The same answer again is answered with the current state; 409 for another answer to an
    answered item, an item other than the one given, or a finished test."""
    state = await sessions.answer(
        session, storage, context, principal, bank_id, cat_session_id, body.item_id, body.response
    )
    return _session_read(state)
