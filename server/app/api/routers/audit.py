from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.dependencies import (
    AdminUser,
    CurrentUser,
    PageParamsDep,
    ParticipantQuery,
    SessionDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.models.audit import AuditCategory
from app.schemas.audit import AuditEventRead, AuditVerificationRead
from app.schemas.common import IsoDateTime, Page
from app.services import audit as audit_service
from app.services.participants import participant_filter
from app.services.policy import Capability, audit_scopes

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", responses=error_responses(404))
async def list_audit_events(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    participant_id: ParticipantQuery = None,
    category: AuditCategory | None = None,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    from_: Annotated[IsoDateTime | None, Query(alias="from")] = None,
    to: IsoDateTime | None = None,
) -> Page[AuditEventRead]:
    """The audit trail, oldest first by default.

    Administrators see every event; others the events of the studies where their role holds
    the `audit` capability, within their site if the membership has one (docs/roles.md, the
    audit trail). A study filter the caller cannot see answers 404, one where their role lacks
    the capability 403. `participant_id` is the UUID, or the code with `study_id`."""
    scopes = await audit_scopes(session, principal, study_id)
    participant = await participant_filter(
        session, principal, participant_id, Capability.AUDIT, study_id=study_id
    )
    rows, pagination = await audit_service.list_events(
        session,
        page,
        study_id=study_id,
        participant_id=participant,
        category=category,
        actor_id=actor_id,
        action=action,
        occurred_from=from_,
        occurred_to=to,
        scopes=scopes,
    )
    return Page[AuditEventRead](
        data=[AuditEventRead.from_row(event, link) for event, link in rows],
        pagination=pagination,
    )


@router.get("/verify")
async def verify_audit_chain(
    _: AdminUser, session: SessionDep, settings: SettingsDep
) -> AuditVerificationRead:
    """Chain the events committed since the chainer last ran, then verify the whole keyed chain
    and every published checkpoint, and report the first position that does not hold;
    administrators only, as the chain runs through every study and the sign-in events of every
    account."""
    result = await audit_service.verify_chain(
        session, audit_service.ChainSettings.from_settings(settings)
    )
    return AuditVerificationRead.model_validate(result)
