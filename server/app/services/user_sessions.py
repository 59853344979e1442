"""Listing and revoking login sessions (docs/auth.md, tokens and login sessions)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFoundError
from app.models.user import UserSession
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.auth import end_login_session, revoke_login_sessions
from app.services.pagination import paginate
from app.services.principals import StaffPrincipal
from app.services.session_store import SessionStore


async def list_login_sessions(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    user_id: uuid.UUID | None,
    include_revoked: bool,
) -> tuple[Sequence[UserSession], Pagination]:
    target = user_id if (user_id is not None and principal.is_admin) else principal.user_id
    if user_id is not None and not principal.is_admin and user_id != principal.user_id:
        raise NotFoundError("User not found")
    statement = select(UserSession).where(UserSession.user_id == target)
    if not include_revoked:
        statement = statement.where(UserSession.revoked_at.is_(None))
    return await paginate(
        session,
        statement,
        params,
        sortable={"created_at": UserSession.created_at, "last_seen_at": UserSession.last_seen_at},
        default_sort="created_at",
        tie_breaker=UserSession.id,
    )


async def revoke_login_session(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    principal: StaffPrincipal,
    session_id: uuid.UUID,
) -> None:
    login_session = await session.get(UserSession, session_id)
    # Someone else's session is "not found" unless the caller is an administrator.
    if login_session is None or (
        login_session.user_id != principal.user_id and not principal.is_admin
    ):
        raise NotFoundError("Login session not found")
    if login_session.revoked_at is not None:
        return
    await end_login_session(
        session,
        store,
        context,
        login_session.id,
        login_session.user_id,
        reason="revoked",
        action="user.session_revoked",
        after={"user_id": str(login_session.user_id)},
    )


async def revoke_other_sessions(
    session: AsyncSession, store: SessionStore, context: AuditContext, principal: StaffPrincipal
) -> int:
    revoked = await revoke_login_sessions(
        session, store, user_id=principal.user_id, reason="revoked", keep=principal.session_id
    )
    if revoked:
        await record_about(
            session,
            context,
            AuditSubject.account(principal.user_id),
            "user.sessions_revoked",
            after={"revoked": len(revoked)},
        )
    return len(revoked)
