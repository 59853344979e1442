"""Assessment sessions and submission (docs/assessments.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.api.dependencies import (
    ActorContextDep,
    AnyActorContextDep,
    AnyPrincipal,
    CurrentUser,
    PageParamsDep,
    ParticipantQuery,
    SessionDep,
    SessionStoreDep,
    StorageDep,
)
from app.api.openapi import error_responses
from app.core.clock import clock_offset_seconds, utcnow
from app.core.errors import NotFoundError, ValidationFailedError
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult
from app.models.participant import Participant
from app.schemas.assessments import (
    BatteryTaskRead,
    FlagRead,
    RescoreResponse,
    SessionBatteryRead,
    SessionEndRequest,
    SessionRead,
    SessionStartRequest,
    SessionStartResponse,
    SubmitReceipt,
    SubmitRequest,
    TaskResultRead,
)
from app.schemas.common import IsoDateTime, Page
from app.services import assessment_sessions as sessions_service
from app.services import submissions as submissions_service
from app.services.participants import participant_filter
from app.services.policy import Capability, require_study_capability

router = APIRouter(tags=["assessments"])


def _task_read(result: TaskResult) -> TaskResultRead:
    return TaskResultRead(
        task=result.task,
        n_trials=result.n_trials,
        scores=result.scores,
        flags=[FlagRead(**flag) for flag in result.flags],
        scorer=result.scorer,
        scorer_version=result.scorer_version,
        accepted_at=result.accepted_at,
        source_sha256=result.source_sha256,
        rescored=len(result.previous_scores),
    )


def _session_read(
    record: AssessmentSession, participant_code: str, tasks: list[TaskResult] | None = None
) -> SessionRead:
    return SessionRead(
        id=record.id,
        study_id=record.study_id,
        participant_id=record.participant_id,
        participant_code=participant_code,
        battery_id=record.battery_id,
        battery_version=record.battery_version,
        visit_id=record.visit_id,
        status=record.status,
        started_at=record.started_at,
        expires_at=record.expires_at,
        ended_at=record.ended_at,
        clock_offset_seconds=record.clock_offset_seconds,
        tasks=[_task_read(t) for t in tasks] if tasks is not None else None,
    )


@router.post(
    "/session/start", status_code=status.HTTP_201_CREATED, responses=error_responses(404, 409)
)
async def start_session(
    body: SessionStartRequest,
    response: Response,
    principal: AnyPrincipal,
    session: SessionDep,
    store: SessionStoreDep,
    context: AnyActorContextDep,
) -> SessionStartResponse:
    """Start (or, with the same client `session_id`, repeat the start of) a session.

    403 `CONSENT_REQUIRED` when consent is missing or must be given again; 409 when the
    participant has withdrawn or the study is not active."""
    started = await sessions_service.start_session(
        session,
        store,
        context,
        principal,
        participant_ref=body.participant_id,
        battery_id=body.battery_id,
        battery_version=body.battery_version,
        visit_id=body.visit_id,
        session_id=body.session_id,
        device=body.device,
        started_at=body.started_at,
        clock_offset_seconds=clock_offset_seconds(body.client_time, utcnow()),
    )
    if not started.created:
        response.status_code = status.HTTP_200_OK
    record, version = started.session, started.version
    return SessionStartResponse(
        session_id=record.id,
        participant_id=record.participant_id,
        battery=SessionBatteryRead(
            id=record.battery_id,
            version=version.version,
            name=version.name,
            tasks=[BatteryTaskRead(**task) for task in version.tasks],
        ),
        started_at=record.started_at,
        expires_at=record.expires_at,
    )


@router.post("/session/end", responses=error_responses(404, 409))
async def end_session(
    body: SessionEndRequest,
    principal: AnyPrincipal,
    session: SessionDep,
    store: SessionStoreDep,
    context: AnyActorContextDep,
) -> SessionRead:
    record = await sessions_service.end_session(
        session, store, context, principal, body.session_id, SessionStatus(body.status)
    )
    participant = await session.get(Participant, record.participant_id)
    assert participant is not None
    return _session_read(record, participant.participant_code)


@router.get("/session/{session_id:uuid}")
async def get_session(
    session_id: uuid.UUID, principal: AnyPrincipal, session: SessionDep
) -> SessionRead:
    record = await sessions_service.load_session_for(session, principal, session_id)
    participant = await session.get(Participant, record.participant_id)
    assert participant is not None
    tasks = list(await sessions_service.task_results(session, record.id))
    return _session_read(record, participant.participant_code, tasks)


@router.get("/sessions", responses=error_responses(404))
async def list_sessions(
    principal: AnyPrincipal,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    participant_id: ParticipantQuery = None,
    status: SessionStatus | None = None,
    start_date: IsoDateTime | None = None,
    end_date: IsoDateTime | None = None,
    include: Annotated[
        Literal["tasks"] | None,
        Query(description="`tasks`: embed each session's task results (scores, flags, scorer)"),
    ] = None,
) -> Page[SessionRead]:
    """Sessions the caller may see; `include=tasks` fills `tasks` as `GET /session/{id}` does,
    with one more query for the whole page."""
    participant = await participant_filter(
        session, principal, participant_id, Capability.READ, study_id=study_id
    )
    rows, pagination = await sessions_service.list_sessions(
        session,
        principal,
        page,
        study_id=study_id,
        participant_id=participant,
        status=status,
        start_date=start_date,
        end_date=end_date,
    )
    tasks = (
        await sessions_service.task_results_of(session, [record.id for record, _ in rows])
        if include == "tasks"
        else {}
    )
    return Page[SessionRead](
        data=[_session_read(record, code, tasks.get(record.id)) for record, code in rows],
        pagination=pagination,
    )


@router.post("/sessions/{session_id:uuid}/rescore")
async def rescore_session(
    session_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    context: ActorContextDep,
) -> RescoreResponse:
    """Recompute every task with the current scorers, keeping the previous results."""
    record = await sessions_service.load_session_for(session, principal, session_id)
    await require_study_capability(session, principal, record.study_id, Capability.CONFIGURE_STUDY)
    tasks = await submissions_service.rescore_session(session, storage, context, record)
    return RescoreResponse(session_id=record.id, rescored=tasks)


def parse_submission(body: bytes) -> SubmitRequest:
    """Validate the body once, straight from bytes (no intermediate dict)."""
    try:
        return SubmitRequest.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_input=False)]
        ) from exc


_SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        # Published in components by create_app (the body is parsed by hand, from bytes).
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitRequest"}}},
    }
}


@router.post(
    "/submit",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_SUBMIT_BODY,
    responses={
        200: {"model": SubmitReceipt, "description": "An exact replay: the original receipt"},
        **error_responses(404, 409),
    },
)
async def submit(
    request: Request,
    response: Response,
    principal: AnyPrincipal,
    session: SessionDep,
    store: SessionStoreDep,
    storage: StorageDep,
    context: AnyActorContextDep,
    x_session_id: Annotated[uuid.UUID, Header(alias="X-Session-ID")],
) -> SubmitReceipt:
    """Store a session's data, whole or task by task. Each task is accepted once: the same
    content again answers 200 with the original receipt, other content 409."""
    payload = parse_submission(await request.body())
    if payload.session_id != x_session_id:
        raise ValidationFailedError(
            "X-Session-ID does not match the body's session_id",
            details={"errors": [{"field": "header.X-Session-ID", "message": "mismatch"}]},
        )
    outcome = await submissions_service.submit(
        session,
        store,
        storage,
        context,
        principal,
        payload,
        clock_offset_seconds=clock_offset_seconds(payload.client_time, utcnow()),
    )
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    return SubmitReceipt.model_validate(outcome.receipt)


@router.get("/sessions/{session_id:uuid}/source/{task}", include_in_schema=True)
async def source_document(
    session_id: uuid.UUID,
    task: str,
    principal: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    """The raw source document of a task as stored, with its SHA-256 in `ETag`."""
    record = await sessions_service.load_session_for(session, principal, session_id)
    await require_study_capability(session, principal, record.study_id, Capability.EXPORT)
    for result in await sessions_service.task_results(session, record.id):
        if result.task == task:
            data = await storage.read(result.source_path)
            return Response(
                data, media_type="application/json", headers={"ETag": f'"{result.source_sha256}"'}
            )
    raise NotFoundError("No such task in this session")
