"""Ingest of assessment data: one service behind `POST /api/submit` and `POST /api/sync`.

Each task of a session is accepted once. The same content again is a replay and answers with the
original receipt; other content for a stored task is a conflict (409, audited, nothing changed).
For a new task: the server scores it (app.scoring), writes the raw task as a source document
(atomically, before the row that points at it), stores the receipt row and the trials as rows,
in bulk: COPY on PostgreSQL, executemany elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import chance_accuracy_for
from app.catalogue.errors import CatalogueError
from app.core.clock import utcnow
from app.core.errors import ConflictError, ValidationFailedError
from app.core.events import emit
from app.core.json_values import normalize_json, to_json_value
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditCategory
from app.models.battery import BatteryVersion
from app.schemas.assessments import SubmitRequest, TrialIn
from app.scoring import Flag, canonical_task_id, score_task, session_flags, task_flags
from app.services.assessment_sessions import load_session_for, note_tasks_received
from app.services.audit import AuditContext, record_event
from app.services.local_storage import LocalStorage
from app.services.policy import Capability
from app.services.principals import Principal
from app.services.session_store import SessionStore

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
        content = by_name.get(trial.task)
        if content is None:
            task_id = canonical_task_id(trial.task)
            content = tasks.setdefault(task_id, _TaskContent(task_id))
            content.sent_as.add(trial.task)
            by_name[trial.task] = content
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


def _trial_documents(trials: Sequence[TrialIn]) -> list[dict[str, Any]]:
    return [trial.model_dump(mode="json") for trial in trials]


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


def _trial_rows(
    record: AssessmentSession, task: str, documents: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    rows = []
    for document in documents:
        extra = {k: v for k, v in document.items() if k not in _KNOWN_TRIAL_FIELDS}
        rows.append(
            (
                record.study_id,
                record.participant_id,
                record.id,
                task,
                document["trial_index"],
                document["rt"],
                document["correct"],
                _as_text(document["response"]),
                _as_text(document["stimulus"]),
                document["condition"],
                document["is_practice"],
                extra or None,
            )
        )
    return rows


async def _store_trials(session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        records = [(*row[:-1], None if row[-1] is None else json.dumps(row[-1])) for row in rows]
        await driver.copy_records_to_table("trials", records=records, columns=list(TRIAL_COLUMNS))
        return
    await session.execute(
        insert(Trial), [dict(zip(TRIAL_COLUMNS, row, strict=True)) for row in rows]
    )


def _chance_accuracy(version: BatteryVersion, task: str) -> float | None:
    for entry in version.tasks:
        if entry.get("module_id") == task:
            try:
                return chance_accuracy_for(task, entry.get("config") or {})
            except CatalogueError:
                return None
    return None


def _flag_json(flag: Flag) -> dict[str, Any]:
    return {"code": flag.code, "task": flag.task, "evidence": to_json_value(flag.evidence)}


def _receipt(record: AssessmentSession, results: Sequence[TaskResult]) -> dict[str, Any]:
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
    storage: LocalStorage,
    context: AuditContext,
    principal: Principal,
    payload: SubmitRequest,
    *,
    received_at: datetime | None = None,
    clock_offset_seconds: float | None = None,
) -> SubmissionOutcome:
    # The row lock serialises concurrent submissions to one session: of two identical ones, the
    # second sees the first's rows and answers as a replay.
    record = await load_session_for(
        session, principal, payload.session_id, Capability.EDIT_PARTICIPANTS, lock=True
    )
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

    existing = {
        result.task: result
        for result in (
            await session.scalars(
                select(TaskResult).where(
                    TaskResult.session_id == record.id, TaskResult.task.in_(list(tasks))
                )
            )
        ).all()
    }
    documents = {task: _trial_documents(content.trials) for task, content in tasks.items()}
    # Serialised once: hashed here, embedded in the source document below.
    trials_json = {task: _canonical_json(documents[task]) for task in tasks}
    hashes = {
        task: _content_hash(task, trials_json[task], content.summary)
        for task, content in tasks.items()
    }
    conflicts = sorted(
        task for task, result in existing.items() if result.content_hash != hashes[task]
    )
    if conflicts:
        await record_event(
            session,
            context,
            action="submission.conflict",
            category=AuditCategory.ASSESSMENT,
            entity_type="assessment_session",
            entity_id=record.id,
            study_id=record.study_id,
            participant_id=record.participant_id,
            after={
                "tasks": conflicts,
                "stored_hashes": {t: existing[t].content_hash for t in conflicts},
                "received_hashes": {t: hashes[t] for t in conflicts},
            },
        )
        raise SubmissionConflictError(
            "Different data was already accepted for these tasks of the session",
            details={"tasks": conflicts, "session_id": str(record.id)},
            keep_changes=True,
        )

    now = received_at or utcnow()
    offset = (
        clock_offset_seconds if clock_offset_seconds is not None else record.clock_offset_seconds
    )
    if offset is not None and record.clock_offset_seconds is None:
        record.clock_offset_seconds = offset
    session_level = [
        _flag_json(f)
        for f in session_flags(device_info=payload.device_info, clock_offset_seconds=offset)
    ]
    new_results: list[TaskResult] = []
    for task, content in tasks.items():
        if task in existing:
            continue
        trial_documents = documents[task]
        score = score_task(task, trial_documents)
        flags = [
            _flag_json(f)
            for f in task_flags(
                task,
                trial_documents,
                score,
                chance_accuracy=_chance_accuracy(version, task),
                client_summary=content.summary,
            )
        ] + [{**f, "task": task} for f in session_level]
        envelope = _canonical_json(
            {
                "session_id": str(record.id),
                "task": task,
                "sent_as": sorted(content.sent_as),
                "summary": content.summary,
                "device_info": payload.device_info,
                "completed_at": payload.completed_at.isoformat() if payload.completed_at else None,
                "received_at": now.isoformat(),
            }
        )
        # The envelope's keys sort before "trials", so appending keeps the document canonical.
        source = envelope[:-1] + b',"trials":' + trials_json[task] + b"}"
        stored = await storage.write_atomic(
            LocalStorage.source_path(record.study_id, record.participant_id, record.id, task),
            source,
        )
        result = TaskResult(
            id=uuid.uuid4(),
            session_id=record.id,
            task=task,
            content_hash=hashes[task],
            source_path=stored.relative_path,
            source_sha256=stored.sha256,
            source_bytes=stored.size,
            n_trials=len(trial_documents),
            client_summary=content.summary,
            scores=to_json_value(dict(score.metrics)),
            flags=flags,
            scorer=score.scorer,
            scorer_version=score.scorer_version,
            previous_scores=[],
            accepted_at=now,
            completed_at=payload.completed_at,
        )
        session.add(result)
        new_results.append(result)
    if new_results:
        await session.flush()
        rows: list[tuple[Any, ...]] = []
        for result in new_results:
            rows.extend(_trial_rows(record, result.task, documents[result.task]))
        await _store_trials(session, rows)
        await note_tasks_received(store, record, [r.task for r in new_results])
        # Last before the commit: the audit event takes the chain-head lock until then.
        await record_event(
            session,
            context,
            action="submission.accepted",
            category=AuditCategory.ASSESSMENT,
            entity_type="assessment_session",
            entity_id=record.id,
            study_id=record.study_id,
            participant_id=record.participant_id,
            after={
                "tasks": {
                    r.task: {"trials": r.n_trials, "sha256": r.source_sha256} for r in new_results
                },
                "scorer_versions": {r.task: r.scorer_version for r in new_results},
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
                "tasks": [r.task for r in new_results],
            },
        )
    new_by_task = {result.task: result for result in new_results}
    all_results = [existing.get(task) or new_by_task[task] for task in tasks]
    return SubmissionOutcome(receipt=_receipt(record, all_results), created=bool(new_results))


async def rescore_session(
    session: AsyncSession,
    storage: LocalStorage,
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
        trial_documents: list[Mapping[str, Any]] = document["trials"]
        score = score_task(result.task, trial_documents)
        offset = record.clock_offset_seconds
        flags = [
            _flag_json(f)
            for f in task_flags(
                result.task,
                trial_documents,
                score,
                chance_accuracy=_chance_accuracy(version, result.task),
                client_summary=document.get("summary"),
            )
        ] + [
            {**_flag_json(f), "task": result.task}
            for f in session_flags(
                device_info=document.get("device_info"), clock_offset_seconds=offset
            )
        ]
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
        result.scores = to_json_value(dict(score.metrics))
        result.flags = flags
        result.scorer = score.scorer
        result.scorer_version = score.scorer_version
        rescored.append(result.task)
    if rescored:
        await record_event(
            session,
            context,
            action="session.rescored",
            category=AuditCategory.ASSESSMENT,
            entity_type="assessment_session",
            entity_id=record.id,
            study_id=record.study_id,
            participant_id=record.participant_id,
            after={"tasks": rescored},
        )
    return sorted(rescored)
