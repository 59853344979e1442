"""The data of a report, read from the database into plain values for the renderer.

Reads only; the worker calls these in one read-only transaction. A participant withdrawn with
deletion of their data is never reported (as in exports): the participant report refuses them,
the study report counts them among the enrolled (as the dashboard does) but reads none of their
scores (erased with their data). A site-scoped job reads its site only.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalogue import UnknownModuleError, get_module
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult
from app.models.consent import ConsentForm, ConsentRecord
from app.models.export import ExportJob
from app.models.participant import Participant, WithdrawalScope
from app.models.schedule import Visit
from app.models.study import Site, Study
from app.models.user import UserRole
from app.services.dashboard import figures
from app.services.dashboard.scope import StudyScope
from app.services.dashboard.sql import member_text
from app.services.policy import StudyAccess
from app.services.reports.flag_text import explain_flag
from app.services.reports.metrics import (
    domain_title,
    key_metrics,
    number,
    task_domain,
    task_name,
    unit,
)

HISTOGRAM_BINS = 12
MAX_ENROLLMENT_POINTS = 36
WEEKLY_UP_TO_DAYS = 84
# Data quality in the study report covers the study's whole history (the dashboard: 30 days).
QUALITY_SINCE = datetime(2000, 1, 1, tzinfo=UTC)


class ReportSubjectGoneError(Exception):
    """The participant of a queued report was erased, or withdrew with deletion of their data,
    before the worker ran it (the job fails with this name as its error)."""


# ------------------------------------------------------------------------ participant report


@dataclass(frozen=True, slots=True)
class Point:
    """One task of one session: where it sits on the x axis and its key metrics' values."""

    label: str
    started_at: datetime
    values: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class FlagNote:
    label: str
    code: str
    sentence: str


@dataclass(frozen=True, slots=True)
class TaskSeries:
    task: str
    name: str
    metrics: list[str]
    units: dict[str, str]
    points: list[Point]
    flags: list[FlagNote]
    scorer_versions: list[str]


@dataclass(frozen=True, slots=True)
class DomainSection:
    domain: str
    title: str
    tasks: list[TaskSeries]


@dataclass(frozen=True, slots=True)
class ConsentLine:
    form_title: str
    form_version: int
    language: str
    signer_role: str
    signed_at: datetime
    withdrawn_at: datetime | None


@dataclass(frozen=True, slots=True)
class ParticipantReport:
    study_code: str
    study_name: str
    site: str | None
    participant_code: str
    status: str
    enrollment_date: date | None
    withdrawn_at: datetime | None
    contact_included: bool
    email: str | None
    phone: str | None
    consents: list[ConsentLine]
    sessions: int
    sessions_completed: int
    domains: list[DomainSection]
    generated_at: datetime


def _site_label(site: Site | None) -> str | None:
    return None if site is None else f"{site.code} – {site.name}"


def _visit_label(ordinal: int, label: str | None, occurrence: int | None) -> str:
    """The visit's label (with its occurrence after the first), or `Session n` for a session
    outside the schedule, n counting the participant's sessions from 1."""
    if label is None:
        return f"Session {ordinal}"
    return label if not occurrence or occurrence == 1 else f"{label} #{occurrence}"


async def participant_report(
    session: AsyncSession, job: ExportJob, encryptor: FieldEncryptor | None
) -> ParticipantReport:
    participant_ids = job.filters.get("participant_ids") or []
    participant = await session.get(Participant, uuid.UUID(participant_ids[0]))
    if (
        participant is None
        or participant.study_id != job.study_id
        or participant.withdrawal_scope == WithdrawalScope.DELETE_DATA
    ):
        raise ReportSubjectGoneError
    study = await session.get(Study, job.study_id)
    assert study is not None
    site = await session.get(Site, participant.site_id) if participant.site_id else None

    email = phone = None
    if encryptor is not None:
        email = (
            encryptor.decrypt(participant.email_encrypted) if participant.email_encrypted else None
        )
        phone = (
            encryptor.decrypt(participant.phone_encrypted) if participant.phone_encrypted else None
        )

    consent_rows = await session.execute(
        select(ConsentRecord, ConsentForm.title, ConsentForm.language)
        .join(ConsentForm, ConsentForm.id == ConsentRecord.form_id)
        .where(ConsentRecord.participant_id == participant.id)
        .order_by(ConsentRecord.signed_at, ConsentRecord.id)
    )
    consents = [
        ConsentLine(
            form_title=title,
            form_version=record.form_version,
            language=language,
            signer_role=record.signer_role.value,
            signed_at=record.signed_at,
            withdrawn_at=record.withdrawn_at,
        )
        for record, title, language in consent_rows
    ]

    sessions = (
        await session.scalars(
            select(AssessmentSession.status).where(
                AssessmentSession.participant_id == participant.id
            )
        )
    ).all()
    rows = await session.execute(
        select(
            TaskResult,
            AssessmentSession.id,
            AssessmentSession.started_at,
            Visit.label,
            Visit.occurrence,
        )
        .join(AssessmentSession, AssessmentSession.id == TaskResult.session_id)
        .outerjoin(Visit, Visit.id == AssessmentSession.visit_id)
        .where(AssessmentSession.participant_id == participant.id)
        .order_by(AssessmentSession.started_at, AssessmentSession.id, TaskResult.task)
    )
    by_task: dict[str, list[tuple[TaskResult, str, datetime]]] = defaultdict(list)
    ordinals: dict[uuid.UUID, int] = {}
    for result, session_id, started_at, label, occurrence in rows:
        ordinal = ordinals.setdefault(session_id, len(ordinals) + 1)
        by_task[result.task].append((result, _visit_label(ordinal, label, occurrence), started_at))

    sections: dict[str, list[TaskSeries]] = defaultdict(list)
    for task in sorted(by_task):
        results = by_task[task]
        metrics = key_metrics(task, [result.scores for result, _, _ in results])
        points = [
            Point(label, started_at, {m: number(result.scores.get(m)) for m in metrics})
            for result, label, started_at in results
        ]
        notes = [
            FlagNote(
                label,
                str(flag.get("code")),
                explain_flag(str(flag.get("code")), flag.get("evidence")),
            )
            for result, label, _ in results
            for flag in result.flags
            if isinstance(flag, dict)
        ]
        versions = sorted({result.scorer_version for result, _, _ in results})
        sections[task_domain(task)].append(
            TaskSeries(
                task=task,
                name=task_name(task),
                metrics=metrics,
                units={m: unit(m) for m in metrics},
                points=points,
                flags=notes,
                scorer_versions=versions,
            )
        )
    return ParticipantReport(
        study_code=study.code,
        study_name=study.name,
        site=_site_label(site),
        participant_code=participant.participant_code,
        status=participant.status.value,
        enrollment_date=participant.enrollment_date,
        withdrawn_at=participant.withdrawn_at,
        contact_included=encryptor is not None,
        email=email,
        phone=phone,
        consents=consents,
        sessions=len(sessions),
        sessions_completed=sum(1 for s in sessions if s == SessionStatus.COMPLETED),
        domains=[
            DomainSection(domain, domain_title(domain), sections[domain])
            for domain in sorted(sections)
        ],
        generated_at=utcnow(),
    )


# ------------------------------------------------------------------------------ study report


@dataclass(frozen=True, slots=True)
class SiteRow:
    label: str
    participants: int
    visits_completed: int
    visits_due: int
    adherence: float | None
    tasks: int = 0
    flags: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Participants enrolled by the end of each period, per site (cumulative)."""

    periods: list[str]
    by_site: dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class Histogram:
    task: str
    name: str
    metric: str
    unit: str
    edges: list[float]
    counts: list[int]
    n: int
    median: float | None


@dataclass(frozen=True, slots=True)
class StudyReport:
    study_code: str
    study_name: str
    study_status: str
    site_scope: str | None
    participants: int
    sessions: int
    sites: list[SiteRow]
    enrollment: Enrollment
    flag_codes: list[str]
    histograms: list[Histogram]
    generated_at: datetime


def _kept(study_id: uuid.UUID) -> list[ColumnElement[bool]]:
    return [
        Participant.study_id == study_id,
        or_(
            Participant.withdrawal_scope.is_(None),
            Participant.withdrawal_scope != WithdrawalScope.DELETE_DATA,
        ),
    ]


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _period_starts(first: date, last: date) -> tuple[list[date], str]:
    """Weeks (from Monday) when the enrollment spans at most WEEKLY_UP_TO_DAYS, else months,
    from the period before the first enrollment (a baseline at 0) to the last one."""
    if (last - first).days <= WEEKLY_UP_TO_DAYS:
        start = first - timedelta(days=first.weekday() + 7)
        weeks = [start]
        while weeks[-1] + timedelta(days=7) <= last:
            weeks.append(weeks[-1] + timedelta(days=7))
        return weeks, "week"
    month = date(first.year, first.month, 1)
    months = [date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)]
    while months[-1] < date(last.year, last.month, 1):
        months.append(_next_month(months[-1]))
    return months, "month"


def enrollment_by_site(rows: Sequence[tuple[str, date]]) -> Enrollment:
    """Cumulative enrollment at the end of each week or month, at most MAX_ENROLLMENT_POINTS
    points (longer studies are sampled every few months, the last period always included)."""
    if not rows:
        return Enrollment([], {})
    starts, kind = _period_starts(min(day for _, day in rows), max(day for _, day in rows))
    step = -(-len(starts) // MAX_ENROLLMENT_POINTS)
    shown = starts[::-1][::step][::-1]

    def end(start: date) -> date:
        return start + timedelta(days=7) if kind == "week" else _next_month(start)

    by_site: dict[str, list[int]] = {}
    for label in sorted({label for label, _ in rows}):
        days = [day for site, day in rows if site == label]
        by_site[label] = [sum(1 for day in days if day < end(start)) for start in shown]
    labels = [start.isoformat() if kind == "week" else start.strftime("%Y-%m") for start in shown]
    return Enrollment(labels, by_site)


def histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> tuple[list[float], list[int]]:
    """Equal-width bins from the smallest to the largest value (one bin when all are equal)."""
    low, high = min(values), max(values)
    if high == low:
        return [low, high], [len(values)]
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [low + width * i for i in range(bins + 1)], counts


def _median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _stored_number(value: Any) -> float | None:
    """A metric as the database extracted it: a number, or its text (PostgreSQL's `->>`)."""
    if isinstance(value, str):
        try:
            return number(float(value))
        except ValueError:
            return None
    return number(value)


async def _candidate_metrics(
    session: AsyncSession, results: Callable[..., Select[Any]], task: str
) -> list[str]:
    """The task's key metrics, main first, in the order a histogram tries them (a metric no
    result holds gives way to the next). A catalogue task's come from its summary metrics; a
    task outside the catalogue's from the metrics its results hold."""
    try:
        names: Iterable[str] = get_module(task).summary_metrics
    except UnknownModuleError:
        found: set[str] = set()
        for scores in await session.scalars(
            results(TaskResult.scores).where(TaskResult.task == task)
        ):
            if isinstance(scores, dict):
                found.update(name for name, value in scores.items() if number(value) is not None)
        names = found
    return key_metrics(task, [dict.fromkeys(names, 0.0)])


async def study_report(session: AsyncSession, job: ExportJob) -> StudyReport:
    study = await session.get(Study, job.study_id)
    assert study is not None
    now = utcnow()
    dialect = session.get_bind().dialect.name
    await figures.without_jit(session, dialect)
    access = StudyAccess(study_id=study.id, role=UserRole.ADMIN, site_id=job.scope_site_id)
    scope = StudyScope(study, access)
    scope_site = await session.get(Site, job.scope_site_id) if job.scope_site_id else None

    sites = []
    for row in await figures.site_figures(session, scope, now):
        label = _site_label(row.site) or "No site"
        tasks = 0
        flags: dict[str, int] = {}
        if row.site is not None:
            site_scope = StudyScope(study, StudyAccess(study.id, UserRole.ADMIN, row.site.id))
            quality = await figures.quality_figures(session, site_scope, QUALITY_SINCE, dialect)
            tasks, flags = quality.tasks, quality.tasks_by_flag
        sites.append(
            SiteRow(
                label=label,
                participants=row.participants,
                visits_completed=row.visits.completed,
                visits_due=row.visits.due,
                adherence=row.visits.adherence,
                tasks=tasks,
                flags=flags,
            )
        )

    # Every participant, as on the dashboard: one withdrawn later was enrolled all the same.
    people = (
        select(Site.code, Participant.enrollment_date, Participant.created_at)
        .outerjoin(Site, Site.id == Participant.site_id)
        .where(Participant.study_id == study.id)
    )
    if job.scope_site_id is not None:
        people = people.where(Participant.site_id == job.scope_site_id)
    enrolled = [
        (code or "No site", day or created.date())
        for code, day, created in await session.execute(people)
    ]

    def results(*columns: Any) -> Select[Any]:
        statement = (
            select(*columns)
            .select_from(TaskResult)
            .join(AssessmentSession, AssessmentSession.id == TaskResult.session_id)
            .join(Participant, Participant.id == AssessmentSession.participant_id)
            .where(AssessmentSession.study_id == study.id, *_kept(study.id))
        )
        if job.scope_site_id is not None:
            statement = statement.where(Participant.site_id == job.scope_site_id)
        return statement

    histograms = []
    task_ids = (await session.scalars(results(TaskResult.task).distinct())).all()
    for task in sorted(task_ids):
        # The database extracts one metric's value per result: no score document is decoded
        # here, so memory and time follow the number of results, not the size of their scores.
        for metric in await _candidate_metrics(session, results, task):
            raw = await session.scalars(
                results(member_text(TaskResult.scores.expression, metric, dialect)).where(
                    TaskResult.task == task
                )
            )
            values = [v for value in raw if (v := _stored_number(value)) is not None]
            if values:
                edges, counts = histogram(values)
                histograms.append(
                    Histogram(
                        task,
                        task_name(task),
                        metric,
                        unit(metric),
                        edges,
                        counts,
                        len(values),
                        _median(values),
                    )
                )
                break

    sessions_statement = (
        select(func.count())
        .select_from(AssessmentSession)
        .join(Participant, Participant.id == AssessmentSession.participant_id)
        .where(AssessmentSession.study_id == study.id, *_kept(study.id))
    )
    if job.scope_site_id is not None:
        sessions_statement = sessions_statement.where(Participant.site_id == job.scope_site_id)
    session_count = int(await session.scalar(sessions_statement) or 0)

    codes = sorted({code for row in sites for code in row.flags})
    return StudyReport(
        study_code=study.code,
        study_name=study.name,
        study_status=study.status.value,
        site_scope=_site_label(scope_site),
        participants=len(enrolled),
        sessions=session_count,
        sites=sites,
        enrollment=enrollment_by_site(enrolled),
        flag_codes=codes,
        histograms=histograms,
        generated_at=now,
    )
