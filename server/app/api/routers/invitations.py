"""Staff invitations: managed at /api/invitations, opened and accepted at /api/auth/invitation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    EncryptorDep,
    PageParamsDep,
    RequestAuditContextDep,
    SessionDep,
    SessionStoreDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.config import Settings
from app.models.invitation import Invitation
from app.schemas.auth import UserRead
from app.schemas.common import Page
from app.schemas.invitations import (
    InvitationAcceptRequest,
    InvitationCreate,
    InvitationPreviewRead,
    InvitationRead,
    InvitationTokenRequest,
)
from app.services.accounts import invitations as service
from app.services.email import send_email

router = APIRouter(prefix="/invitations", tags=["invitations"])
auth_router = APIRouter(prefix="/auth/invitation", tags=["auth"])


def _read(invitation: Invitation) -> InvitationRead:
    values = {
        name: getattr(invitation, name) for name in InvitationRead.model_fields if name != "status"
    }
    return InvitationRead(status=service.invitation_status(invitation).value, **values)


async def _send(settings: Settings, message: service.InvitationEmail) -> None:
    """After the response, so after the commit: the link mailed is one the database holds."""
    await send_email(settings, to=message.to, subject=message.subject, text=message.text)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(403, 404, 409))
async def create_invitation(
    body: InvitationCreate,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
    background: BackgroundTasks,
) -> InvitationRead:
    """Invite a person by email: administrators anyone, study researchers for their study."""
    issued = await service.create_invitation(
        session,
        settings,
        context,
        principal,
        email=body.email,
        name=body.name,
        role=body.role,
        study_id=body.study_id,
        member_role=body.member_role,
        site=body.site,
        two_factor_required=body.two_factor_required,
    )
    background.add_task(_send, settings, issued.email)
    return _read(issued.invitation)


@router.get("")
async def list_invitations(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    study_id: uuid.UUID | None = None,
    include_closed: Annotated[
        bool, Query(description="Also accepted, revoked and expired invitations")
    ] = False,
) -> Page[InvitationRead]:
    """Pending invitations the caller may manage (administrators: all)."""
    rows, pagination = await service.list_invitations(
        session, principal, page, study_id=study_id, include_closed=include_closed
    )
    return Page[InvitationRead](data=[_read(row) for row in rows], pagination=pagination)


@router.get("/{invitation_id:uuid}", responses=error_responses(404))
async def get_invitation(
    invitation_id: uuid.UUID, principal: CurrentUser, session: SessionDep
) -> InvitationRead:
    return _read(await service.get_invitation(session, principal, invitation_id))


@router.post("/{invitation_id:uuid}/resend", responses=error_responses(404, 409))
async def resend_invitation(
    invitation_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    context: ActorContextDep,
    background: BackgroundTasks,
) -> InvitationRead:
    """Mail a new link; the previous one stops working and the expiry starts again."""
    issued = await service.resend_invitation(session, settings, context, principal, invitation_id)
    background.add_task(_send, settings, issued.email)
    return _read(issued.invitation)


@router.delete(
    "/{invitation_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409),
)
async def revoke_invitation(
    invitation_id: uuid.UUID, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> None:
    await service.revoke_invitation(session, context, principal, invitation_id)


@auth_router.post("", responses=error_responses(401, 429))
async def preview_invitation(
    body: InvitationTokenRequest,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> InvitationPreviewRead:
    """What an invitation link is for, without using it up."""
    preview = await service.preview_invitation(session, store, settings, context, token=body.token)
    invitation = preview.invitation
    return InvitationPreviewRead(
        email=invitation.email,
        name=invitation.name,
        role=invitation.role,
        study_id=invitation.study_id,
        member_role=invitation.member_role,
        site_id=invitation.site_id,
        expires_at=invitation.expires_at,
        two_factor_required=preview.two_factor_required,
        totp_secret=preview.totp_secret,
        otpauth_uri=preview.otpauth_uri,
    )


@auth_router.post(
    "/accept", status_code=status.HTTP_201_CREATED, responses=error_responses(401, 409, 429)
)
async def accept_invitation(
    body: InvitationAcceptRequest,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: RequestAuditContextDep,
) -> UserRead:
    """Create the invited account with the chosen password; then sign in as usual."""
    user = await service.accept_invitation(
        session,
        store,
        settings,
        encryptor,
        context,
        token=body.token,
        password=body.password,
        totp_secret=body.totp_secret,
        totp_code=body.totp_code,
    )
    return UserRead.model_validate(user)
