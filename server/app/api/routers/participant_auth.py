"""Participant sign-in: access code, and one-time links sent by email.

Endpoints and decisions: docs/participants-import-and-links.md, participant sign-in.

The request and response models live here rather than in app/schemas/auth.py, which belongs to
the staff-authentication routes.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Literal

from fastapi import APIRouter, BackgroundTasks, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.dependencies import (
    AfterResponseSessionDep,
    EncryptorDep,
    RequestAuditContextDep,
    SessionDep,
    SessionStoreDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.config import Settings
from app.core.logging import get_logger
from app.core.security import FieldEncryptor
from app.services import magic_links as magic_link_service
from app.services.audit import AuditContext
from app.services.email import send_email
from app.services.participant_auth import ParticipantTokens, login_with_access_code
from app.services.session_store import SessionStore

logger = get_logger(__name__)

router = APIRouter(prefix="/auth", tags=["participant auth"])


class ParticipantLoginRequest(BaseModel):
    study_code: str = Field(min_length=1, max_length=50)
    participant_id: str = Field(min_length=1, max_length=64)
    access_code: str = Field(min_length=1, max_length=64)


class MagicLinkRequest(BaseModel):
    # Not EmailStr: any answer other than 202 would say something about the address.
    email: str = Field(min_length=1, max_length=320)


class MagicLinkAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class MagicLinkVerifyRequest(BaseModel):
    token: str = Field(min_length=1, max_length=512)


class ParticipantIdentity(BaseModel):
    id: uuid.UUID
    participant_id: str
    study_id: uuid.UUID
    language: str


class ParticipantTokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int
    participant: ParticipantIdentity


def _token_response(tokens: ParticipantTokens) -> ParticipantTokenResponse:
    participant = tokens.participant
    return ParticipantTokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        participant=ParticipantIdentity(
            id=participant.id,
            participant_id=participant.participant_code,
            study_id=participant.study_id,
            language=participant.language,
        ),
    )


@router.post("/participant", responses=error_responses(401, 423))
async def participant_login(
    body: ParticipantLoginRequest,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> ParticipantTokenResponse:
    """Sign a participant in with the study code, their participant code and access code."""
    tokens = await login_with_access_code(
        session,
        store,
        settings,
        context,
        study_code=body.study_code,
        participant_code=body.participant_id,
        access_code=body.access_code,
    )
    return _token_response(tokens)


@router.post("/magic-link", status_code=status.HTTP_202_ACCEPTED)
async def request_magic_link(
    body: MagicLinkRequest,
    background: BackgroundTasks,
    session: AfterResponseSessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    context: RequestAuditContextDep,
) -> MagicLinkAccepted:
    """Always 202: whether the address is known is decided after the response is sent."""
    background.add_task(_issue_and_send, session, store, settings, encryptor, context, body.email)
    return MagicLinkAccepted()


async def _issue_and_send(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    email: str,
) -> None:
    """After the response: create and commit the links, then mail them. Never raises."""
    try:
        emails = await magic_link_service.issue_magic_links(
            session, store, settings, encryptor, context, email=email
        )
        await session.commit()
    except Exception as exc:
        logger.error("magic_link_issue_failed", error=type(exc).__name__)
        with contextlib.suppress(Exception):
            await session.rollback()
        return
    for message in emails:
        await send_email(settings, to=message.to, subject=message.subject, text=message.text)


@router.post("/magic-link/verify", responses=error_responses(401))
async def verify_magic_link(
    body: MagicLinkVerifyRequest,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> ParticipantTokenResponse:
    """Exchange a one-time link token for a participant token; 401 when unknown, used or expired."""
    tokens = await magic_link_service.verify_magic_link(
        session, store, settings, context, token=body.token
    )
    return _token_response(tokens)
