"""Invitations to create a staff account by an emailed, single-use link (docs/accounts.md).

An administrator invites anyone with any global role; a study researcher (a member with the
`configure_study` capability) invites for their study only, within their site when their
membership has one, and never as an administrator. The link's token is random; only its keyed
hash is stored. A resend replaces the hash (the previous link dies) and restarts the expiry; a
revocation closes the invitation. Accepting creates the account with the password the person
chooses (the password policy of registration), enrols two-factor authentication when the
invitation or the deployment requires it, adds the study membership, and consumes the link.

The services do not send email: they return the message, and the router sends it after the
transaction has committed, so no link is mailed that the database does not hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

import pyotp
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
    ValidationFailedError,
    field_error,
)
from app.core.logging import get_logger
from app.core.security import FieldEncryptor, generate_secret_token, hash_secret
from app.models.audit import ActorType, AuditCategory
from app.models.invitation import Invitation
from app.models.study import MemberRole, StudyMember
from app.models.user import User, UserRole
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.auth import TOTP_ISSUER, normalize_email
from app.services.pagination import paginate
from app.services.passwords import check_password_policy
from app.services.policy import (
    Capability,
    member_study_access,
    require_study_capability,
    study_access,
)
from app.services.principals import StaffPrincipal
from app.services.references import resolve_site
from app.services.session_store import SessionStore, throttle_count
from app.services.studies import member_snapshot
from app.services.users import create_user

logger = get_logger(__name__)

ACCEPT_PATH = "/staff/invitation"
EMAIL_SUBJECT = "Your invitation to Metricis"
INVALID_INVITATION = "The invitation link is invalid, has expired or has already been used"
FAILURE_IP_LIMIT = 20
FAILURE_IP_WINDOW = timedelta(minutes=15)


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


def invitation_status(invitation: Invitation, now: datetime | None = None) -> InvitationStatus:
    if invitation.accepted_at is not None:
        return InvitationStatus.ACCEPTED
    if invitation.revoked_at is not None:
        return InvitationStatus.REVOKED
    if invitation.expires_at <= (now or utcnow()):
        return InvitationStatus.EXPIRED
    return InvitationStatus.PENDING


@dataclass(frozen=True, slots=True)
class InvitationEmail:
    """One email to send. Not printable: its text holds a live invitation token."""

    to: str = field(repr=False)
    subject: str
    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    email: InvitationEmail


@dataclass(frozen=True, slots=True)
class InvitationPreview:
    """What an invitation's link leads to, for the page where the person chooses a password."""

    invitation: Invitation
    two_factor_required: bool
    # A fresh TOTP secret to enrol when two-factor is required; sent back with the first code.
    totp_secret: str | None
    otpauth_uri: str | None


def hash_invitation_token(settings: Settings, token: str) -> str:
    return hash_secret(settings, "invitation:" + token)


def accept_url(settings: Settings, token: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + ACCEPT_PATH + "?" + urlencode({"token": token})


def invitation_snapshot(invitation: Invitation) -> dict[str, Any]:
    """What audit events record of an invitation: never its token or hash."""
    return {
        "email": invitation.email,
        "name": invitation.name,
        "role": invitation.role,
        "study_id": str(invitation.study_id) if invitation.study_id else None,
        "member_role": invitation.member_role,
        "site_id": str(invitation.site_id) if invitation.site_id else None,
        "two_factor_required": invitation.two_factor_required,
        "expires_at": invitation.expires_at.isoformat(),
    }


def _subject(invitation: Invitation) -> AuditSubject:
    return AuditSubject(AuditCategory.AUTH, "invitation", invitation.id, invitation.study_id)


def _two_factor_required(settings: Settings, invitation: Invitation) -> bool:
    return settings.INVITATIONS_REQUIRE_TWO_FACTOR or invitation.two_factor_required


def _email(settings: Settings, invitation: Invitation, token: str, inviter: str) -> InvitationEmail:
    hours = settings.INVITATION_EXPIRE_HOURS
    text = (
        f"Hello {invitation.name},\n\n"
        f"{inviter} invited you to Metricis. Open this link to choose your password and sign in."
        f" It works once and expires in {hours} hours:\n\n"
        f"{accept_url(settings, token)}\n\n"
        "If you did not expect this invitation, ignore this email: no account is created without"
        " the link.\n"
    )
    return InvitationEmail(to=invitation.email, subject=EMAIL_SUBJECT, text=text)


async def _check_inviter(
    session: AsyncSession,
    principal: StaffPrincipal,
    *,
    study_id: uuid.UUID | None,
    site_id: uuid.UUID | None,
    role: UserRole | None,
) -> None:
    """Administrators invite anyone; study researchers for their study (and site) only."""
    if principal.is_admin:
        return
    if study_id is None:
        raise ForbiddenError(
            "Only administrators invite without a study membership",
            details={"required_roles": [UserRole.ADMIN.value]},
        )
    access = await require_study_capability(
        session, principal, study_id, Capability.CONFIGURE_STUDY
    )
    if role is UserRole.ADMIN:
        raise ForbiddenError(
            "Only administrators invite administrators",
            details={"required_roles": [UserRole.ADMIN.value]},
        )
    if access.site_id is not None and site_id != access.site_id:
        raise ForbiddenError(
            "Your membership is limited to one site: invite for that site",
            details={"site_id": str(access.site_id)},
        )


async def _ensure_invitable(session: AsyncSession, email: str, now: datetime) -> None:
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise ConflictError("A user with this email already exists", details={"field": "email"})
    pending = await session.scalar(
        select(Invitation.id).where(
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
    )
    if pending is not None:
        raise ConflictError(
            "A pending invitation for this email exists: resend or revoke it",
            details={"field": "email", "invitation_id": str(pending)},
        )


async def create_invitation(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    *,
    email: str,
    name: str,
    role: UserRole,
    study_id: uuid.UUID | None,
    member_role: MemberRole | None,
    site: str | None,
    two_factor_required: bool,
) -> IssuedInvitation:
    email = normalize_email(email)
    if study_id is None and (member_role is not None or site is not None):
        raise field_error("study_id", "A study membership needs a study_id")
    if study_id is not None and member_role is None:
        raise field_error("member_role", "A study membership needs a member_role")
    site_id: uuid.UUID | None = None
    if study_id is not None:
        # The study's visibility first: an invisible study is 404 before any site lookup.
        await study_access(session, principal, study_id)
        if site is not None:
            site_id = (await resolve_site(session, study_id, site)).id
    await _check_inviter(session, principal, study_id=study_id, site_id=site_id, role=role)
    now = utcnow()
    await _ensure_invitable(session, email, now)
    token = generate_secret_token()
    invitation = Invitation(
        id=uuid.uuid4(),
        email=email,
        name=name.strip(),
        role=role,
        study_id=study_id,
        member_role=member_role,
        site_id=site_id,
        two_factor_required=two_factor_required,
        token_hash=hash_invitation_token(settings, token),
        expires_at=now + timedelta(hours=settings.INVITATION_EXPIRE_HOURS),
        invited_by=principal.user_id,
        sent_count=1,
        last_sent_at=now,
    )
    session.add(invitation)
    await session.flush()
    await record_about(
        session,
        context,
        _subject(invitation),
        "invitation.create",
        after=invitation_snapshot(invitation),
    )
    return IssuedInvitation(invitation, _email(settings, invitation, token, principal.name))


async def _visible_invitation(
    session: AsyncSession, principal: StaffPrincipal, invitation_id: uuid.UUID
) -> Invitation:
    """An invitation the caller may manage; any other is "not found"."""
    invitation = await session.get(Invitation, invitation_id, with_for_update=True)
    if invitation is None:
        raise NotFoundError("Invitation not found")
    if principal.is_admin:
        return invitation
    try:
        await _check_inviter(
            session,
            principal,
            study_id=invitation.study_id,
            site_id=invitation.site_id,
            role=invitation.role,
        )
    except (ForbiddenError, NotFoundError):
        raise NotFoundError("Invitation not found") from None
    return invitation


async def get_invitation(
    session: AsyncSession, principal: StaffPrincipal, invitation_id: uuid.UUID
) -> Invitation:
    return await _visible_invitation(session, principal, invitation_id)


async def list_invitations(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    include_closed: bool,
) -> tuple[Sequence[Invitation], Pagination]:
    """Pending invitations (all of them with `include_closed`) the caller may manage."""
    statement = select(Invitation)
    if study_id is not None:
        statement = statement.where(Invitation.study_id == study_id)
    if not include_closed:
        statement = statement.where(
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
    memberships = await member_study_access(session, principal)
    if memberships is not None:
        allowed = []
        for access in memberships.values():
            if not access.can(Capability.CONFIGURE_STUDY):
                continue
            if access.site_id is None:
                allowed.append(Invitation.study_id == access.study_id)
            else:
                allowed.append(
                    and_(
                        Invitation.study_id == access.study_id, Invitation.site_id == access.site_id
                    )
                )
        if not allowed:
            return [], Pagination.build(page=params.page, per_page=params.per_page, total=0)
        statement = statement.where(or_(*allowed), Invitation.role != UserRole.ADMIN)
    return await paginate(
        session,
        statement,
        params,
        sortable={
            "email": Invitation.email,
            "created_at": Invitation.created_at,
            "expires_at": Invitation.expires_at,
        },
        default_sort="created_at",
        tie_breaker=Invitation.id,
    )


def _require_open(invitation: Invitation) -> None:
    state = invitation_status(invitation)
    if state in (InvitationStatus.ACCEPTED, InvitationStatus.REVOKED):
        raise ConflictError(f"The invitation is {state.value}", details={"status": state.value})


async def resend_invitation(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    invitation_id: uuid.UUID,
) -> IssuedInvitation:
    """A new link (the previous one dies) and a new expiry; an expired invitation reopens."""
    invitation = await _visible_invitation(session, principal, invitation_id)
    _require_open(invitation)
    now = utcnow()
    if await session.scalar(select(User.id).where(User.email == invitation.email)) is not None:
        raise ConflictError("A user with this email already exists", details={"field": "email"})
    token = generate_secret_token()
    invitation.token_hash = hash_invitation_token(settings, token)
    invitation.expires_at = now + timedelta(hours=settings.INVITATION_EXPIRE_HOURS)
    invitation.sent_count += 1
    invitation.last_sent_at = now
    await record_about(
        session,
        context,
        _subject(invitation),
        "invitation.resend",
        after={
            "expires_at": invitation.expires_at.isoformat(),
            "sent_count": invitation.sent_count,
        },
    )
    return IssuedInvitation(invitation, _email(settings, invitation, token, principal.name))


async def revoke_invitation(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    invitation_id: uuid.UUID,
) -> None:
    invitation = await _visible_invitation(session, principal, invitation_id)
    _require_open(invitation)
    invitation.revoked_at = utcnow()
    await record_about(
        session,
        context,
        _subject(invitation),
        "invitation.revoke",
        before=invitation_snapshot(invitation),
    )


async def _throttle_failures(store: SessionStore, context: AuditContext) -> None:
    if context.ip and (
        await throttle_count(store, f"invitation-fail-ip:{context.ip}", FAILURE_IP_WINDOW)
        >= FAILURE_IP_LIMIT
    ):
        seconds = int(FAILURE_IP_WINDOW.total_seconds())
        raise TooManyRequestsError(
            "Too many invalid invitation links from this address",
            details={"retry_after_seconds": seconds},
            headers={"Retry-After": str(seconds)},
        )


async def _refuse(
    session: AsyncSession,
    store: SessionStore,
    context: AuditContext,
    invitation: Invitation | None,
) -> UnauthorizedError:
    """Count and audit a link that does not open an invitation; the one answer for every case."""
    if context.ip:
        await throttle_count(store, f"invitation-fail-ip:{context.ip}", FAILURE_IP_WINDOW, add=True)
    reason = "unknown" if invitation is None else invitation_status(invitation).value
    subject = _subject(invitation) if invitation is not None else AuditSubject(AuditCategory.AUTH)
    await record_about(
        session, context, subject, "invitation.accept_failed", after={"reason": reason}
    )
    return UnauthorizedError(INVALID_INVITATION, keep_changes=True)


async def _pending_by_token(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    token: str,
) -> Invitation:
    await _throttle_failures(store, context)
    invitation = await session.scalar(
        select(Invitation).where(
            Invitation.token_hash == hash_invitation_token(settings, token.strip())
        )
    )
    if invitation is None or invitation_status(invitation) is not InvitationStatus.PENDING:
        raise await _refuse(session, store, context, invitation)
    return invitation


async def preview_invitation(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    context: AuditContext,
    *,
    token: str,
) -> InvitationPreview:
    """What the link is for, without consuming it; a TOTP secret to enrol when required."""
    invitation = await _pending_by_token(session, store, settings, context, token)
    if not _two_factor_required(settings, invitation):
        return InvitationPreview(invitation, False, None, None)
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=invitation.email, issuer_name=TOTP_ISSUER)
    return InvitationPreview(invitation, True, secret, uri)


def _checked_totp(
    settings: Settings,
    invitation: Invitation,
    totp_secret: str | None,
    totp_code: str | None,
) -> str | None:
    """The TOTP secret to store when two-factor is required, after its first code checks."""
    if not _two_factor_required(settings, invitation):
        return None
    if not totp_secret or not totp_code:
        raise ValidationFailedError(
            "This invitation requires two-factor authentication: send totp_secret and totp_code",
            details={
                "reason": "TWO_FACTOR_REQUIRED",
                "errors": [
                    {"field": "totp_secret", "message": "required"},
                    {"field": "totp_code", "message": "required"},
                ],
            },
        )
    secret = totp_secret.strip().upper()
    code = totp_code.strip().replace(" ", "")
    try:
        valid = code.isdigit() and pyotp.TOTP(secret).verify(code, valid_window=1)
    except (ValueError, TypeError):  # not base32
        raise field_error("totp_secret", "not a valid TOTP secret") from None
    if not valid:
        raise field_error("totp_code", "invalid code")
    return secret


async def accept_invitation(
    session: AsyncSession,
    store: SessionStore,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    *,
    token: str,
    password: str,
    totp_secret: str | None,
    totp_code: str | None,
) -> User:
    """Create the invited account with the chosen password; the link works once."""
    invitation = await _pending_by_token(session, store, settings, context, token)
    check_password_policy(password, email=invitation.email, name=invitation.name, field="password")
    secret = _checked_totp(settings, invitation, totp_secret, totp_code)
    now = utcnow()
    # One statement checks and consumes the link: of two concurrent acceptances one wins.
    consumed = (
        await session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation.id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.token_hash == invitation.token_hash,
            )
            .values(accepted_at=now)
            .returning(Invitation.id)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if consumed is None:
        raise await _refuse(session, store, context, invitation)
    await session.refresh(invitation)
    created = await create_user(
        session,
        context,
        email=invitation.email,
        name=invitation.name,
        role=invitation.role,
        password=password,
        must_change_password=False,
    )
    user = created.user
    as_user = context.as_actor(ActorType.USER, str(user.id))
    invitation.accepted_user_id = user.id
    if secret is not None:
        user.totp_secret_encrypted = encryptor.encrypt(secret)
        user.totp_enabled = True
        await record_about(session, as_user, AuditSubject.account(user.id), "user.2fa_enabled")
    if invitation.study_id is not None and invitation.member_role is not None:
        member = StudyMember(
            id=uuid.uuid4(),
            study_id=invitation.study_id,
            user_id=user.id,
            role=invitation.member_role,
            site_id=invitation.site_id,
        )
        session.add(member)
        await session.flush()
        await record_about(
            session,
            as_user,
            AuditSubject.configuration("study_member", member.id, member.study_id),
            "member.add",
            after={**member_snapshot(member), "invitation_id": str(invitation.id)},
        )
    await record_about(
        session,
        as_user,
        _subject(invitation),
        "invitation.accept",
        after={"user_id": str(user.id)},
    )
    return user
