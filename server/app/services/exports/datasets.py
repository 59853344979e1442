"""The tables an export holds, each with its codebook, read from the database in batches.

Every dataset is a list of columns (the codebook: name, type, unit, meaning, scorer version) and
an asynchronous stream of rows, each a dict keyed by column name holding the exact stored value.
The writers (`writers.py`) turn them into CSV, JSON Lines or Parquet; only CSV changes values
(spreadsheet safety), and only there.

- trials: one row per trial, every column of the trials table with the session's participant
  code, site, visit and battery version, and the version of the scorer that scored the task;
- scores: one row per session, one column per `<task>.<metric>`, the task's flags and scorer
  version, and the session's own flags;
- sessions: one JSON object per session with its tasks, their scores and flags (JSON Lines);
- participants: one row per participant; contact details only when the job asked for them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.security import FieldEncryptor
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.participant import Participant
from app.models.schedule import Visit
from app.models.study import Site
from app.services.exports.scope import ExportScope

BATCH_ROWS = 2000


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # string, integer, number, boolean, datetime, date, uuid, json
    unit: str
    meaning: str
    scorer_version: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "meaning": self.meaning,
            "scorer_version": self.scorer_version,
        }


Row = dict[str, Any]

_SESSION_COLUMNS = (
    Column("session_id", "uuid", "", "assessment session"),
    Column("participant_id", "uuid", "", "participant (server id)"),
    Column("participant_code", "string", "", "participant code in the study"),
    Column("site_code", "string", "", "code of the participant's site"),
    Column("visit_key", "string", "", "schedule event of the session's visit (empty: unscheduled)"),
    Column("visit_occurrence", "integer", "", "occurrence of the event (1 for the first)"),
    Column("visit_label", "string", "", "label of the visit"),
    Column("battery_version", "integer", "", "version of the battery the session ran"),
)

TRIAL_COLUMNS: tuple[Column, ...] = (
    Column("trial_id", "integer", "", "row id of the trial on the server"),
    Column("study_id", "uuid", "", "study"),
    *_SESSION_COLUMNS,
    Column("task", "string", "", "task id"),
    Column("trial_index", "integer", "", "position of the trial in the task, from 0"),
    Column("rt", "number", "ms", "response time from stimulus onset"),
    Column("correct", "boolean", "", "whether the response was correct (empty: not scored)"),
    Column("response", "string", "", "the participant's response"),
    Column("stimulus", "string", "", "the stimulus shown"),
    Column("condition", "string", "", "the trial's condition (e.g. congruent)"),
    Column("is_practice", "boolean", "", "practice trial, not scored"),
    Column("extra", "json", "", "task-specific trial fields, as JSON"),
    Column("scorer_version", "string", "", "version of the scorer that scored this task"),
)

SCORE_LEAD_COLUMNS: tuple[Column, ...] = (
    *_SESSION_COLUMNS,
    Column("session_status", "string", "", "status of the session"),
    Column("started_at", "datetime", "UTC", "start of the session"),
    Column("ended_at", "datetime", "UTC", "end of the session"),
)

PARTICIPANT_COLUMNS: tuple[Column, ...] = (
    Column("participant_id", "uuid", "", "participant (server id)"),
    Column("participant_code", "string", "", "participant code in the study"),
    Column("site_code", "string", "", "code of the participant's site"),
    Column("site_name", "string", "", "name of the participant's site"),
    Column("status", "string", "", "enrollment status"),
    Column("enrollment_date", "date", "", "date of enrollment"),
    Column("withdrawn_at", "datetime", "UTC", "when the participant withdrew"),
    Column("withdrawal_scope", "string", "", "what the withdrawal stopped"),
    Column("language", "string", "", "language of the participant's materials"),
    Column("timezone", "string", "", "the participant's time zone"),
)

CONTACT_COLUMNS: tuple[Column, ...] = (
    Column("email", "string", "", "CONTACT DETAIL: the participant's email address"),
    Column("phone", "string", "", "CONTACT DETAIL: the participant's phone number"),
)


def metric_unit(metric: str) -> str:
    """The unit of a score, from the naming rules of docs/scoring.md."""
    if metric.startswith("n_") or metric.endswith("_count") or metric in {"span", "max_span"}:
        return "count"
    if metric.startswith("accuracy") or metric.endswith("_rate") or metric.endswith("_accuracy"):
        return "proportion"
    if "rt" in metric.split("_") or metric.endswith("_ms") or metric.startswith("time"):
        return "ms"
    return ""


def session_select(scope: ExportScope, *columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(AssessmentSession)
        .join(Participant, Participant.id == AssessmentSession.participant_id)
        .outerjoin(Site, Site.id == Participant.site_id)
        .outerjoin(Visit, Visit.id == AssessmentSession.visit_id)
        .where(*scope.session_conditions())
    )


def _session_fields(row: Any) -> Row:
    return {
        "session_id": row.session_id,
        "participant_id": row.participant_id,
        "participant_code": row.participant_code,
        "site_code": row.site_code,
        "visit_key": row.visit_key,
        "visit_occurrence": row.visit_occurrence,
        "visit_label": row.visit_label,
        "battery_version": row.battery_version,
    }


_SESSION_SELECT_COLUMNS = (
    AssessmentSession.id.label("session_id"),
    AssessmentSession.participant_id.label("participant_id"),
    Participant.participant_code.label("participant_code"),
    Site.code.label("site_code"),
    Visit.event_key.label("visit_key"),
    Visit.occurrence.label("visit_occurrence"),
    Visit.label.label("visit_label"),
    AssessmentSession.battery_version.label("battery_version"),
)


def trials_select(scope: ExportScope) -> Select[Any]:
    return (
        session_select(
            scope,
            Trial.id.label("trial_id"),
            Trial.study_id.label("study_id"),
            *_SESSION_SELECT_COLUMNS,
            Trial.task,
            Trial.trial_index,
            Trial.rt,
            Trial.correct,
            Trial.response,
            Trial.stimulus,
            Trial.condition,
            Trial.is_practice,
            Trial.extra,
            TaskResult.scorer_version,
        )
        .join(Trial, Trial.session_id == AssessmentSession.id)
        .outerjoin(
            TaskResult,
            (TaskResult.session_id == Trial.session_id) & (TaskResult.task == Trial.task),
        )
        .where(Trial.study_id == scope.study_id, scope.task_condition(Trial.task))
        .order_by(Trial.id)
    )


async def count_trials(session: AsyncSession, scope: ExportScope) -> int:
    statement = (
        session_select(scope, func.count(Trial.id))
        .join(Trial, Trial.session_id == AssessmentSession.id)
        .where(Trial.study_id == scope.study_id, scope.task_condition(Trial.task))
    )
    return int(await session.scalar(statement) or 0)


async def trial_rows(session: AsyncSession, scope: ExportScope) -> AsyncIterator[Row]:
    result = await session.stream(trials_select(scope).execution_options(yield_per=BATCH_ROWS))
    async for row in result:
        yield {
            "trial_id": row.trial_id,
            "study_id": row.study_id,
            **_session_fields(row),
            "task": row.task,
            "trial_index": row.trial_index,
            "rt": row.rt,
            "correct": row.correct,
            "response": row.response,
            "stimulus": row.stimulus,
            "condition": row.condition,
            "is_practice": row.is_practice,
            "extra": row.extra,
            "scorer_version": row.scorer_version,
        }


def _sessions_with_results(scope: ExportScope) -> Select[Any]:
    return (
        session_select(
            scope,
            *_SESSION_SELECT_COLUMNS,
            AssessmentSession.status.label("session_status"),
            AssessmentSession.started_at,
            AssessmentSession.ended_at,
            TaskResult.task,
            TaskResult.n_trials,
            TaskResult.scores,
            TaskResult.flags,
            TaskResult.scorer,
            TaskResult.scorer_version,
            TaskResult.accepted_at,
            TaskResult.completed_at,
        )
        .outerjoin(
            TaskResult,
            (TaskResult.session_id == AssessmentSession.id) & scope.task_condition(TaskResult.task),
        )
        .order_by(AssessmentSession.started_at, AssessmentSession.id, TaskResult.task)
    )


async def count_sessions(session: AsyncSession, scope: ExportScope) -> int:
    return int(await session.scalar(session_select(scope, func.count(AssessmentSession.id))) or 0)


@dataclass(slots=True)
class _SessionGroup:
    lead: Row
    tasks: list[Row]


async def _session_groups(
    session: AsyncSession, scope: ExportScope
) -> AsyncIterator[_SessionGroup]:
    """Each session in scope with its task results, from one ordered query."""
    result = await session.stream(
        _sessions_with_results(scope).execution_options(yield_per=BATCH_ROWS)
    )
    current: _SessionGroup | None = None
    async for row in result:
        if current is None or current.lead["session_id"] != row.session_id:
            if current is not None:
                yield current
            current = _SessionGroup(
                lead={
                    **_session_fields(row),
                    "session_status": str(row.session_status),
                    "started_at": row.started_at,
                    "ended_at": row.ended_at,
                },
                tasks=[],
            )
        if row.task is not None:
            current.tasks.append(
                {
                    "task": row.task,
                    "n_trials": row.n_trials,
                    "scores": row.scores,
                    "flags": row.flags,
                    "scorer": row.scorer,
                    "scorer_version": row.scorer_version,
                    "accepted_at": row.accepted_at,
                    "completed_at": row.completed_at,
                }
            )
    if current is not None:
        yield current


async def score_columns(session: AsyncSession, scope: ExportScope) -> tuple[Column, ...]:
    """The wide table's columns: the session's, then per task (sorted) its metrics (sorted),
    its flags and its scorer version, then the session's flags. Metric columns name the
    scorer versions that produced them."""
    statement = (
        session_select(scope, TaskResult.task, TaskResult.scores, TaskResult.scorer_version)
        .join(TaskResult, TaskResult.session_id == AssessmentSession.id)
        .where(scope.task_condition(TaskResult.task))
    )
    metrics: dict[str, dict[str, set[str]]] = {}
    result = await session.stream(statement.execution_options(yield_per=BATCH_ROWS))
    async for task, scores, version in result:
        per_task = metrics.setdefault(task, {})
        for metric in scores or {}:
            per_task.setdefault(metric, set()).add(version)
    columns: list[Column] = list(SCORE_LEAD_COLUMNS)
    for task in sorted(metrics):
        versions = sorted(set().union(*metrics[task].values())) if metrics[task] else []
        for metric in sorted(metrics[task]):
            columns.append(
                Column(
                    f"{task}.{metric}",
                    "number",
                    metric_unit(metric),
                    f"{metric} of {task}, computed by the server's scorer",
                    ";".join(sorted(metrics[task][metric])),
                )
            )
        columns.append(
            Column(
                f"{task}.flags",
                "string",
                "",
                f"validity flag codes of {task}, separated by ';' (docs/scoring.md)",
                ";".join(versions),
            )
        )
        columns.append(
            Column(f"{task}.scorer_version", "string", "", f"version of {task}'s scorer")
        )
    return tuple(columns)


def _flag_codes(flags: list[dict[str, Any]] | None) -> str:
    return ";".join(sorted({str(flag.get("code")) for flag in flags or []}))


async def score_rows(session: AsyncSession, scope: ExportScope) -> AsyncIterator[Row]:
    async for group in _session_groups(session, scope):
        row = dict(group.lead)
        for task in group.tasks:
            for metric, value in (task["scores"] or {}).items():
                row[f"{task['task']}.{metric}"] = value
            row[f"{task['task']}.flags"] = _flag_codes(task["flags"])
            row[f"{task['task']}.scorer_version"] = task["scorer_version"]
        yield row


SESSION_JSON_COLUMNS: tuple[Column, ...] = (
    *SCORE_LEAD_COLUMNS,
    Column(
        "tasks",
        "json",
        "",
        "the session's tasks: task, n_trials, scores {metric: value}, flags [{code, task, "
        "evidence}], scorer, scorer_version, accepted_at, completed_at",
        "per task, in the task's scorer_version",
    ),
)


async def session_documents(session: AsyncSession, scope: ExportScope) -> AsyncIterator[Row]:
    async for group in _session_groups(session, scope):
        yield {**group.lead, "tasks": group.tasks}


def participants_select(scope: ExportScope) -> Select[Participant, str, str]:
    return (
        select(Participant, Site.code.label("site_code"), Site.name.label("site_name"))
        .outerjoin(Site, Site.id == Participant.site_id)
        .where(*scope.participant_conditions())
        .order_by(Participant.participant_code)
    )


async def count_participants(session: AsyncSession, scope: ExportScope) -> int:
    statement = select(func.count(Participant.id)).where(*scope.participant_conditions())
    return int(await session.scalar(statement) or 0)


def participant_columns(include_contact_details: bool) -> tuple[Column, ...]:
    return PARTICIPANT_COLUMNS + (CONTACT_COLUMNS if include_contact_details else ())


async def participant_rows(
    session: AsyncSession, scope: ExportScope, encryptor: FieldEncryptor | None
) -> AsyncIterator[Row]:
    """`encryptor` given: with the participants' contact details, decrypted."""
    result = await session.stream(participants_select(scope).execution_options(yield_per=500))
    async for participant, site_code, site_name in result:
        row: Row = {
            "participant_id": participant.id,
            "participant_code": participant.participant_code,
            "site_code": site_code,
            "site_name": site_name,
            "status": str(participant.status),
            "enrollment_date": participant.enrollment_date,
            "withdrawn_at": participant.withdrawn_at,
            "withdrawal_scope": str(participant.withdrawal_scope)
            if participant.withdrawal_scope
            else None,
            "language": participant.language,
            "timezone": participant.timezone,
        }
        if encryptor is not None:
            row["email"] = _decrypted(encryptor, participant.email_encrypted)
            row["phone"] = _decrypted(encryptor, participant.phone_encrypted)
        yield row


def _decrypted(encryptor: FieldEncryptor, value: str | None) -> str | None:
    return encryptor.decrypt(value) if value else None


def plain(value: Any) -> Any:
    """A stored value as JSON: identifiers and instants as strings, the rest as it is."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def text_cell(value: Any) -> Any:
    """A value for a text table cell: JSON fields as compact JSON, the rest as `plain`."""
    if isinstance(value, dict | list):
        return json.dumps(plain(value), separators=(",", ":"), sort_keys=True)
    return plain(value)


RowSource = Callable[[], AsyncIterator[Row]]
