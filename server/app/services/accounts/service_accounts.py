"""Service accounts for integrations (docs/accounts.md, service accounts).

A service account is a user of kind `service`, owned by the administrator who created it. It has
no password and never signs in interactively (password sign-in and single sign-on refuse it);
it acts only through personal access tokens that an administrator creates for it. Its rights are
those of any user: its global role and the study memberships an administrator gives it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.errors import NotFoundError
from app.models.user import User, UserKind, UserRole, UserStatus
from app.schemas.common import PageParams, Pagination
from app.services.accounts import access_tokens
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.pagination import paginate
from app.services.principals import StaffPrincipal

# Addresses under a reserved top-level domain: unique, and no mail can ever reach them.
EMAIL_DOMAIN = "service-accounts.invalid"


def _snapshot(account: User) -> dict[str, Any]:
    return {
        "name": account.name,
        "role": account.role,
        "status": account.status,
        "owner_id": str(account.owner_id) if account.owner_id else None,
    }


async def create_service_account(
    session: AsyncSession,
    context: AuditContext,
    owner: StaffPrincipal,
    *,
    name: str,
    role: UserRole,
) -> User:
    account_id = uuid.uuid4()
    account = User(
        id=account_id,
        email=f"service-{account_id.hex}@{EMAIL_DOMAIN}",
        name=name.strip(),
        role=role,
        status=UserStatus.ACTIVE,
        kind=UserKind.SERVICE,
        owner_id=owner.user_id,
        password_hash=None,
        must_change_password=False,
    )
    session.add(account)
    await session.flush()
    await record_about(
        session,
        context,
        AuditSubject.account(account.id),
        "service_account.create",
        after=_snapshot(account),
    )
    return account


async def get_service_account(session: AsyncSession, account_id: uuid.UUID) -> User:
    account = await session.get(User, account_id)
    if account is None or account.kind != UserKind.SERVICE:
        raise NotFoundError("Service account not found")
    return account


async def list_service_accounts(
    session: AsyncSession, params: PageParams, *, include_disabled: bool
) -> tuple[Sequence[User], Pagination]:
    statement = select(User).where(User.kind == UserKind.SERVICE)
    if not include_disabled:
        statement = statement.where(User.status == UserStatus.ACTIVE)
    return await paginate(
        session,
        statement,
        params,
        sortable={"created_at": User.created_at, "name": User.name},
        default_sort="created_at",
        tie_breaker=User.id,
    )


async def disable_service_account(
    session: AsyncSession, context: AuditContext, account_id: uuid.UUID
) -> User:
    """Disabled, its tokens are refused from the next request (they are checked every time)."""
    account = await get_service_account(session, account_id)
    if account.status == UserStatus.DISABLED:
        return account
    before = _snapshot(account)
    account.status = UserStatus.DISABLED
    await record_about(
        session,
        context,
        AuditSubject.account(account.id),
        "service_account.disable",
        before=before,
        after=_snapshot(account),
    )
    return account


async def create_access_token(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    account_id: uuid.UUID,
    *,
    name: str,
    scopes: Sequence[str],
    expires_in_days: int,
) -> access_tokens.CreatedToken:
    """A token for the service account, within the account's rights (not the administrator's);
    audited with the administrator as the actor."""
    account = await get_service_account(session, account_id)
    if account.status != UserStatus.ACTIVE:
        raise NotFoundError("Service account not found")
    principal = StaffPrincipal(
        user_id=account.id,
        session_id=account.id,
        email=account.email,
        name=account.name,
        role=account.role,
        must_change_password=False,
    )
    return await access_tokens.create_token(
        session,
        settings,
        context,
        principal,
        name=name,
        scopes=scopes,
        expires_in_days=expires_in_days,
    )
