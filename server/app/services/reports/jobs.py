"""Creating report jobs. A report is an export job of dataset `participant_report` or
`study_report` and format `pdf` (docs/reports.md): it is queued, run, downloaded, deleted and
expired by `app.services.exports.jobs`, whose `REPORTS` family the report routes use.

Both need the study's `export` capability, like exports: a report is the study's data leaving
the server. A participant report with contact details needs the right to see them too. A
site-scoped member reports on their own site only: a participant of another site is 404, and
their study report covers their site.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import events as after_commit
from app.core.errors import ConflictError, NotFoundError
from app.models.export import ExportJob, ExportStatus
from app.models.participant import Participant, WithdrawalScope
from app.services.audit import AuditContext
from app.services.audit_subjects import record_about
from app.services.exports.jobs import (
    EXPORTS_QUEUED,
    PARTICIPANT_REPORT,
    STUDY_REPORT,
    subject,
)
from app.services.exports.scope import ExportFilters
from app.services.policy import Capability, StudyAccess, require_study_capability
from app.services.principals import StaffPrincipal

PDF = "pdf"


def _summary(job: ExportJob) -> dict[str, Any]:
    return {
        "dataset": job.dataset,
        "format": job.format,
        "participant_ids": job.filters.get("participant_ids", []),
        "include_contact_details": job.include_contact_details,
        "site_id": str(job.scope_site_id) if job.scope_site_id else None,
    }


async def _queue(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    access: StudyAccess,
    dataset: str,
    filters: ExportFilters,
    include_contact_details: bool,
) -> ExportJob:
    job = ExportJob(
        id=uuid.uuid4(),
        study_id=access.study_id,
        created_by=principal.user_id,
        scope_site_id=access.site_id,
        format=PDF,
        dataset=dataset,
        filters=filters.as_json(),
        include_contact_details=include_contact_details,
        status=ExportStatus.QUEUED,
        rows_done=0,
    )
    session.add(job)
    await record_about(session, context, subject(job), "report.created", after=_summary(job))
    after_commit.emit_once(session, EXPORTS_QUEUED, {})
    return job


async def create_participant_report(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    participant_id: uuid.UUID,
    *,
    include_contact_details: bool = False,
) -> ExportJob:
    """A queued participant report: 404 for a study the caller cannot see or a participant who
    is not in it (or not in the caller's site), 403 without `export` (or, for contact details,
    without the right to see them), 409 for a participant whose data was deleted."""
    access = await require_study_capability(session, principal, study_id, Capability.EXPORT)
    participant = await session.get(Participant, participant_id)
    if (
        participant is None
        or participant.study_id != study_id
        or not access.sees_site(participant.site_id)
    ):
        raise NotFoundError("Participant not found")
    if include_contact_details:
        access.require(Capability.SEE_CONTACT_DETAILS)
    if participant.withdrawal_scope == WithdrawalScope.DELETE_DATA:
        raise ConflictError(
            "This participant withdrew with deletion of their data",
            details={"reason": "PARTICIPANT_DATA_DELETED"},
        )
    filters = ExportFilters(participant_ids=[participant.id])
    return await _queue(
        session, context, principal, access, PARTICIPANT_REPORT, filters, include_contact_details
    )


async def create_study_report(
    session: AsyncSession, context: AuditContext, principal: StaffPrincipal, study_id: uuid.UUID
) -> ExportJob:
    """A queued study report (of the caller's site when they are site-scoped): 404 for a study
    the caller cannot see, 403 without `export`. It holds no contact detail."""
    access = await require_study_capability(session, principal, study_id, Capability.EXPORT)
    return await _queue(session, context, principal, access, STUDY_REPORT, ExportFilters(), False)
