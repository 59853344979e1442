"""REDCap's Data Entry Trigger: REDCap posts (form-encoded) `project_id`, `record`,
`instrument`, `redcap_event_name`, `redcap_url`, ... to the project's trigger URL whenever a
record is saved; the server imports that record as a participant (created, or skipped when it
exists; docs/redcap.md).

The URL's token is the credential: 256 random bits, found by its keyed hash, one per configured
project, rotatable. The post must also name the configured project: its `project_id` must be
the id REDCap gave when the configuration was checked, and its `redcap_url`, when sent, must be
on the host of the configured API address. Whatever is posted, the server only ever calls the
configured project's API, and only for the one record named.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationFailedError
from app.core.security import FieldEncryptor, hash_secret
from app.models.redcap import RedcapProject
from app.models.user import UserRole
from app.services.audit import AuditContext
from app.services.principals import StaffPrincipal
from app.services.redcap.participants import (
    CODE_PATTERN,
    ImportedRow,
    ImportRequest,
    RowStatus,
    import_participants,
)

# The longest token `new_trigger_token` makes is 43 characters; anything much longer is not one.
MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True, slots=True)
class TriggerPost:
    project_id: str | None
    record: str | None
    instrument: str | None = None
    redcap_event_name: str | None = None
    redcap_url: str | None = None


def _trigger_principal() -> StaffPrincipal:
    """Who acts for a trigger: the server itself, with the rights of an administrator, on the
    one study and project the token names (no user signs in through a trigger)."""
    return StaffPrincipal(
        user_id=uuid.UUID(int=0),
        session_id=uuid.UUID(int=0),
        email="",
        name="REDCap Data Entry Trigger",
        role=UserRole.ADMIN,
        must_change_password=False,
    )


async def find_project(session: AsyncSession, settings: Settings, token: str) -> RedcapProject:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise NotFoundError("Unknown trigger")
    project: RedcapProject | None = await session.scalar(
        select(RedcapProject).where(
            RedcapProject.trigger_token_hash == hash_secret(settings, token)
        )
    )
    if project is None:
        raise NotFoundError("Unknown trigger")
    return project


def _same_host(redcap_url: str, api_url: str) -> bool:
    try:
        posted, configured = urlsplit(redcap_url.strip()), urlsplit(api_url)
    except ValueError:
        return False
    return bool(posted.hostname) and posted.hostname == configured.hostname


async def handle_trigger(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    token: str,
    post: TriggerPost,
) -> ImportedRow:
    project = await find_project(session, settings, token)
    if (post.project_id or "").strip() != (project.redcap_project_ref or "") or not post.project_id:
        raise ForbiddenError(
            "project_id does not name the project this trigger belongs to",
            details={"reason": "PROJECT_MISMATCH"},
        )
    if post.redcap_url and not _same_host(post.redcap_url, project.api_url):
        raise ForbiddenError(
            "redcap_url is not the REDCap server this trigger belongs to",
            details={"reason": "PROJECT_MISMATCH"},
        )
    record = (post.record or "").strip()
    if not record or not CODE_PATTERN.match(record):
        raise ValidationFailedError(
            "record must be the record id of a participant",
            details={"errors": [{"field": "record", "message": "not a participant code"}]},
        )
    if not project.enabled:
        raise ConflictError(
            "REDCap is paused for this study", details={"reason": "REDCAP_DISABLED"}
        )
    event = (post.redcap_event_name or "").strip() or None
    result = await import_participants(
        session,
        settings,
        encryptor,
        context,
        _trigger_principal(),
        project.study_id,
        ImportRequest(
            site_id=project.site_id,
            event=event if project.longitudinal else None,
            records=[record],
        ),
    )
    if not result.rows:
        return ImportedRow(record, RowStatus.SKIPPED, message="REDCap has no such record")
    return result.rows[0]
