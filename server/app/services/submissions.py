"""Ingest of assessment data: one service behind `POST /api/submit` and `POST /api/sync`.

Each task of a session is accepted once. The same content again is a replay and answers with the
original receipt; other content for a stored task is a conflict (409, audited, nothing changed).
For a new task: the server scores it (app.scoring), writes the raw task as a source document
(durable before the commit of the row that points at it, removed if that commit does not
happen: app.services.source_storage), stores the receipt row and the trials as rows, in bulk:
COPY on PostgreSQL, executemany elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import chance_accuracy_for
from app.catalogue.errors import CatalogueError
from app.core.clock import utcnow
from app.core.errors import ConflictError, ValidationFailedError
from app.core.events import emit
from app.core.json_values import normalize_json, to_json_value
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.battery import BatteryVersion
from app.schemas.assessments import SubmitRequest, TrialIn
from app.scoring import (
    Flag,
    TaskScore,
    canonical_task_id,
    score_task,
    session_flags,
    task_flags,
)
from app.services.assessment_sessions import load_session_with_context, note_tasks_received
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.item_banks import results as cat_results
from app.services.outbox.announce import announce_tasks_accepted
from app.services.policy import Capability
from app.services.principals import Principal
from app.services.session_store import SessionStore
from app.services.source_storage import PendingDocuments, SourceStorage

TRIAL_COLUMNS = (
    "study_id",
    "participant_id",
    "session_id",
    "task",
    "trial_index",
    "rt",
    "correct",
    "response",
    "stimulus",
    "condition",
    "is_practice",
    "extra",
)
_KNOWN_TRIAL_FIELDS = frozenset(
    {"task", "trial_index", "rt", "response", "stimulus", "correct", "is_practice", "condition"}
)


class SubmissionConflictError(ConflictError):
    code = "SUBMISSION_CONFLICT"


@dataclass(frozen=True, slots=True)
class SubmissionOutcome:
    receipt: dict[str, Any]
    created: bool  # False: every task was an exact replay


@dataclass(slots=True)
class _TaskContent:
    task: str  # canonical module id
    sent_as: set[str] = field(default_factory=set)
    trials: list[TrialIn] = field(default_factory=list)
    summary: dict[str, Any] | None = None


def _canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8 (orjson: the same bytes for the same value, fast)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _group_by_task(payload: SubmitRequest) -> dict[str, _TaskContent]:
    tasks: dict[str, _TaskContent] = {}
    by_name: dict[str, _TaskContent] = {}
    for trial in payload.trials:
        name = trial["task"]
        content = by_name.get(name)
        if content is None:
            task_id = canonical_task_id(name)
            content = tasks.setdefault(task_id, _TaskContent(task_id))
            content.sent_as.add(name)
            by_name[name] = content
        content.trials.append(trial)
    for name, summary in payload.task_summaries.items():
        task_id = canonical_task_id(name)
        content = tasks.setdefault(task_id, _TaskContent(task_id))
        content.sent_as.add(name)
        if content.summary is not None and content.summary != summary:
            raise ValidationFailedError(
                f"Two different summaries were sent for task '{task_id}'",
                details={"errors": [{"field": f"task_summaries.{name}", "message": "duplicate"}]},
            )
        content.summary = summary
    return tasks


def _content_hash(task: str, trials_json: bytes, summary: dict[str, Any] | None) -> str:
    """SHA-256 over the task's canonical content: equal for a replay, whatever the key order."""
    digest = hashlib.sha256()
    digest.update(_canonical_json({"task": task, "summary": summary}))
    digest.update(b"\n")
    digest.update(trials_json)
    return digest.hexdigest()


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _copy_records(
    record: AssessmentSession, task: str, documents: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """The trials of a task as COPY records in `TRIAL_COLUMNS` order, `extra` as JSON text."""
    study_id, participant_id, session_id = record.study_id, record.participant_id, record.id
    known = _KNOWN_TRIAL_FIELDS
    records = []
    for document in documents:
        extra = {k: v for k, v in document.items() if k not in known} if len(document) > 8 else None
        records.append(
            (
                study_id,
                participant_id,
                session_id,
                task,
                document["trial_index"],
                document["rt"],
                document["correct"],
                _as_text(document["response"]),
                _as_text(document["stimulus"]),
                document["condition"],
                document["is_practice"],
                orjson.dumps(extra).decode() if extra else None,
            )
        )
    return records


async def _store_trials(
    session: AsyncSession,
    record: AssessmentSession,
    accepted: Sequence[TaskResult],
    tasks: Mapping[str, _PreparedTask],
) -> None:
    """The trials of the accepted tasks, in bulk: COPY on PostgreSQL, executemany elsewhere."""
    records: list[tuple[Any, ...]] = []
    for result in accepted:
        records.extend(_copy_records(record, result.task, tasks[result.task].documents))
    if not records:
        return
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table("trials", records=records, columns=list(TRIAL_COLUMNS))
        return
    rows = []
    for values in records:
        row = dict(zip(TRIAL_COLUMNS, values, strict=True))
        row["extra"] = None if row["extra"] is None else orjson.loads(row["extra"])
        rows.append(row)
    await session.execute(insert(Trial), rows)


def _chance_accuracy(version: BatteryVersion, task: str) -> float | None:
    for entry in version.tasks:
        if entry.get("module_id") == task:
            return _chance_accuracy_of(task, _canonical_json(entry.get("config") or {}))
    return None


@functools.lru_cache(maxsize=1024)
def _chance_accuracy_of(task: str, config_json: bytes) -> float | None:
    """Chance accuracy of a task under a configuration, which the catalogue (static) decides:
    remembered per configuration rather than validated against the task's schema again on
    every submission."""
    try:
        return chance_accuracy_for(task, orjson.loads(config_json))
    except CatalogueError:
        return None


def _flag_json(flag: Flag) -> dict[str, Any]:
    return {"code": flag.code, "task": flag.task, "evidence": to_json_value(flag.evidence)}


def _session_level_flags(
    device_info: Mapping[str, Any] | None, clock_offset: float | None
) -> list[dict[str, Any]]:
    return [
        _flag_json(flag)
        for flag in session_flags(device_info=device_info, clock_offset_seconds=clock_offset)
    ]


def _task_flags(
    version: BatteryVersion,
    task: str,
    trial_documents: Sequence[Mapping[str, Any]],
    score: TaskScore,
    client_summary: dict[str, Any] | None,
    session_level: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The task's own flags, then the session-level ones, each attributed to the task."""
    own = task_flags(
        task,
        trial_documents,
        score,
        chance_accuracy=_chance_accuracy(version, task),
        client_summary=client_summary,
    )
    return [_flag_json(flag) for flag in own] + [{**f, "task": task} for f in session_level]


@dataclass(frozen=True, slots=True)
class _ValidatedRequest:
    version: BatteryVersion  # the battery version the session runs
    tasks: dict[str, _TaskContent]  # by canonical task id, in the order the request named them


@dataclass(frozen=True, slots=True)
class _PreparedTask:
    """One task of the request in the forms the later steps use, each computed once."""

    content: _TaskContent
    documents: list[dict[str, Any]]  # the trials as JSON values
    trials_json: bytes  # `documents` canonical: hashed here, embedded in the source document
    content_hash: str

    @property
    def task(self) -> str:
        return self.content.task


async def _validate_request(
    session: AsyncSession, record: AssessmentSession, payload: SubmitRequest
) -> _ValidatedRequest:
    """The request's tasks, which must be some and all in the session's battery version (422)."""
    version = await session.get(BatteryVersion, record.battery_version_id)
    assert version is not None
    allowed = {entry["module_id"] for entry in version.tasks}
    tasks = _group_by_task(payload)
    if not tasks:
        raise ValidationFailedError(
            "The submission holds no task",
            details={"errors": [{"field": "trials", "message": "empty"}]},
        )
    unknown = sorted(
        name
        for content in tasks.values()
        if content.task not in allowed
        for name in content.sent_as
    )
    if unknown:
        raise ValidationFailedError(
            "These tasks are not in the battery version this session runs",
            details={
                "errors": [
                    {"field": "trials.task", "message": f"'{name}' is not in the battery"}
                    for name in unknown
                ],
                "battery_version": record.battery_version,
                "battery_tasks": sorted(allowed),
            },
        )
    return _ValidatedRequest(version, tasks)


def _prepare(content: _TaskContent) -> _PreparedTask:
    # Validated trials are JSON values already (`TrialIn`): they are the documents.
    documents = cast(list[dict[str, Any]], content.trials)
    trials_json = _canonical_json(documents)
    return _PreparedTask(
        content=content,
        documents=documents,
        trials_json=trials_json,
        content_hash=_content_hash(content.task, trials_json, content.summary),
    )


# Built once, with parameters: a statement built per request costs more to build and key than
# to run.
_STORED_RESULTS = select(TaskResult).where(
    TaskResult.session_id == bindparam("session_id"),
    TaskResult.task.in_(bindparam("tasks", expanding=True)),
)


async def _replayed_results(
    session: AsyncSession,
    context: AuditContext,
    record: AssessmentSession,
    tasks: Mapping[str, _PreparedTask],
) -> dict[str, TaskResult]:
    """The stored results of the tasks sent again with equal content.

    A task stored with other content is a conflict: audited, then 409 for the whole request with
    `keep_changes`, so the audit event commits while nothing else was changed.

    A statement of its own, after the session's row lock is held: joined to the locking
    statement, the results would be read from the snapshot taken before waiting for the lock,
    and a concurrent identical submission that just committed would look absent (tried: the
    concurrency test then fails on the unique key).
    """
    stored = (
        await session.scalars(_STORED_RESULTS, {"session_id": record.id, "tasks": list(tasks)})
    ).all()
    replayed = {result.task: result for result in stored}
    conflicts = sorted(
        task for task, result in replayed.items() if result.content_hash != tasks[task].content_hash
    )
    if conflicts:
        await record_about(
            session,
            context,
            AuditSubject.assessment_session(record),
            "submission.conflict",
            after={
                "tasks": conflicts,
                "stored_hashes": {t: replayed[t].content_hash for t in conflicts},
                "received_hashes": {t: tasks[t].content_hash for t in conflicts},
            },
        )
        raise SubmissionConflictError(
            "Different data was already accepted for these tasks of the session",
            details={"tasks": conflicts, "session_id": str(record.id)},
            keep_changes=True,
        )
    return replayed


def _session_clock_offset(record: AssessmentSession, measured: float | None) -> float | None:
    """The offset this submission is flagged with: the one measured now, else the session's.
    The session keeps the first offset measured for it."""
    offset = measured if measured is not None else record.clock_offset_seconds
    if offset is not None and record.clock_offset_seconds is None:
        record.clock_offset_seconds = offset
    return offset


def _source_document(
    record: AssessmentSession, task: _PreparedTask, payload: SubmitRequest, received_at: datetime
) -> bytes:
    """The raw task as received, canonical JSON, for the record and for rescoring."""
    envelope = _canonical_json(
        {
            "session_id": str(record.id),
            "task": task.task,
            "sent_as": sorted(task.content.sent_as),
            "summary": task.content.summary,
            "device_info": payload.device_info,
            "completed_at": payload.completed_at.isoformat() if payload.completed_at else None,
            "received_at": received_at.isoformat(),
        }
    )
    # The envelope's keys sort before "trials", so appending keeps the document canonical.
    return envelope[:-1] + b',"trials":' + task.trials_json + b"}"


def _new_result(
    record: AssessmentSession,
    version: BatteryVersion,
    task: _PreparedTask,
    payload: SubmitRequest,
    *,
    received_at: datetime,
    session_level: Sequence[dict[str, Any]],
) -> tuple[TaskResult, bytes]:
    """Score and flag a new task: its result row (not yet added) and its source document. The
    document's path, SHA-256 and size are filled in by `_accept_new`."""
    score = score_task(task.task, task.documents)
    flags = _task_flags(
        version, task.task, task.documents, score, task.content.summary, session_level
    )
    result = TaskResult(
        id=uuid.uuid4(),
        session_id=record.id,
        task=task.task,
        content_hash=task.content_hash,
        n_trials=len(task.documents),
        client_summary=task.content.summary,
        scores=to_json_value(dict(score.metrics)),
        flags=flags,
        scorer=score.scorer,
        scorer_version=score.scorer_version,
        previous_scores=[],
        accepted_at=received_at,
        completed_at=payload.completed_at,
    )
    return result, _source_document(record, task, payload, received_at)


_RESULT_COLUMNS = tuple(column.key for column in TaskResult.__table__.columns)
# Core on the table: the ORM's bulk insert of dictionaries only adds work here.
_INSERT_RESULTS = insert(cast(Table, TaskResult.__table__))


async def _accept_new(
    session: AsyncSession,
    storage: SourceStorage,
    record: AssessmentSession,
    new: Sequence[tuple[TaskResult, bytes]],
    tasks: Mapping[str, _PreparedTask],
) -> PendingDocuments:
    """Start writing the source documents (taken back if the transaction does not commit),
    then insert the result rows (one statement, no ORM flush) and the trials in bulk."""
    paths = [
        SourceStorage.source_path(
            record.study_id, record.participant_id, record.id, result.task, result.id
        )
        for result, _ in new
    ]
    pending = storage.write_for_transaction(
        session, [(path, document) for path, (_, document) in zip(paths, new, strict=True)]
    )
    for (result, _), stored in zip(new, pending.documents, strict=True):
        result.source_path = stored.relative_path
        result.source_sha256 = stored.sha256
        result.source_bytes = stored.size
    accepted = [result for result, _ in new]
    await session.execute(
        _INSERT_RESULTS,
        [{key: getattr(result, key) for key in _RESULT_COLUMNS} for result in accepted],
    )
    await _store_trials(session, record, accepted, tasks)
    return pending


async def _announce_accepted(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    record: AssessmentSession,
    accepted: Sequence[TaskResult],
) -> None:
    """The live view, the audit event and the after-commit event for the accepted tasks."""
    await note_tasks_received(store, record, [r.task for r in accepted])
    await announce_tasks_accepted(session, record, accepted)
    # Last before the commit: the audit event takes the chain-head lock until then.
    await record_about(
        session,
        context,
        AuditSubject.assessment_session(record),
        "submission.accepted",
        after={
            "tasks": {r.task: {"trials": r.n_trials, "sha256": r.source_sha256} for r in accepted},
            "scorer_versions": {r.task: r.scorer_version for r in accepted},
        },
    )
    emit(
        session,
        "session.tasks_accepted",
        {
            "session_id": str(record.id),
            "study_id": str(record.study_id),
            "participant_id": str(record.participant_id),
            "visit_id": str(record.visit_id) if record.visit_id else None,
            "tasks": [r.task for r in accepted],
        },
    )


def _receipt(record: AssessmentSession, results: Sequence[TaskResult]) -> dict[str, Any]:
    """What every submission of the same content answers, byte for byte (sorted by task)."""
    ordered = sorted(results, key=lambda result: result.task)
    flags: list[dict[str, Any]] = []
    for result in ordered:
        flags.extend(normalize_json(result.flags))
    checksum = hashlib.sha256(
        "\n".join(f"{r.task}:{r.content_hash}" for r in ordered).encode()
    ).hexdigest()
    return {
        "status": "success",
        "session_id": str(record.id),
        "tasks_stored": [r.task for r in ordered],
        "trials_stored": sum(r.n_trials for r in ordered),
        "scores": {r.task: normalize_json(r.scores) for r in ordered},
        "flags": flags,
        "checksum": checksum,
    }


async def submit(
    session: AsyncSession,
    store: SessionStore,
    storage: SourceStorage,
    context: AuditContext,
    principal: Principal,
    payload: SubmitRequest,
    *,
    clock_offset_seconds: float | None = None,
) -> SubmissionOutcome:
    """`POST /api/submit`: the session's participant, or staff who may edit the participant."""
    # The row lock serialises concurrent submissions to one session: of two identical ones, the
    # second sees the first's rows and answers as a replay.
    # `loaded` keeps the participant, study and battery version in the identity map until the
    # submission is stored: the steps below look them up by key without a query.
    loaded = await load_session_with_context(
        session,
        principal,
        payload.session_id,
        Capability.EDIT_PARTICIPANTS,
        lock=True,
        with_version=True,
    )
    return await accept_submission(
        session,
        store,
        storage,
        context,
        loaded.record,
        payload,
        clock_offset_seconds=clock_offset_seconds,
    )


async def accept_submission(
    session: AsyncSession,
    store: SessionStore,
    storage: SourceStorage,
    context: AuditContext,
    record: AssessmentSession,
    payload: SubmitRequest,
    *,
    clock_offset_seconds: float | None,
) -> SubmissionOutcome:
    """Store a submission to `record`, a session the caller was found to reach and whose row it
    holds locked."""
    request = await _validate_request(session, record, payload)
    tasks = {task: _prepare(content) for task, content in request.tasks.items()}
    replayed = await _replayed_results(session, context, record, tasks)
    received_at = utcnow()
    clock_offset = _session_clock_offset(record, clock_offset_seconds)
    session_level = _session_level_flags(payload.device_info, clock_offset)
    new = [
        _new_result(
            record,
            request.version,
            task,
            payload,
            received_at=received_at,
            session_level=session_level,
        )
        for task in tasks.values()
        if task.task not in replayed
    ]
    accepted = [result for result, _ in new]
    if new:
        pending = await _accept_new(session, storage, record, new, tasks)
        await _announce_accepted(session, store, context, record, accepted)
        # The documents are durable before the commit that makes the rows point at them.
        await pending.wait()
    accepted_by_task = {result.task: result for result in accepted}
    results = [replayed.get(task) or accepted_by_task[task] for task in tasks]
    return SubmissionOutcome(receipt=_receipt(record, results), created=bool(accepted))


async def rescore_session(
    session: AsyncSession,
    storage: SourceStorage,
    context: AuditContext,
    record: AssessmentSession,
) -> list[str]:
    """Recompute every task of a session from its source document with the current scorers;
    the previous results are kept in `previous_scores`."""
    version = await session.get(BatteryVersion, record.battery_version_id)
    assert version is not None
    results = (
        await session.scalars(select(TaskResult).where(TaskResult.session_id == record.id))
    ).all()
    rescored: list[str] = []
    for result in results:
        document = json.loads(await storage.read(result.source_path))
        if result.scorer == cat_results.SCORER:
            # An adaptive test: its responses against the bank version it ran on.
            scores, flags = await cat_results.rescore_result(session, result, document)
            scorer, scorer_version = cat_results.SCORER, cat_results.scorer_version()
        else:
            trial_documents: list[Mapping[str, Any]] = document["trials"]
            score = score_task(result.task, trial_documents)
            session_level = _session_level_flags(
                document.get("device_info"), record.clock_offset_seconds
            )
            flags = _task_flags(
                version, result.task, trial_documents, score, document.get("summary"), session_level
            )
            scores = to_json_value(dict(score.metrics))
            scorer, scorer_version = score.scorer, score.scorer_version
        result.previous_scores = [
            *result.previous_scores,
            {
                "scores": result.scores,
                "flags": result.flags,
                "scorer": result.scorer,
                "scorer_version": result.scorer_version,
                "replaced_at": utcnow().isoformat(),
            },
        ]
        result.scores = scores
        result.flags = flags
        result.scorer = scorer
        result.scorer_version = scorer_version
        rescored.append(result.task)
    if rescored:
        await record_about(
            session,
            context,
            AuditSubject.assessment_session(record),
            "session.rescored",
            after={"tasks": rescored},
        )
    return sorted(rescored)
