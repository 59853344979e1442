"""Export jobs: created by the API, run by a worker of the `exports` queue, downloaded, expired.

Creating a job writes its row (queued) and an audit event in the request's transaction, and
asks a worker to run queued jobs once it commits (`EXPORTS_QUEUED`); beat asks too, so a lost
request only delays the job. A worker claims one queued job at a time with a conditional update
(a second worker finds it taken), writes the file to local scratch space while recording its
progress in short transactions of their own, hands it to the storage and marks the job ready
with the file's size and SHA-256, or failed with the kind of error. A job left running by a
worker that died is taken again once it has not moved for the task's time limit.

PDF reports (docs/reports.md) are jobs of the same table, of dataset `participant_report` or
`study_report` and format `pdf`: one status, one worker, one storage, one expiry and one set of
audit events, named `report.*` rather than `export.*`. Each route family sees its own jobs only
(`EXPORTS`, `REPORTS`), so a report's id is 404 under `/api/exports` and the other way round.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core import events as after_commit
from app.core.clock import utcnow
from app.core.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    NotFoundError,
    ValidationFailedError,
)
from app.core.logging import get_logger
from app.core.security import FieldEncryptor
from app.models.audit import AuditCategory
from app.models.export import ExportJob, ExportStatus
from app.models.outbox import EventType
from app.models.participant import Participant, WithdrawalScope
from app.models.study import Site, Study
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.exports import bids, datasets
from app.services.exports.scope import ExportFilters, ExportScope
from app.services.exports.writers import Table, WrittenFile, write_archive
from app.services.file_storage import FileStorage, export_storage, report_storage, scratch_dir
from app.services.outbox.writer import emit as emit_outbox_event
from app.services.policy import Capability, StudyAccess, require_study_capability
from app.services.principals import StaffPrincipal

logger = get_logger(__name__)

EXPORTS_QUEUED = "exports.queued"
ACTIVE = (ExportStatus.QUEUED, ExportStatus.RUNNING)
# At most this often a running job writes its progress.
PROGRESS_INTERVAL_SECONDS = 0.5


PARTICIPANT_REPORT = "participant_report"
STUDY_REPORT = "study_report"
REPORT_DATASETS = frozenset({PARTICIPANT_REPORT, STUDY_REPORT})


class ExportGoneError(DomainError):
    status_code = 410
    code = "EXPORT_GONE"


@dataclass(frozen=True, slots=True)
class JobFamily:
    """Export jobs or report jobs: which rows a family's routes see, and the word their audit
    events and messages use."""

    noun: str
    reports: bool

    def holds(self, job: ExportJob) -> bool:
        return (job.dataset in REPORT_DATASETS) == self.reports

    def condition(self) -> ColumnElement[bool]:
        if self.reports:
            return ExportJob.dataset.in_(REPORT_DATASETS)
        return ExportJob.dataset.not_in(REPORT_DATASETS)

    @property
    def title(self) -> str:
        return self.noun.capitalize()


EXPORTS = JobFamily("export", reports=False)
REPORTS = JobFamily("report", reports=True)


def family_of(job: ExportJob) -> JobFamily:
    return REPORTS if job.dataset in REPORT_DATASETS else EXPORTS


@dataclass(frozen=True, slots=True)
class ExportRequest:
    study_id: uuid.UUID
    format: str
    dataset: str
    filters: ExportFilters
    include_contact_details: bool = False


def report_participant_id(job: ExportJob) -> uuid.UUID | None:
    """The participant a participant report is about (None for any other job)."""
    if job.dataset != PARTICIPANT_REPORT:
        return None
    return uuid.UUID(job.filters["participant_ids"][0])


def job_storage(settings: Settings, job: ExportJob) -> FileStorage:
    """Where a job's file lives: reports in the reports area, exports in the exports area.
    Blocking the first time (an S3 client reads its service model): call it in a thread."""
    if job.dataset in REPORT_DATASETS:
        return report_storage(settings)
    return export_storage(settings)


def subject(job: ExportJob) -> AuditSubject:
    """The job, in its study; a participant report's events are about its participant too, so
    the audit trail scopes them by site like any event about a participant."""
    return AuditSubject(
        AuditCategory.EXPORT, family_of(job).noun, job.id, job.study_id, report_participant_id(job)
    )


def _summary(job: ExportJob) -> dict[str, Any]:
    return {
        "format": job.format,
        "dataset": job.dataset,
        "filters": job.filters,
        "include_contact_details": job.include_contact_details,
        "site_id": str(job.scope_site_id) if job.scope_site_id else None,
    }


async def _require_sites_of_study(
    session: AsyncSession, study_id: uuid.UUID, site_ids: list[uuid.UUID], field: str
) -> None:
    """422 naming `field` when a site filter names a site that is not one of the study's (a
    site of another study, or no site at all): such a filter is a mistake, not an empty
    selection."""
    if not site_ids:
        return
    known = set(
        (
            await session.scalars(
                select(Site.id).where(Site.study_id == study_id, Site.id.in_(site_ids))
            )
        ).all()
    )
    unknown = [str(s) for s in site_ids if s not in known]
    if unknown:
        raise ValidationFailedError(
            "These sites are not sites of the study", details={field: unknown}
        )


async def create_export(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    request: ExportRequest,
) -> ExportJob:
    """A queued job; 404 for a study the caller cannot see, 403 without the export capability
    (or, for contact details, without the right to see them), 422 for a site filter naming a
    site of another study."""
    access = await require_study_capability(session, principal, request.study_id, Capability.EXPORT)
    if request.include_contact_details:
        access.require(Capability.SEE_CONTACT_DETAILS)
    await _require_sites_of_study(session, request.study_id, request.filters.site_ids, "site_ids")
    job = ExportJob(
        id=uuid.uuid4(),
        study_id=request.study_id,
        created_by=principal.user_id,
        scope_site_id=access.site_id,
        format=request.format,
        dataset=request.dataset,
        filters=request.filters.as_json(),
        include_contact_details=request.include_contact_details,
        status=ExportStatus.QUEUED,
        rows_done=0,
    )
    session.add(job)
    await record_about(session, context, subject(job), "export.created", after=_summary(job))
    after_commit.emit_once(session, EXPORTS_QUEUED, {})
    return job


async def _visible_job(
    session: AsyncSession, principal: StaffPrincipal, export_id: uuid.UUID, family: JobFamily
) -> tuple[ExportJob, StudyAccess]:
    """A job of the family, of a study where the caller may export; a site-scoped member sees
    the jobs of their own site only. Anything else is 404 (or 403 for a role without the
    capability)."""
    missing = f"{family.title} not found"
    job = await session.get(ExportJob, export_id)
    if job is None or not family.holds(job):
        raise NotFoundError(missing)
    try:
        access = await require_study_capability(session, principal, job.study_id, Capability.EXPORT)
    except NotFoundError:
        raise NotFoundError(missing) from None
    if access.site_id is not None and job.scope_site_id != access.site_id:
        raise NotFoundError(missing)
    return job, access


async def get_export(
    session: AsyncSession,
    principal: StaffPrincipal,
    export_id: uuid.UUID,
    family: JobFamily = EXPORTS,
) -> ExportJob:
    job, _ = await _visible_job(session, principal, export_id, family)
    return job


async def list_exports(
    session: AsyncSession,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    limit: int = 100,
    family: JobFamily = EXPORTS,
) -> list[ExportJob]:
    access = await require_study_capability(session, principal, study_id, Capability.EXPORT)
    statement = select(ExportJob).where(ExportJob.study_id == study_id, family.condition())
    if access.site_id is not None:
        statement = statement.where(ExportJob.scope_site_id == access.site_id)
    statement = statement.order_by(ExportJob.created_at.desc(), ExportJob.id).limit(limit)
    return list((await session.scalars(statement)).all())


@dataclass(frozen=True, slots=True)
class Download:
    job: ExportJob
    chunks: Iterator[bytes]  # read lazily: nothing is fetched unless iterated
    # A short-lived address of the file in the object store, when the storage has one: the
    # client fetches it from there instead of through this server.
    url: str | None = None


async def download_export(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    export_id: uuid.UUID,
    family: JobFamily = EXPORTS,
) -> Download:
    """The file of a ready job, audited with its hash; 409 while it is being made or when it
    failed, 410 once it expired or was deleted."""
    job, _ = await _visible_job(session, principal, export_id, family)
    gone = f"This {family.noun}'s file no longer exists"
    if job.status in (ExportStatus.EXPIRED, ExportStatus.DELETED):
        raise ExportGoneError(gone, details={"status": job.status.value})
    if job.status != ExportStatus.READY or job.file_path is None:
        raise ConflictError(
            f"This {family.noun} is not ready",
            details={"reason": "EXPORT_NOT_READY", "status": job.status},
        )
    about = report_participant_id(job)
    if about is not None:
        participant = await session.get(Participant, about)
        if participant is None or participant.withdrawal_scope == WithdrawalScope.DELETE_DATA:
            # Made before the participant's data was erased: never served again (the sweep
            # removes the file when it expires).
            raise ExportGoneError(gone, details={"status": "participant_erased"})
    # Building the S3 client the first time reads its service model from disk: in a thread.
    storage = await asyncio.to_thread(job_storage, settings, job)
    path = job.file_path
    if not await asyncio.to_thread(storage.exists, path):
        raise ExportGoneError(gone, details={"status": "missing"})
    await record_about(
        session,
        context,
        subject(job),
        f"{family.noun}.downloaded",
        after={"sha256": job.sha256, "size_bytes": job.size_bytes, "file_name": job.file_name},
    )
    is_report = job.dataset in REPORT_DATASETS
    url = await asyncio.to_thread(
        storage.download_url,
        path,
        job.file_name or f"{job.id.hex}.{'pdf' if is_report else 'zip'}",
        "application/pdf" if is_report else "application/zip",
    )
    return Download(job=job, chunks=storage.iter_chunks(path), url=url)


async def delete_export(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    export_id: uuid.UUID,
    family: JobFamily = EXPORTS,
) -> ExportJob:
    """Remove the file and mark the job deleted: its creator, or a researcher or administrator
    of the study. A job still queued or running cannot be deleted yet (409)."""
    job, access = await _visible_job(session, principal, export_id, family)
    if job.created_by != principal.user_id and access.role not in ("researcher", "admin"):
        raise ForbiddenError(f"Only the {family.noun}'s creator or a researcher may delete it")
    if job.status in ACTIVE:
        raise ConflictError(
            f"This {family.noun} is still being made", details={"reason": "EXPORT_RUNNING"}
        )
    if job.status == ExportStatus.DELETED:
        return job
    before = {"status": job.status.value, "sha256": job.sha256}
    path = job.file_path
    job.status = ExportStatus.DELETED
    job.file_path = None
    await record_about(
        session,
        context,
        subject(job),
        f"{family.noun}.deleted",
        before=before,
        after={"status": "deleted"},
    )
    await session.flush()
    if path is not None:
        storage = await asyncio.to_thread(job_storage, settings, job)
        await asyncio.to_thread(storage.delete, path)
    return job


async def authorize_trials_stream(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    filters: ExportFilters,
    *,
    spreadsheet_safe: bool,
) -> ExportScope:
    """The scope of a direct streamed trials CSV, audited before the first byte leaves (a
    stream has no file, so no hash: the event records the filters). A `site_id` that is not
    a site of the study is 422, as in a job's filters."""
    access = await require_study_capability(session, principal, study_id, Capability.EXPORT)
    await _require_sites_of_study(session, study_id, filters.site_ids, "site_id")
    await record_about(
        session,
        context,
        AuditSubject(AuditCategory.EXPORT, "study", study_id, study_id),
        "export.streamed",
        after={
            "dataset": "trials",
            "format": "csv",
            "filters": filters.as_json(),
            "spreadsheet_safe": spreadsheet_safe,
            "site_id": str(access.site_id) if access.site_id else None,
        },
    )
    return ExportScope(study_id, filters, access.site_id)


# ---------------------------------------------------------------------------------- worker side


async def _claim(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> uuid.UUID | None:
    """Take the oldest queued job (or one whose worker died): its id, or None."""
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.WORKER_TASK_TIME_LIMIT_SECONDS)
    claimable = or_(
        ExportJob.status == ExportStatus.QUEUED,
        (ExportJob.status == ExportStatus.RUNNING) & (ExportJob.updated_at < stale_before),
    )
    async with sessions() as session, session.begin():
        candidate = await session.scalar(
            select(ExportJob.id).where(claimable).order_by(ExportJob.created_at).limit(1)
        )
        if candidate is None:
            return None
        result = await session.execute(
            update(ExportJob)
            .where(ExportJob.id == candidate, claimable)
            .values(
                status=ExportStatus.RUNNING,
                started_at=now,
                updated_at=now,
                rows_done=0,
                rows_total=None,
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
        return candidate if result.rowcount == 1 else None  # type: ignore[attr-defined]


async def run_pending_exports(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, max_jobs: int = 20
) -> dict[str, int]:
    """Run queued jobs one after another until none is left (or `max_jobs` ran)."""
    report = {"ready": 0, "failed": 0}
    for _ in range(max_jobs):
        job_id = await _claim(sessions, settings)
        if job_id is None:
            break
        status = await run_export(sessions, settings, job_id)
        report[status.value] = report.get(status.value, 0) + 1
    return report


async def _tables(
    session: AsyncSession,
    job: ExportJob,
    scope: ExportScope,
    encryptor: FieldEncryptor | None,
) -> tuple[list[Table], int]:
    """The job's tables and the number of rows they hold."""
    wanted = {
        "trials": ("trials",),
        "summaries": ("scores",),
        "sessions": ("scores",),
        "participants": ("participants",),
        "all": ("trials", "scores", "participants"),
    }[job.dataset]
    tables: list[Table] = []
    total = 0
    for name in wanted:
        if name == "trials":
            total += await datasets.count_trials(session, scope)
            tables.append(
                Table("trials", datasets.TRIAL_COLUMNS, datasets.trial_rows(session, scope))
            )
        elif name == "scores" and job.format == "json":
            total += await datasets.count_sessions(session, scope)
            tables.append(
                Table(
                    "sessions",
                    datasets.SESSION_JSON_COLUMNS,
                    datasets.session_documents(session, scope),
                )
            )
        elif name == "scores":
            total += await datasets.count_sessions(session, scope)
            columns = await datasets.score_columns(session, scope)
            tables.append(Table("scores", columns, datasets.score_rows(session, scope)))
        else:
            total += await datasets.count_participants(session, scope)
            tables.append(
                Table(
                    "participants",
                    datasets.participant_columns(encryptor is not None),
                    datasets.participant_rows(session, scope, encryptor),
                )
            )
    return tables, total


async def run_export(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, job_id: uuid.UUID
) -> ExportStatus:
    """Make the claimed job's file (a zip, or a report's PDF); the job's final status."""
    async with sessions() as session:
        job = await session.get(ExportJob, job_id)
        assert job is not None
        study = await session.get(Study, job.study_id)
        assert study is not None
        study_code, study_name = study.code, study.name
    is_report = job.dataset in REPORT_DATASETS
    extension = "pdf" if is_report else "zip"
    scratch = scratch_dir(settings) / f"{job.id.hex}.{extension}"
    key = f"{job.study_id}/{job.id.hex}.{extension}"
    if is_report:
        file_name = f"{study_code}-{job.dataset.replace('_', '-')}-{job.id.hex[:8]}.pdf"
    else:
        file_name = f"{study_code}-{job.dataset}-{job.format}-{job.id.hex[:8]}.zip"
    storage: FileStorage = await asyncio.to_thread(job_storage, settings, job)
    try:
        if is_report:
            written = await _write_report(sessions, settings, job, scratch)
        else:
            written = await _write_export(sessions, settings, job, study_code, study_name, scratch)
        # Blocking (a rename, or an upload in parts): in a thread, never on the event loop.
        await asyncio.to_thread(storage.put, key, scratch)
    except Exception as exc:
        scratch.unlink(missing_ok=True)
        logger.warning(
            f"{family_of(job).noun}_failed", export_id=str(job.id), error=type(exc).__name__
        )
        await _finish_failed(sessions, job.id, type(exc).__name__)
        return ExportStatus.FAILED
    await _finish_ready(
        sessions, settings, job.id, key, file_name, written.size_bytes, written.sha256
    )
    return ExportStatus.READY


async def _write_export(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    job: ExportJob,
    study_code: str,
    study_name: str,
    scratch: Path,
) -> WrittenFile:
    scope = ExportScope(job.study_id, ExportFilters.from_json(job.filters), job.scope_site_id)
    encryptor = FieldEncryptor.from_settings(settings) if job.include_contact_details else None
    async with sessions() as reader, reader.begin():
        # Read-only: on SQLite it must not hold the write lock the progress updates need.
        await reader.connection(execution_options={"sqlite_deferred": True})
        tables: list[Table] = []
        if job.format == "bids":
            total = await bids.count_rows(reader, scope)
        else:
            tables, total = await _tables(reader, job, scope, encryptor)
        await _set_progress(sessions, job.id, 0, total)
        progress = _ProgressRecorder(sessions, job.id, total)
        readme = {
            "export_id": str(job.id),
            "study_id": str(job.study_id),
            "study_code": study_code,
            "format": job.format,
            "dataset": job.dataset,
            "filters": job.filters,
            "site_id": str(job.scope_site_id) if job.scope_site_id else None,
            "contains_contact_details": job.include_contact_details,
            "created_at": job.created_at.isoformat(),
            "spreadsheet_safe_csv": job.format == "csv",
        }
        if job.format == "bids":
            written = await bids.write_bids_archive(
                scratch,
                reader,
                scope,
                study_name=study_name,
                study_code=study_code,
                export=readme,
                progress=progress,
            )
        else:
            written = await write_archive(scratch, job.format, tables, readme, progress)
        await progress.flush()
    return written


async def _write_report(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    job: ExportJob,
    scratch: Path,
) -> WrittenFile:
    """A report is one step: its progress goes from 0 of 1 to 1 of 1."""
    # Imported here: reportlab takes a noticeable time to import, and only workers need it.
    from app.services.reports.build import write_report

    await _set_progress(sessions, job.id, 0, 1)
    async with sessions() as reader, reader.begin():
        await reader.connection(execution_options={"sqlite_deferred": True})
        written = await write_report(reader, settings, job, scratch)
    await _set_progress(sessions, job.id, 1, 1)
    return written


class _ProgressRecorder:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, total: int
    ) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._total = total
        self._done = 0
        self._written_at = time.monotonic()

    async def __call__(self, rows: int) -> None:
        self._done += rows
        if time.monotonic() - self._written_at >= PROGRESS_INTERVAL_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        self._written_at = time.monotonic()
        await _set_progress(self._sessions, self._job_id, self._done, self._total)


async def _set_progress(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, done: int, total: int
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id, ExportJob.status == ExportStatus.RUNNING)
            .values(rows_done=done, rows_total=total, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def _finish_ready(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    job_id: uuid.UUID,
    key: str,
    file_name: str,
    size: int,
    sha256: str,
) -> None:
    now = utcnow()
    async with sessions() as session, session.begin():
        job = await session.get(ExportJob, job_id, with_for_update=True)
        assert job is not None
        job.status = ExportStatus.READY
        job.finished_at = now
        job.expires_at = now + timedelta(hours=settings.EXPORT_EXPIRY_HOURS)
        job.file_path = key
        job.file_name = file_name
        job.size_bytes = size
        job.sha256 = sha256
        if job.rows_total is not None:
            job.rows_done = job.rows_total
        after = {
            "sha256": sha256,
            "size_bytes": size,
            "rows": job.rows_total,
            "expires_at": job.expires_at.isoformat(),
            "contains_contact_details": job.include_contact_details,
        }
        noun = family_of(job).noun
        await record_about(
            session, AuditContext.system(), subject(job), f"{noun}.ready", after=after
        )
        if job.dataset in REPORT_DATASETS:
            # The `export.ready` webhook announces exports, which subscribers fetch under
            # /api/exports; reports have no webhook event.
            return
        await emit_outbox_event(
            session,
            EventType.EXPORT_READY,
            job.study_id,
            {
                "export_id": str(job.id),
                "format": job.format,
                "dataset": job.dataset,
                "size_bytes": size,
                "sha256": sha256,
                "expires_at": job.expires_at.isoformat(),
            },
        )


async def _finish_failed(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, error: str
) -> None:
    async with sessions() as session, session.begin():
        job = await session.get(ExportJob, job_id, with_for_update=True)
        assert job is not None
        job.status = ExportStatus.FAILED
        job.finished_at = utcnow()
        job.error = error
        await record_about(
            session,
            AuditContext.system(),
            subject(job),
            f"{family_of(job).noun}.failed",
            after={"error": error},
        )


async def sweep_expired_exports(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Remove the files of ready jobs past their expiry; the number removed."""
    jobs = (
        await session.scalars(
            select(ExportJob)
            .where(ExportJob.status == ExportStatus.READY, ExportJob.expires_at <= now)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for job in jobs:
        storage = await asyncio.to_thread(job_storage, settings, job)
        path = job.file_path
        job.status = ExportStatus.EXPIRED
        job.file_path = None
        await record_about(
            session,
            AuditContext.system(),
            subject(job),
            f"{family_of(job).noun}.expired",
            before={"sha256": job.sha256},
            after={"status": "expired"},
        )
        if path is not None:
            await asyncio.to_thread(storage.delete, path)
    return len(jobs)
