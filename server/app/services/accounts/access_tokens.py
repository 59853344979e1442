"""Personal access tokens for scripts: exports, REDCap jobs, pipelines (docs/accounts.md).

A user creates a token with a name, an expiry and scopes; the secret is returned once and only
its keyed hash is stored. A request that carries it is authenticated as the user, narrowed by
the scopes:

- `read` (every token): safe methods (GET, HEAD) on the routes the user may read;
- `export`: also the routes that need the study `export` capability (raw data downloads);
- `write`: also the other methods, within the user's rights.

Scopes never add to the user's rights: each request is checked against the user's role and
memberships as they are at that moment. A token cannot manage accounts or credentials: the
sign-in, account, login-session, invitation and token routes refuse it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import ForbiddenError, NotFoundError, UnauthorizedError, field_error
from app.core.security import generate_secret_token, hash_secret
from app.models.audit import AuditCategory
from app.models.study import StudyMember
from app.models.user import PersonalAccessToken, User, UserStatus
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.pagination import paginate
from app.services.policy import STUDY_CREATORS, Capability, StudyAccess
from app.services.principals import StaffPrincipal, UserProfile

TOKEN_PREFIX = "mtk_"  # noqa: S105 - marks the kind of token, not a secret
SCOPES = ("read", "export", "write")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes a token never reaches: credentials and accounts are managed by a signed-in person.
REFUSED_PREFIXES = (
    "/api/auth",
    "/api/access-tokens",
    "/api/user-sessions",
    "/api/users",
    "/api/invitations",
    "/api/service-accounts",
)
LAST_USED_WRITE_INTERVAL = timedelta(seconds=60)
MAX_ACTIVE_TOKENS = 50
INVALID_TOKEN = "The access token is invalid or has expired"  # noqa: S105 - a message


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: PersonalAccessToken
    # Shown once: never stored in clear, never logged.
    secret: str


def hash_token(settings: Settings, secret: str) -> str:
    return hash_secret(settings, "personal-access-token:" + secret)


def is_personal_access_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def _snapshot(token: PersonalAccessToken) -> dict[str, object]:
    return {
        "name": token.name,
        "prefix": token.prefix,
        "scopes": list(token.scopes),
        "expires_at": token.expires_at.isoformat(),
    }


def _subject(token: PersonalAccessToken) -> AuditSubject:
    return AuditSubject(AuditCategory.AUTH, "access_token", token.id)


async def _rights_allow(session: AsyncSession, principal: StaffPrincipal, scope: str) -> bool:
    """Whether the user's rights include what the scope would let the token do anywhere."""
    if principal.is_admin or scope == "read":
        return True
    roles = (
        await session.scalars(
            select(StudyMember.role).where(StudyMember.user_id == principal.user_id)
        )
    ).all()
    accesses = [StudyAccess(study_id=uuid.uuid4(), role=role, site_id=None) for role in roles]
    if scope == "export":
        return any(access.can(Capability.EXPORT) for access in accesses)
    # write: anything beyond reading, in a study or by creating one.
    return principal.role in STUDY_CREATORS or any(
        access.can(Capability.EDIT_PARTICIPANTS) or access.can(Capability.CONFIGURE_STUDY)
        for access in accesses
    )


async def create_token(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    name: str,
    scopes: Sequence[str],
    expires_in_days: int,
) -> CreatedToken:
    chosen = sorted(set(scopes), key=SCOPES.index)
    if "read" not in chosen:
        raise field_error("scopes", "Every token has the read scope")
    for scope in chosen:
        if not await _rights_allow(session, principal, scope):
            raise field_error("scopes", f"Your rights do not include the {scope} scope")
    active = (
        await session.scalars(
            select(PersonalAccessToken.id).where(
                PersonalAccessToken.user_id == principal.user_id,
                PersonalAccessToken.revoked_at.is_(None),
                PersonalAccessToken.expires_at > utcnow(),
            )
        )
    ).all()
    if len(active) >= MAX_ACTIVE_TOKENS:
        raise field_error("name", f"At most {MAX_ACTIVE_TOKENS} active tokens per user")
    now = utcnow()
    secret = TOKEN_PREFIX + generate_secret_token()
    token = PersonalAccessToken(
        id=uuid.uuid4(),
        user_id=principal.user_id,
        name=name.strip(),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=hash_token(settings, secret),
        scopes=chosen,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days),
    )
    session.add(token)
    await session.flush()
    await record_about(
        session, context, _subject(token), "access_token.create", after=_snapshot(token)
    )
    return CreatedToken(token, secret)


async def list_tokens(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    user_id: uuid.UUID | None,
    include_revoked: bool,
) -> tuple[Sequence[PersonalAccessToken], Pagination]:
    """The caller's active tokens (all with `include_revoked`); administrators may name another
    user."""
    owner = user_id or principal.user_id
    if owner != principal.user_id and not principal.is_admin:
        raise ForbiddenError("Only administrators list other users' tokens")
    statement = select(PersonalAccessToken).where(PersonalAccessToken.user_id == owner)
    if not include_revoked:
        statement = statement.where(
            PersonalAccessToken.revoked_at.is_(None), PersonalAccessToken.expires_at > utcnow()
        )
    return await paginate(
        session,
        statement,
        params,
        sortable={
            "created_at": PersonalAccessToken.created_at,
            "expires_at": PersonalAccessToken.expires_at,
            "last_used_at": PersonalAccessToken.last_used_at,
            "name": PersonalAccessToken.name,
        },
        default_sort="created_at",
        tie_breaker=PersonalAccessToken.id,
    )


async def revoke_token(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    token_id: uuid.UUID,
) -> None:
    """The owner or an administrator; another user's token is "not found"."""
    token = await session.get(PersonalAccessToken, token_id, with_for_update=True)
    if token is None or (token.user_id != principal.user_id and not principal.is_admin):
        raise NotFoundError("Access token not found")
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    await record_about(
        session, context, _subject(token), "access_token.revoke", before=_snapshot(token)
    )


async def authenticate_personal_access_token(
    session: AsyncSession,
    settings: Settings,
    ip: str | None,
    secret: str,
    *,
    method: str,
    path: str,
) -> StaffPrincipal:
    """The user behind a token, narrowed by its scopes; every fault of the token is one 401."""
    token = await session.scalar(
        select(PersonalAccessToken).where(
            PersonalAccessToken.token_hash == hash_token(settings, secret)
        )
    )
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        raise UnauthorizedError(INVALID_TOKEN)
    user = await session.get(User, token.user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        raise UnauthorizedError(INVALID_TOKEN)
    if path.startswith(REFUSED_PREFIXES):
        raise ForbiddenError(
            "Personal access tokens cannot manage accounts or credentials",
            details={"reason": "TOKEN_NOT_ALLOWED"},
        )
    scopes = frozenset(token.scopes)
    if method.upper() not in SAFE_METHODS and "write" not in scopes:
        raise ForbiddenError(
            "This access token is read-only",
            details={"reason": "TOKEN_SCOPE", "required_scope": "write"},
        )
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_WRITE_INTERVAL:
        token.last_used_at = now
        token.last_used_ip = ip
    return StaffPrincipal(
        user_id=user.id,
        session_id=token.id,
        email=user.email,
        name=user.name,
        role=user.role,
        must_change_password=user.must_change_password,
        token_id=token.id,
        token_scopes=scopes,
        profile=UserProfile.model_validate(user),
    )
