"""Staff accounts managed by administrators."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError, NotFoundError, ValidationFailedError, field_error
from app.core.security import generate_secret_token, hash_password
from app.models.user import User, UserKind, UserRole, UserSession, UserStatus
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about, record_change
from app.services.auth import (
    forget_cached_principals,
    normalize_email,
    revoke_login_sessions,
)
from app.services.pagination import paginate
from app.services.passwords import check_password_policy
from app.services.principals import StaffPrincipal, UserProfile
from app.services.session_store import SessionStore


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    # Present only when the server generated it: shown once, never stored in clear.
    temporary_password: str | None


def user_snapshot(user: User) -> dict[str, Any]:
    """What audit events record of a user: never secrets."""
    return {
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "status": user.status,
        "must_change_password": user.must_change_password,
        "totp_enabled": user.totp_enabled,
    }


def _email_taken() -> ConflictError:
    return ConflictError("A user with this email already exists", details={"field": "email"})


async def create_user(
    session: AsyncSession,
    context: AuditContext,
    *,
    email: str,
    name: str,
    role: UserRole,
    password: str | None,
    must_change_password: bool = True,
    sso_only: bool = False,
) -> CreatedUser:
    email = normalize_email(email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise _email_taken()
    generated = None
    if sso_only:
        # No password at all: the account signs in through an identity provider only.
        password = None
        must_change_password = False
    elif password is None:
        # Long and random: it only has to survive until the first sign-in.
        generated = password = generate_secret_token(18)
    else:
        check_password_policy(password, email=email, name=name)
    user = User(
        id=uuid.uuid4(),
        email=email,
        name=name.strip(),
        role=role,
        status=UserStatus.ACTIVE,
        password_hash=None if password is None else await hash_password(password),
        must_change_password=must_change_password,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration of the same email
        raise _email_taken() from exc
    await record_about(
        session, context, AuditSubject.account(user.id), "user.create", after=user_snapshot(user)
    )
    return CreatedUser(user=user, temporary_password=generated)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


async def current_user(session: AsyncSession, principal: StaffPrincipal) -> User | UserProfile:
    """The caller's account: as read with the principal when it was (no change to it has been
    committed since), otherwise from the database."""
    if principal.profile is not None:
        return principal.profile
    return await get_user(session, principal.user_id)


async def list_users(
    session: AsyncSession,
    params: PageParams,
    *,
    role: UserRole | None = None,
    status: UserStatus | None = None,
    q: str | None = None,
) -> tuple[Sequence[User], Pagination]:
    statement = select(User)
    if role is not None:
        statement = statement.where(User.role == role)
    if status is not None:
        statement = statement.where(User.status == status)
    if q:
        pattern = f"%{q.strip().lower()}%"
        statement = statement.where(or_(User.email.like(pattern), User.name.ilike(pattern)))
    return await paginate(
        session,
        statement,
        params,
        sortable={
            "email": User.email,
            "name": User.name,
            "role": User.role,
            "created_at": User.created_at,
            "last_login_at": User.last_login_at,
        },
        default_sort="email",
        tie_breaker=User.id,
    )


async def update_user(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    user_id: uuid.UUID,
    *,
    acting_user_id: uuid.UUID,
    name: str | None = None,
    role: UserRole | None = None,
    status: UserStatus | None = None,
    reason: str | None = None,
) -> User:
    user = await get_user(session, user_id)
    if user.id == acting_user_id and (
        (role is not None and role is not UserRole.ADMIN) or status is UserStatus.DISABLED
    ):
        # An administrator demoting or disabling themselves could leave nobody in charge.
        raise ValidationFailedError("Administrators cannot demote or disable themselves")
    if user.kind == UserKind.SERVICE and role is UserRole.ADMIN:
        # An integration never administers the deployment (docs/accounts.md, service accounts).
        raise field_error("role", "A service account cannot be an administrator")
    before = user_snapshot(user)
    if name is not None:
        user.name = name.strip()
    if role is not None:
        user.role = role
    if status is not None:
        user.status = status
        if status is UserStatus.ACTIVE:
            user.locked_until = None
            user.failed_login_count = 0
    after = user_snapshot(user)
    if after == before:
        return user
    if status is UserStatus.DISABLED or role is not None:
        # A disabled user's tokens stop at once; a new role applies from the next request.
        reason_code = "user_disabled" if status is UserStatus.DISABLED else "role_changed"
        if status is UserStatus.DISABLED:
            await revoke_login_sessions(session, store, user_id=user.id, reason=reason_code)
        else:
            await forget_cached_principals(store, await _active_session_ids(session, user.id))
    action = "user.update"
    if before["status"] != after["status"]:
        action = "user.disabled" if after["status"] == UserStatus.DISABLED else "user.enabled"
    elif before["role"] != after["role"]:
        action = "user.role_changed"
    await record_change(
        session, context, AuditSubject.account(user.id), action, before, after, reason
    )
    return user


async def _active_session_ids(session: AsyncSession, user_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        (
            await session.scalars(
                select(UserSession.id).where(
                    UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
                )
            )
        ).all()
    )
