"""Password reset by email (docs/accounts.md, password reset)."""

from __future__ import annotations

import contextlib
from typing import Literal

from fastapi import APIRouter, BackgroundTasks, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.dependencies import (
    AfterResponseSessionDep,
    RequestAuditContextDep,
    SessionDep,
    SessionStoreDep,
    SettingsDep,
)
from app.api.openapi import error_responses
from app.config import Settings
from app.core.logging import get_logger
from app.services.accounts import password_resets as service
from app.services.audit import AuditContext
from app.services.email import send_email
from app.services.session_store import SessionStore

logger = get_logger(__name__)

router = APIRouter(prefix="/auth/password-reset", tags=["auth"])


class PasswordResetRequest(BaseModel):
    # Not EmailStr: any answer other than 202 would say something about the address.
    email: str = Field(min_length=1, max_length=320)


class PasswordResetAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class PasswordResetConfirm(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def request_password_reset(
    body: PasswordResetRequest,
    background: BackgroundTasks,
    session: AfterResponseSessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> PasswordResetAccepted:
    """Always 202: whether the address has an account is decided after the response is sent."""
    background.add_task(_issue_and_send, session, store, settings, context, body.email)
    return PasswordResetAccepted()


async def _issue_and_send(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    email: str,
) -> None:
    """After the response: create and commit the link, then mail it. Never raises."""
    try:
        message = await service.request_password_reset(
            session, store, settings, context, email=email
        )
        await session.commit()
    except Exception as exc:
        logger.error("password_reset_issue_failed", error=type(exc).__name__)
        with contextlib.suppress(Exception):
            await session.rollback()
        return
    if message is not None:
        await send_email(settings, to=message.to, subject=message.subject, text=message.text)


@router.post(
    "/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 429)
)
async def confirm_password_reset(
    body: PasswordResetConfirm,
    session: SessionDep,
    store: SessionStoreDep,
    settings: SettingsDep,
    context: RequestAuditContextDep,
) -> None:
    """Set a new password with the emailed link's token; every login session ends."""
    await service.reset_password(
        session, store, settings, context, token=body.token, password=body.password
    )
