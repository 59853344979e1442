"""The BIDS behavioural export: a zip holding a BIDS dataset of the trials in scope.

One `beh` file per participant, visit and task (`sub-<label>/ses-<label>/beh/
sub-<label>_ses-<label>_task-<label>[_run-<n>]_beh.tsv`), each with a JSON sidecar describing
its columns; `participants.tsv` and `participants.json` (no contact details, ever), a
`sub-<label>_sessions.tsv` per participant mapping its session labels to the server's visits,
`dataset_description.json`, a README, and the codebook (`codebook.csv`, `codebook.json`) and
`export.json`, which `.bidsignore` keeps out of validation.

BIDS labels are letters and digits only. A participant's label is its code with everything
else removed, a visit's its event key's (with `occ<n>` for the n-th occurrence of a repeated
event), a task's its id's; the unscheduled sessions share the label `unscheduled`. A label that
would be empty, or that two sources share (compared without case, since a zip is unpacked on
case-insensitive file systems too), becomes the stripped text (or `p`, `v`, `t` when empty)
followed by `x` and the smallest number from 1 that is free, taking the sources in sorted
order. Labels are computed over the whole study, not the export's filters, so two exports of a
study agree. Several assessment sessions of one task in one visit are runs (`run-1`, ...), in
the order they started.

TSV cells are exact: numbers as stored (`rt` in ms; `response_time` is the same in seconds,
as an exact decimal), booleans `true`/`false`, JSON fields compact JSON, `n/a` for a missing or
empty value. A tab, line feed or carriage return inside a text is written as `\\t`, `\\n`,
`\\r`, since a TSV cell cannot hold them; nothing else is changed (no spreadsheet
neutralisation).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zipfile
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import __version__
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.participant import Participant
from app.models.schedule import Visit
from app.services.exports.datasets import BATCH_ROWS, Column, participants_select, session_select
from app.services.exports.scope import ExportScope
from app.services.exports.writers import (
    PROGRESS_EVERY_ROWS,
    Progress,
    WrittenFile,
    codebook_csv,
    codebook_entries,
)

BIDS_VERSION = "1.10.0"
UNSCHEDULED = "unscheduled"
MISSING = "n/a"
_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")
_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})

K = TypeVar("K", bound=Hashable)

BEH_COLUMNS: tuple[Column, ...] = (
    Column("trial_index", "integer", "", "position of the trial in the task, from 0"),
    Column("rt", "number", "ms", "response time from stimulus onset, as stored"),
    Column("response_time", "number", "s", "response time from stimulus onset (rt / 1000)"),
    Column("correct", "boolean", "", "whether the response was correct (n/a: not scored)"),
    Column("response", "string", "", "the participant's response"),
    Column("stimulus", "string", "", "the stimulus shown"),
    Column("condition", "string", "", "the trial's condition (e.g. congruent)"),
    Column("is_practice", "boolean", "", "practice trial, not scored"),
    Column("extra", "json", "", "task-specific trial fields, as JSON"),
    Column("trial_id", "integer", "", "row id of the trial on the server"),
)
_LONG_NAMES = {
    "trial_index": "Trial index",
    "rt": "Response time (ms)",
    "response_time": "Response time",
    "correct": "Correct response",
    "response": "Response",
    "stimulus": "Stimulus",
    "condition": "Condition",
    "is_practice": "Practice trial",
    "extra": "Task-specific fields",
    "trial_id": "Trial id",
}
_BOOLEAN_LEVELS = {
    "correct": {"true": "the response was correct", "false": "the response was wrong"},
    "is_practice": {"true": "practice trial, not scored", "false": "scored trial"},
}

PARTICIPANT_COLUMNS: tuple[Column, ...] = (
    Column("participant_id", "string", "", "BIDS subject label (sub-<label>)"),
    Column("participant_code", "string", "", "participant code in the study"),
    Column("site", "string", "", "code of the participant's site"),
    Column("status", "string", "", "enrollment status"),
    Column("language", "string", "", "language of the participant's materials"),
)
SESSION_COLUMNS: tuple[Column, ...] = (
    Column("session_id", "string", "", "BIDS session label (ses-<label>)"),
    Column("visit_key", "string", "", "schedule event of the visit (n/a: unscheduled)"),
    Column("visit_occurrence", "integer", "", "occurrence of the event (1 for the first)"),
    Column("visit_label", "string", "", "label of the visit"),
    Column("acq_time", "datetime", "UTC", "start of the first assessment session of the visit"),
    Column("assessment_sessions", "string", "", "the server's session ids, ';'-separated"),
)
# BIDS reads `Units` as making a column numeric: times of day (acq_time) have none.
_UNITS = {"ms": "ms", "s": "s"}


def alphanumeric(text: str) -> str:
    return _NOT_ALPHANUMERIC.sub("", text)


def assign_labels(
    items: Sequence[tuple[K, str]], *, empty_stem: str, reserved: frozenset[str] = frozenset()
) -> dict[K, str]:
    """Unique BIDS labels for `items` (key, natural label), in the order given.

    A natural label that is non-empty, not reserved and shared by no other item (ignoring
    case) is kept; the others get `<natural or empty_stem>x<n>` with the smallest free n."""
    counts = Counter(natural.lower() for _, natural in items)
    taken = {label.lower() for label in reserved}

    def keeps(natural: str) -> bool:
        return bool(natural) and counts[natural.lower()] == 1 and natural.lower() not in taken

    labels: dict[K, str] = {key: natural for key, natural in items if keeps(natural)}
    taken |= {label.lower() for label in labels.values()}
    for key, natural in items:
        if key in labels:
            continue
        stem = natural or empty_stem
        number = 1
        while f"{stem}x{number}".lower() in taken:
            number += 1
        labels[key] = f"{stem}x{number}"
        taken.add(labels[key].lower())
    return labels


def visit_natural_label(event_key: str, occurrence: int) -> str:
    stem = alphanumeric(event_key)
    return stem if occurrence <= 1 else f"{stem}occ{occurrence}"


def tsv_cell(value: Any) -> str:
    """A value as a BIDS TSV cell (see the module docstring)."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    else:
        text = str(value)
    return text.translate(_ESCAPES) if text else MISSING


def seconds(rt_ms: float | None) -> str | None:
    """Milliseconds as seconds, exactly (the decimal of the stored value, shifted)."""
    if rt_ms is None:
        return None
    return format(Decimal(repr(rt_ms)).scaleb(-3), "f")


def _line(cells: Sequence[Any]) -> bytes:
    return ("\t".join(tsv_cell(cell) for cell in cells) + "\n").encode()


def column_description(column: Column) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "LongName": _LONG_NAMES.get(column.name, column.name.replace("_", " ").capitalize()),
        "Description": column.meaning,
    }
    if column.unit in _UNITS:
        entry["Units"] = _UNITS[column.unit]
    if column.name in _BOOLEAN_LEVELS:
        entry["Levels"] = _BOOLEAN_LEVELS[column.name]
    return entry


@dataclass(slots=True)
class _BehFile:
    """One beh file: one assessment session's trials of one task."""

    # In the order of the columns of `_beh_files`' query.
    session_id: uuid.UUID
    participant_id: uuid.UUID
    participant_code: str
    visit_key: str | None
    visit_occurrence: int | None
    visit_label: str | None
    battery_version: int
    started_at: datetime
    task: str
    trials: int
    scorer_version: str | None
    path: str = ""
    session_label: str = ""


@dataclass(slots=True)
class _Visit:
    label: str
    visit_key: str | None
    occurrence: int | None
    visit_label: str | None
    started: list[datetime] = field(default_factory=list)
    sessions: list[uuid.UUID] = field(default_factory=list)


async def _beh_files(session: AsyncSession, scope: ExportScope) -> list[_BehFile]:
    statement = (
        session_select(
            scope,
            AssessmentSession.id,
            AssessmentSession.participant_id,
            Participant.participant_code,
            Visit.event_key,
            Visit.occurrence,
            Visit.label,
            AssessmentSession.battery_version,
            AssessmentSession.started_at,
            Trial.task,
            func.count(Trial.id),
            TaskResult.scorer_version,
        )
        .join(Trial, Trial.session_id == AssessmentSession.id)
        .outerjoin(
            TaskResult,
            (TaskResult.session_id == Trial.session_id) & (TaskResult.task == Trial.task),
        )
        .where(Trial.study_id == scope.study_id, scope.task_condition(Trial.task))
        .group_by(
            AssessmentSession.id,
            AssessmentSession.participant_id,
            Participant.participant_code,
            Visit.event_key,
            Visit.occurrence,
            Visit.label,
            AssessmentSession.battery_version,
            AssessmentSession.started_at,
            Trial.task,
            TaskResult.scorer_version,
        )
    )
    return [_BehFile(*row) for row in (await session.execute(statement)).all()]


async def _participant_labels(session: AsyncSession, study_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = (
        await session.execute(
            select(Participant.id, Participant.participant_code).where(
                Participant.study_id == study_id
            )
        )
    ).all()
    ordered = sorted(rows, key=lambda row: (row.participant_code, str(row.id)))
    return assign_labels(
        [(row.id, alphanumeric(row.participant_code)) for row in ordered], empty_stem="p"
    )


async def _visit_labels(session: AsyncSession, study_id: uuid.UUID) -> dict[tuple[str, int], str]:
    rows = (
        await session.execute(
            select(Visit.event_key, Visit.occurrence).where(Visit.study_id == study_id).distinct()
        )
    ).all()
    keys = sorted((str(key), int(occurrence)) for key, occurrence in rows)
    return assign_labels(
        [(key, visit_natural_label(*key)) for key in keys],
        empty_stem="v",
        reserved=frozenset({UNSCHEDULED}),
    )


async def _task_labels(session: AsyncSession, study_id: uuid.UUID) -> dict[str, str]:
    rows = await session.scalars(select(Trial.task).where(Trial.study_id == study_id).distinct())
    tasks = sorted(rows.all())
    return assign_labels([(task, alphanumeric(task)) for task in tasks], empty_stem="t")


def _sidecar(item: _BehFile, task_label: str, session_label: str) -> dict[str, Any]:
    return {
        "TaskName": item.task,
        "TaskLabel": task_label,
        "ParticipantCode": item.participant_code,
        "SessionLabel": session_label,
        "VisitKey": item.visit_key,
        "VisitOccurrence": item.visit_occurrence,
        "AssessmentSessionId": str(item.session_id),
        "AssessmentSessionStartedAt": tsv_cell(item.started_at),
        "BatteryVersion": item.battery_version,
        "ScorerVersion": item.scorer_version,
        **{column.name: column_description(column) for column in BEH_COLUMNS},
    }


def _tsv_sidecar(columns: tuple[Column, ...]) -> dict[str, Any]:
    return {column.name: column_description(column) for column in columns}


def _readme(study_name: str, study_code: str, export: dict[str, Any]) -> str:
    filters = json.dumps(export.get("filters") or {}, sort_keys=True)
    return f"""# {study_name} ({study_code}): behavioural data

Exported by the Metricis server {__version__} as a BIDS {BIDS_VERSION} dataset.
Export {export.get("export_id")}, created {export.get("created_at")}, filters: {filters}.

- sub-<label>/ses-<label>/beh/sub-<label>_ses-<label>_task-<label>[_run-<n>]_beh.tsv: one
  file per participant, visit and task, one row per trial, in the order of the task; the JSON
  sidecar beside each file describes its columns and names the participant code, visit,
  assessment session and scorer version it comes from.
- participants.tsv: participant_id (sub-<label>), the participant code, site, status and
  language. No contact details.
- sub-<label>/sub-<label>_sessions.tsv: which visit each session label stands for.
- codebook.csv, codebook.json: every column of the tables (listed in .bidsignore, as is
  export.json, which describes the export).

Labels are the participant code, the visit's event key (`occ<n>` added for the n-th
occurrence of a repeated event) and the task id with everything but letters and digits
removed; sessions outside any visit are `ses-{UNSCHEDULED}`. A label that would be empty or
shared (ignoring case) gets `x<n>` added, n the smallest free number, in sorted order.
Several assessment sessions of one task in one visit are runs, in the order they started.

Missing values are n/a. rt is in milliseconds as stored, response_time the same in seconds.
A tab, line feed or carriage return inside a text value is written as \\t, \\n, \\r.
"""


def _description(study_name: str, scorers: dict[str, set[str]]) -> dict[str, Any]:
    versions = "; ".join(f"{task} {', '.join(sorted(v))}" for task, v in sorted(scorers.items()))
    return {
        "Name": f"{study_name}: behavioural data",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "GeneratedBy": [
            {
                "Name": "Metricis",
                "Version": __version__,
                "Description": "export of the Metricis server; scorer versions of the tasks: "
                + (versions or "none"),
            }
        ],
    }


async def count_rows(session: AsyncSession, scope: ExportScope) -> int:
    statement = (
        session_select(scope, func.count(Trial.id))
        .join(Trial, Trial.session_id == AssessmentSession.id)
        .where(Trial.study_id == scope.study_id, scope.task_condition(Trial.task))
    )
    return int(await session.scalar(statement) or 0)


def _trials_select(scope: ExportScope) -> Any:
    return (
        session_select(
            scope,
            Trial.session_id,
            Trial.task,
            Trial.trial_index,
            Trial.rt,
            Trial.correct,
            Trial.response,
            Trial.stimulus,
            Trial.condition,
            Trial.is_practice,
            Trial.extra,
            Trial.id,
        )
        .join(Trial, Trial.session_id == AssessmentSession.id)
        .where(Trial.study_id == scope.study_id, scope.task_condition(Trial.task))
        .order_by(Trial.session_id, Trial.task, Trial.trial_index, Trial.id)
    )


def _plan(
    files: list[_BehFile],
    subjects: dict[uuid.UUID, str],
    visits: dict[tuple[str, int], str],
    tasks: dict[str, str],
) -> dict[uuid.UUID, dict[str, _Visit]]:
    """Give each file its path; the visits of each participant, by session label."""
    sessions: dict[uuid.UUID, dict[str, _Visit]] = {}
    runs: dict[tuple[uuid.UUID, str, str], list[_BehFile]] = {}
    for item in sorted(files, key=lambda f: (f.started_at, str(f.session_id), f.task)):
        if item.visit_key is None:
            ses = UNSCHEDULED
        else:
            ses = visits[(item.visit_key, item.visit_occurrence or 1)]
        visit = sessions.setdefault(item.participant_id, {}).setdefault(
            ses, _Visit(ses, item.visit_key, item.visit_occurrence, item.visit_label)
        )
        if item.session_id not in visit.sessions:
            visit.sessions.append(item.session_id)
            visit.started.append(item.started_at)
        item.session_label = ses
        runs.setdefault((item.participant_id, ses, tasks[item.task]), []).append(item)
    for (participant_id, ses, task_label), items in runs.items():
        sub = subjects[participant_id]
        for number, item in enumerate(items, start=1):
            run = f"_run-{number}" if len(items) > 1 else ""
            item.path = f"sub-{sub}/ses-{ses}/beh/sub-{sub}_ses-{ses}_task-{task_label}{run}_beh"
    return sessions


async def write_bids_archive(
    path: Path,
    session: AsyncSession,
    scope: ExportScope,
    *,
    study_name: str,
    study_code: str,
    export: dict[str, Any],
    progress: Progress,
) -> WrittenFile:
    """The BIDS dataset of the trials in `scope`, zipped at `path`."""
    files = await _beh_files(session, scope)
    subjects = await _participant_labels(session, scope.study_id)
    visits = await _visit_labels(session, scope.study_id)
    tasks = await _task_labels(session, scope.study_id)
    sessions = _plan(files, subjects, visits, tasks)
    by_key = {(item.session_id, item.task): item for item in files}
    scorers: dict[str, set[str]] = {}
    for item in files:
        if item.scorer_version:
            scorers.setdefault(item.task, set()).add(item.scorer_version)
    header = _line([column.name for column in BEH_COLUMNS])
    rows = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.writestr("dataset_description.json", _json(_description(study_name, scorers)))
        archive.writestr("README.md", _readme(study_name, study_code, export))
        archive.writestr(".bidsignore", "codebook.csv\ncodebook.json\nexport.json\n")
        for item in files:
            archive.writestr(
                f"{item.path}.json",
                _json(_sidecar(item, tasks[item.task], item.session_label)),
            )
        rows = await _write_trials(archive, session, scope, by_key, header, progress)
        await _write_participants(archive, session, scope, subjects, sessions)
        _write_sessions(archive, subjects, sessions)
        entries = codebook_entries(
            [
                ("beh", BEH_COLUMNS),
                ("participants", PARTICIPANT_COLUMNS),
                ("sessions", SESSION_COLUMNS),
            ]
        )
        archive.writestr("codebook.csv", codebook_csv(entries))
        archive.writestr("codebook.json", _json(entries))
        archive.writestr("export.json", _json(export))
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return WrittenFile(size_bytes=size, sha256=digest.hexdigest(), rows=rows)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


async def _write_trials(
    archive: zipfile.ZipFile,
    session: AsyncSession,
    scope: ExportScope,
    by_key: dict[tuple[uuid.UUID, str], _BehFile],
    header: bytes,
    progress: Progress,
) -> int:
    """Each file's trials, from one query ordered by session and task. A trial of a session or
    task that was not there when the export began (it arrived since) is left out, as the file
    plan was made without it."""
    result = await session.stream(_trials_select(scope).execution_options(yield_per=BATCH_ROWS))
    current: tuple[uuid.UUID, str] | None = None
    member: Any = None
    count = 0
    try:
        async for row in result:
            key = (row.session_id, row.task)
            if key != current:
                if member is not None:
                    member.close()
                    member = None
                current = key
                item = by_key.get(key)
                if item is None:
                    continue
                member = archive.open(f"{item.path}.tsv", "w", force_zip64=True)
                member.write(header)
            if member is None:
                continue
            member.write(
                _line(
                    [
                        row.trial_index,
                        row.rt,
                        seconds(row.rt),
                        row.correct,
                        row.response,
                        row.stimulus,
                        row.condition,
                        row.is_practice,
                        row.extra,
                        row.id,
                    ]
                )
            )
            count += 1
            if count % PROGRESS_EVERY_ROWS == 0:
                await progress(PROGRESS_EVERY_ROWS)
    finally:
        if member is not None:
            member.close()
    await progress(count % PROGRESS_EVERY_ROWS)
    return count


async def _write_participants(
    archive: zipfile.ZipFile,
    session: AsyncSession,
    scope: ExportScope,
    subjects: dict[uuid.UUID, str],
    sessions: dict[uuid.UUID, dict[str, _Visit]],
) -> None:
    """The participants with at least one beh file, by label (BIDS wants the table and the
    subject folders to agree)."""
    lines: list[tuple[str, bytes]] = []
    result = await session.stream(participants_select(scope).execution_options(yield_per=500))
    async for participant, site_code, _site_name in result:
        if participant.id not in sessions:
            continue
        label = f"sub-{subjects[participant.id]}"
        cells = [
            label,
            participant.participant_code,
            site_code,
            str(participant.status),
            participant.language,
        ]
        lines.append((label, _line(cells)))
    body = _line([column.name for column in PARTICIPANT_COLUMNS]) + b"".join(
        line for _, line in sorted(lines)
    )
    archive.writestr("participants.tsv", body)
    archive.writestr("participants.json", _json(_tsv_sidecar(PARTICIPANT_COLUMNS)))


def _write_sessions(
    archive: zipfile.ZipFile,
    subjects: dict[uuid.UUID, str],
    sessions: dict[uuid.UUID, dict[str, _Visit]],
) -> None:
    sidecar = _json(_tsv_sidecar(SESSION_COLUMNS))
    for participant_id, visits in sessions.items():
        sub = subjects[participant_id]
        body = _line([column.name for column in SESSION_COLUMNS])
        for label in sorted(visits):
            visit = visits[label]
            body += _line(
                [
                    f"ses-{label}",
                    visit.visit_key,
                    visit.occurrence,
                    visit.visit_label,
                    min(visit.started),
                    ";".join(str(s) for s in visit.sessions),
                ]
            )
        archive.writestr(f"sub-{sub}/sub-{sub}_sessions.tsv", body)
        archive.writestr(f"sub-{sub}/sub-{sub}_sessions.json", sidecar)
