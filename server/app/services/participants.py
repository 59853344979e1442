"""Participants: enrollment, contact details encrypted at rest, withdrawal and access codes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import Select, String, bindparam, delete, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.config import Settings
from app.core.clock import utcnow
from app.core.errors import ConflictError, NotFoundError, field_error, not_found_as
from app.core.events import DomainEvent, emit, subscribe
from app.core.security import FieldEncryptor, hash_secret
from app.db.base import Base
from app.models.assessment import AssessmentSession, TaskResult, Trial
from app.models.audit import AuditCategory
from app.models.participant import (
    MagicLinkToken,
    Participant,
    ParticipantActor,
    ParticipantStatus,
    WithdrawalScope,
)
from app.models.study import Site, Study
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about
from app.services.notifications.scheduling import (
    CancelReason,
    cancel_pending,
    forget_destinations,
)
from app.services.outbox.announce import (
    announce_participant_enrolled,
    announce_participant_withdrawn,
)
from app.services.outbox.writer import forget_participant
from app.services.pagination import (
    PreparedPage,
    prepare_page,
    run_prepared_page,
    sort_key_of,
)
from app.services.participant_auth import (
    generate_access_code,
    hash_access_code,
    revoke_participant_logins,
)
from app.services.policy import Capability, StudyAccess, member_study_access, study_access
from app.services.principals import ParticipantPrincipal, Principal, StaffPrincipal
from app.services.references import (
    as_uuid,
    code_without_study,
    find_participant,
    find_site,
    names_participant,
    resolve_site,
    unknown_participant,
    unknown_site,
)
from app.services.schedules.lifecycle import (
    cancel_visits_on_withdrawal,
    generate_visits_on_enrollment,
    refresh_participant_visits,
)
from app.services.schedules.timing import local_date
from app.services.source_storage import SourceStorage


def email_index(settings: Settings, email: str) -> str:
    """Blind index: finds a participant by email without storing it in clear."""
    return hash_secret(settings, "participant-email:" + email.strip().lower())


def valid_timezone(name: str) -> bool:
    if name not in _timezones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


SOURCE_DOCUMENTS_ERASED = "participant.source_documents_erased"


async def _remove_source_documents(event: DomainEvent) -> None:
    # The storage this process wrote with, found by its location (the event holds no secrets).
    storage = SourceStorage.opened_at(str(event.payload["storage"]))
    await storage.delete_tree(str(event.payload["directory"]))


subscribe(SOURCE_DOCUMENTS_ERASED, _remove_source_documents)


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(phone: str) -> str:
    digits = [ch for ch in phone if ch.isdigit()]
    return "***" + "".join(digits[-2:])


@dataclass(frozen=True, slots=True)
class ContactDetails:
    email: str | None
    phone: str | None


def contact_details(
    participant: Participant, encryptor: FieldEncryptor, access: StudyAccess | None
) -> ContactDetails:
    """Decrypted for roles that may see them, masked for the others (read_only)."""
    email = encryptor.decrypt(participant.email_encrypted) if participant.email_encrypted else None
    phone = encryptor.decrypt(participant.phone_encrypted) if participant.phone_encrypted else None
    if access is not None and not access.can(Capability.SEE_CONTACT_DETAILS):
        email = mask_email(email) if email else None
        phone = mask_phone(phone) if phone else None
    return ContactDetails(email=email, phone=phone)


def participant_snapshot(participant: Participant) -> dict[str, Any]:
    """What audit events record: never contact details in clear."""
    return {
        "participant_id": participant.participant_code,
        "site_id": str(participant.site_id) if participant.site_id else None,
        "status": participant.status,
        "actor": participant.actor,
        "language": participant.language,
        "timezone": participant.timezone,
        "enrollment_date": participant.enrollment_date.isoformat()
        if participant.enrollment_date
        else None,
        "anchor_date": participant.anchor_date.isoformat() if participant.anchor_date else None,
        "has_email": participant.email_encrypted is not None,
        "has_phone": participant.phone_encrypted is not None,
    }


def _code_taken() -> ConflictError:
    return ConflictError(
        "A participant with this code already exists in the study",
        details={"field": "participant_id"},
    )


@dataclass(slots=True)
class ParticipantFields:
    participant_code: str | None = None
    site: str | None = None  # the site's UUID or code
    email: str | None = None
    phone: str | None = None
    enrollment_date: date | None = None
    status: ParticipantStatus | None = None
    actor: ParticipantActor | None = None
    language: str | None = None
    timezone: str | None = None
    anchor_date: date | None = None


# Fields whose change moves the visits that have not started.
_VISIT_TIMING_FIELDS = ("timezone", "enrollment_date", "anchor_date")


async def create_participant(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    fields: ParticipantFields,
) -> tuple[Participant, StudyAccess]:
    access = await study_access(session, principal, study_id)
    access.require(Capability.EDIT_PARTICIPANTS)
    study = await session.get(Study, study_id)
    assert study is not None
    if not fields.participant_code:
        raise field_error("participant_id", "The participant code is required")
    site: Site | None
    if fields.site is not None:
        site = await resolve_site(session, study_id, fields.site)
        if access.site_id is not None and site.id != access.site_id:
            raise field_error("site_id", "You can only enroll participants at your own site")
    else:
        # A site-scoped member who names no site enrolls at their own.
        site = await session.get(Site, access.site_id) if access.site_id else None
    language = fields.language or (study.supported_languages or ["en"])[0]
    if language not in (study.supported_languages or []):
        raise field_error("language", f"'{language}' is not one of the study's languages")
    # The participant's own zone, else their site's, else the study's.
    timezone = fields.timezone or (site.timezone if site else study.timezone)
    if not valid_timezone(timezone):
        raise field_error("timezone", f"'{timezone}' is not an IANA time zone")
    now = utcnow()
    status = fields.status or ParticipantStatus.ENROLLED
    if status is ParticipantStatus.WITHDRAWN:
        raise field_error("status", "Use the withdrawal endpoint to withdraw a participant")
    participant = Participant(
        id=uuid.uuid4(),
        study_id=study_id,
        participant_code=fields.participant_code,
        site_id=site.id if site else None,
        status=status,
        actor=fields.actor or ParticipantActor.PATIENT,
        language=language,
        timezone=timezone,
        # Enrolled today in the participant's own calendar, which may not be the UTC date.
        enrollment_date=fields.enrollment_date
        or (local_date(now, timezone) if status is ParticipantStatus.ENROLLED else None),
        anchor_date=fields.anchor_date,
    )
    _set_contact(settings, encryptor, participant, fields.email, fields.phone, clear=False)
    if await session.scalar(
        select(Participant.id).where(
            Participant.study_id == study_id,
            Participant.participant_code == fields.participant_code,
        )
    ):
        raise _code_taken()
    session.add(participant)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _code_taken() from exc
    if participant.status is ParticipantStatus.ENROLLED:
        await announce_participant_enrolled(session, participant)
    await record_about(
        session,
        context,
        AuditSubject.participant(participant, AuditCategory.DATA),
        "participant.create",
        after=participant_snapshot(participant),
    )
    if participant.status is ParticipantStatus.ENROLLED:
        await generate_visits_on_enrollment(session, context, participant, now)
    return participant, access


def _set_contact(
    settings: Settings,
    encryptor: FieldEncryptor,
    participant: Participant,
    email: str | None,
    phone: str | None,
    *,
    clear: bool,
) -> None:
    if email is not None or clear:
        participant.email_encrypted = encryptor.encrypt(email) if email else None
        participant.email_index = email_index(settings, email) if email else None
    if phone is not None or clear:
        participant.phone_encrypted = encryptor.encrypt(phone) if phone else None


async def get_participant(
    session: AsyncSession,
    principal: StaffPrincipal,
    participant_id: uuid.UUID,
    capability: Capability = Capability.READ,
) -> tuple[Participant, StudyAccess]:
    """The participant if the caller's study role and site let them see it; 404 otherwise."""
    participant = await session.get(Participant, participant_id)
    access = await _visible_to(session, principal, participant) if participant else None
    if participant is None or access is None:
        raise NotFoundError("Participant not found")
    access.require(capability)
    return participant, access


async def _visible_to(
    session: AsyncSession, principal: StaffPrincipal, participant: Participant
) -> StudyAccess | None:
    """The caller's access to the participant's study, or None when the participant is hidden
    from them (another study, or another site for a site-scoped member)."""
    try:
        access = await study_access(session, principal, participant.study_id)
    except NotFoundError:
        return None
    return access if access.sees_site(participant.site_id) else None


_PARTICIPANT_SORTS: dict[str, InstrumentedAttribute[Any]] = {
    "participant_id": Participant.participant_code,
    "created_at": Participant.created_at,
    "enrollment_date": Participant.enrollment_date,
    "status": Participant.status,
}
_DEFAULT_PARTICIPANT_SORT = "participant_id"


@lru_cache(maxsize=32)  # 32 shapes: five filters, each used or not
def _participants_where(
    in_study: bool, site_scoped: bool, by_status: bool, by_site: bool, searched: bool
) -> Select[Participant]:
    """The participants one combination of filters selects; the values are bound at execution
    (`study_id`, `scope_site_id`, `status`, `site_id`, `pattern`)."""
    statement = select(Participant)
    if in_study:
        statement = statement.where(Participant.study_id == bindparam("study_id"))
    if site_scoped:
        statement = statement.where(Participant.site_id == bindparam("scope_site_id"))
    if by_status:
        statement = statement.where(Participant.status == bindparam("status"))
    if by_site:
        statement = statement.where(Participant.site_id == bindparam("site_id"))
    if searched:
        statement = statement.where(
            Participant.participant_code.ilike(bindparam("pattern", type_=String))
        )
    return statement


def _participant_page(
    statement: Select[Participant], sort_key: str, descending: bool
) -> PreparedPage[Participant]:
    return prepare_page(
        statement,
        sort=_PARTICIPANT_SORTS[sort_key],
        descending=descending,
        tie_breaker=Participant.id,
    )


@lru_cache(maxsize=256)  # 256 shapes: the filters' 32, four sorts, two orders
def _prepared_participant_page(
    in_study: bool,
    site_scoped: bool,
    by_status: bool,
    by_site: bool,
    searched: bool,
    sort_key: str,
    descending: bool,
) -> PreparedPage[Participant]:
    """The page statement of one shape of request (one study's participants, or every
    study's for an administrator), built once."""
    statement = _participants_where(in_study, site_scoped, by_status, by_site, searched)
    return _participant_page(statement, sort_key, descending)


async def list_participants(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    study_id: uuid.UUID | None,
    status: ParticipantStatus | None,
    site: str | None,
    q: str | None,
) -> tuple[Sequence[Participant], Pagination, dict[uuid.UUID, StudyAccess] | None]:
    """`site` is the site's UUID or, with `study_id`, its code."""
    memberships = await member_study_access(session, principal)
    if study_id is None:
        return await _participants_of_all_studies(
            session, params, memberships, status=status, site=site, q=q
        )
    # The caller's access to the study: their membership, read above (as `study_access` would
    # read it again). An administrator's study is looked up only when the page cannot show
    # that it exists (it is empty), or before a refusal that must not come first (an unknown
    # site or sort of a study that does not exist is 404).
    scope_site_id: uuid.UUID | None = None
    if memberships is not None:
        access = memberships.get(study_id)
        if access is None:
            raise NotFoundError("Study not found")
        scope_site_id = access.site_id
    study_seen = memberships is not None
    unknown_sort = (params.sort or _DEFAULT_PARTICIPANT_SORT) not in _PARTICIPANT_SORTS
    if not study_seen and (site is not None or unknown_sort):
        await study_access(session, principal, study_id)
        study_seen = True
    values: dict[str, Any] = {"study_id": study_id}
    if scope_site_id is not None:
        values["scope_site_id"] = scope_site_id
    if status is not None:
        values["status"] = status
    if site is not None:
        site_row = await find_site(session, site, study_id)
        if site_row is None or (memberships is not None and site_row.study_id not in memberships):
            raise unknown_site()
        values["site_id"] = site_row.id
    if q:
        values["pattern"] = f"%{q.strip()}%"
    sort_key = sort_key_of(params, _PARTICIPANT_SORTS, _DEFAULT_PARTICIPANT_SORT)
    prepared = _prepared_participant_page(
        True,
        scope_site_id is not None,
        status is not None,
        site is not None,
        bool(q),
        sort_key,
        params.order == "desc",
    )
    rows, pagination = await run_prepared_page(session, prepared, params, values)
    if not rows and not study_seen:
        await study_access(session, principal, study_id)
    return rows, pagination, memberships


async def _participants_of_all_studies(
    session: AsyncSession,
    params: PageParams,
    memberships: dict[uuid.UUID, StudyAccess] | None,
    *,
    status: ParticipantStatus | None,
    site: str | None,
    q: str | None,
) -> tuple[Sequence[Participant], Pagination, dict[uuid.UUID, StudyAccess] | None]:
    """`list_participants` without a study: every study the caller can see."""
    if memberships is not None and not memberships:
        return [], Pagination.empty(params), {}
    values: dict[str, Any] = {}
    if status is not None:
        values["status"] = status
    if site is not None:
        if as_uuid(site) is None:
            raise code_without_study("site_id", "site")
        site_row = await find_site(session, site, None)
        if site_row is None or (memberships is not None and site_row.study_id not in memberships):
            raise unknown_site()
        values["site_id"] = site_row.id
    if q:
        values["pattern"] = f"%{q.strip()}%"
    sort_key = sort_key_of(params, _PARTICIPANT_SORTS, _DEFAULT_PARTICIPANT_SORT)
    shape = (False, False, status is not None, site is not None, bool(q))
    descending = params.order == "desc"
    if memberships is None:
        prepared = _prepared_participant_page(*shape, sort_key, descending)
    else:
        # A member's studies and sites differ per caller: that part is added per request.
        visible = [
            (Participant.study_id == sid)
            & ((Participant.site_id == a.site_id) if a.site_id is not None else true())
            for sid, a in memberships.items()
        ]
        statement = _participants_where(*shape).where(or_(*visible))
        prepared = _participant_page(statement, sort_key, descending)
    rows, pagination = await run_prepared_page(session, prepared, params, values)
    return rows, pagination, memberships


async def update_participant(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    context: AuditContext,
    principal: StaffPrincipal,
    participant_id: uuid.UUID,
    fields: ParticipantFields,
    provided: set[str],
    reason: str | None,
) -> tuple[Participant, StudyAccess]:
    participant, access = await get_participant(
        session, principal, participant_id, Capability.EDIT_PARTICIPANTS
    )
    if participant.status == ParticipantStatus.WITHDRAWN:
        raise ConflictError("A withdrawn participant cannot be edited")
    study = await session.get(Study, participant.study_id)
    assert study is not None
    before = participant_snapshot(participant)
    was_enrolled = participant.status is ParticipantStatus.ENROLLED
    if "participant_id" in provided and fields.participant_code:
        if fields.participant_code != participant.participant_code and await session.scalar(
            select(Participant.id).where(
                Participant.study_id == participant.study_id,
                Participant.participant_code == fields.participant_code,
            )
        ):
            raise _code_taken()
        participant.participant_code = fields.participant_code
    if "site_id" in provided:
        site = (
            await resolve_site(session, participant.study_id, fields.site)
            if fields.site is not None
            else None
        )
        site_id = site.id if site else None
        if access.site_id is not None and site_id != access.site_id:
            raise field_error("site_id", "You can only assign participants to your own site")
        participant.site_id = site_id
    if "language" in provided and fields.language is not None:
        if fields.language not in (study.supported_languages or []):
            raise field_error(
                "language", f"'{fields.language}' is not one of the study's languages"
            )
        participant.language = fields.language
    if "timezone" in provided and fields.timezone is not None:
        if not valid_timezone(fields.timezone):
            raise field_error("timezone", f"'{fields.timezone}' is not an IANA time zone")
        participant.timezone = fields.timezone
    if "status" in provided and fields.status is not None:
        if fields.status is ParticipantStatus.WITHDRAWN:
            raise field_error("status", "Use the withdrawal endpoint to withdraw a participant")
        participant.status = fields.status
    if "actor" in provided and fields.actor is not None:
        participant.actor = fields.actor
    if "enrollment_date" in provided:
        participant.enrollment_date = fields.enrollment_date
    if "anchor_date" in provided:
        participant.anchor_date = fields.anchor_date
    now = utcnow()
    enrolled_now = participant.status is ParticipantStatus.ENROLLED and not was_enrolled
    if enrolled_now and participant.enrollment_date is None:
        participant.enrollment_date = local_date(now, participant.timezone)
    contact_changed = "email" in provided or "phone" in provided
    if "email" in provided:
        _set_contact(settings, encryptor, participant, fields.email or "", None, clear=False)
        if not fields.email:
            participant.email_encrypted = None
            participant.email_index = None
    if "phone" in provided:
        participant.phone_encrypted = encryptor.encrypt(fields.phone) if fields.phone else None
    after = participant_snapshot(participant)
    # Visit rows are written before the update's audit event (docs/schedules.md, locks).
    if enrolled_now:
        await generate_visits_on_enrollment(session, context, participant, now)
        await announce_participant_enrolled(session, participant)
    elif participant.status is ParticipantStatus.ENROLLED:
        changed = [name for name in _VISIT_TIMING_FIELDS if before[name] != after[name]]
        if changed:
            await refresh_participant_visits(
                session, context, participant, now, changed=changed, reason=reason
            )
    if after != before or contact_changed:
        await record_about(
            session,
            context,
            AuditSubject.participant(participant, AuditCategory.DATA),
            "participant.update",
            before=before,
            after={**after, "contact_details_changed": contact_changed},
            reason=reason,
        )
    return participant, access


async def withdraw_participant(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    participant_id: uuid.UUID,
    *,
    scope: WithdrawalScope,
    reason: str,
    storage: SourceStorage | None = None,
) -> tuple[Participant, StudyAccess]:
    participant, access = await get_participant(
        session, principal, participant_id, Capability.EDIT_PARTICIPANTS
    )
    if participant.withdrawal_scope == WithdrawalScope.DELETE_DATA or (
        participant.status == ParticipantStatus.WITHDRAWN
        and scope is WithdrawalScope.STOP_COLLECTION
    ):
        raise ConflictError(
            "The participant is already withdrawn",
            details={"withdrawal_scope": participant.withdrawal_scope},
        )
    before = participant_snapshot(participant)
    participant.status = ParticipantStatus.WITHDRAWN
    now = utcnow()
    participant.withdrawn_at = now
    participant.withdrawal_scope = scope
    participant.withdrawal_reason = reason
    erased: dict[str, Any] = {}
    if scope is WithdrawalScope.DELETE_DATA:
        erased = await erase_participant_data(session, participant, storage)
    # Visit rows are written before the withdrawal's audit event (docs/schedules.md, locks).
    await cancel_visits_on_withdrawal(session, context, participant, now)
    cancelled = await cancel_pending(
        session, participant_id=participant.id, reason=CancelReason.PARTICIPANT_WITHDRAWN
    )
    after = {
        **participant_snapshot(participant),
        "scope": scope.value,
        "erased": erased,
        "cancelled_notifications": cancelled,
    }
    subject = AuditSubject.participant(participant, AuditCategory.DATA)
    await announce_participant_withdrawn(session, participant)
    await record_about(
        session,
        context,
        subject,
        "participant.withdrawn",
        before=before,
        after=after,
        reason=reason,
    )
    return participant, access


async def erase_participant_data(
    session: AsyncSession, participant: Participant, storage: SourceStorage | None = None
) -> dict[str, Any]:
    """Erase contact details, credentials and research data; the audit trail keeps the record.

    Sessions go with their task results and trials (foreign keys cascade). The source documents
    are removed from storage after the commit (an erasure that rolls back must leave them).
    Consent records stay: they document what the participant agreed to and when.
    """
    session_ids = list(
        (
            await session.scalars(
                select(AssessmentSession.id).where(
                    AssessmentSession.participant_id == participant.id
                )
            )
        ).all()
    )
    trial_count = 0
    if session_ids:
        trial_count = int(
            await session.scalar(
                select(func.count()).select_from(Trial).where(Trial.session_id.in_(session_ids))
            )
            or 0
        )
        await session.execute(delete(Trial).where(Trial.session_id.in_(session_ids)))
        await session.execute(delete(TaskResult).where(TaskResult.session_id.in_(session_ids)))
        await session.execute(
            delete(AssessmentSession).where(AssessmentSession.id.in_(session_ids))
        )
        if storage is not None:
            emit(
                session,
                SOURCE_DOCUMENTS_ERASED,
                {
                    "storage": storage.location,
                    "directory": f"sources/{participant.study_id}/{participant.id}",
                },
            )
    erased = {
        "email": participant.email_encrypted is not None,
        "phone": participant.phone_encrypted is not None,
        "sessions": len(session_ids),
        "trials": trial_count,
    }
    participant.email_encrypted = None
    participant.email_index = None
    participant.phone_encrypted = None
    # The masked addresses of past notifications go with the addresses themselves.
    await forget_destinations(session, participant.id)
    participant.access_code_hash = None
    participant.access_code_created_at = None
    await session.execute(
        delete(MagicLinkToken).where(MagicLinkToken.participant_id == participant.id)
    )
    await revoke_participant_logins(session, participant.id)
    await forget_participant(session, participant.id)
    return erased


async def issue_access_code(
    session: AsyncSession,
    settings: Settings,
    context: AuditContext,
    principal: StaffPrincipal,
    participant_id: uuid.UUID,
) -> tuple[Participant, str]:
    participant, _ = await get_participant(
        session, principal, participant_id, Capability.EDIT_PARTICIPANTS
    )
    if participant.status == ParticipantStatus.WITHDRAWN:
        raise ConflictError("A withdrawn participant cannot receive an access code")
    code = generate_access_code()
    replaced = participant.access_code_hash is not None
    participant.access_code_hash = hash_access_code(settings, code)
    participant.access_code_created_at = utcnow()
    # A new code ends sign-ins made with the old one.
    await revoke_participant_logins(session, participant.id)
    await record_about(
        session,
        context,
        AuditSubject.participant(participant, AuditCategory.AUTH),
        "participant.access_code_issued",
        after={"replaced_previous_code": replaced},
    )
    return participant, code


async def participant_for_principal(
    session: AsyncSession,
    principal: Principal,
    participant_id: uuid.UUID,
    capability: Capability,
) -> Participant:
    """The participant behind a stored id (a session's, a consent record's): a participant token
    reaches only itself, staff what `get_participant` lets them; 404 otherwise, like a path id."""
    if isinstance(principal, ParticipantPrincipal):
        participant = await session.get(Participant, principal.participant_id)
        if participant is None or participant_id != principal.participant_id:
            raise NotFoundError("Participant not found")
        return participant
    found, _ = await get_participant(session, principal, participant_id, capability)
    return found


class _OfAParticipant(Protocol):
    participant_id: uuid.UUID


ParticipantRowT = TypeVar("ParticipantRowT", bound=Base)


async def participant_row_for(
    session: AsyncSession,
    principal: Principal,
    model: type[ParticipantRowT],
    row_id: uuid.UUID,
    capability: Capability,
    *,
    missing: str,
    lock: bool = False,
) -> tuple[ParticipantRowT, Participant]:
    """A row that belongs to one participant (a visit, a consent record) and that participant,
    checked as `participant_for_principal` checks it; a row of a participant the caller cannot
    reach answers `missing` (404), like a row that does not exist."""
    row = await session.get(model, row_id, with_for_update=lock)
    if row is None:
        raise NotFoundError(missing)
    owned: _OfAParticipant = row  # type: ignore[assignment]
    with not_found_as(missing):
        participant = await participant_for_principal(
            session, principal, owned.participant_id, capability
        )
    return row, participant


async def participant_filter(
    session: AsyncSession,
    principal: Principal,
    reference: str | None,
    capability: Capability,
    *,
    study_id: uuid.UUID | None,
) -> uuid.UUID | None:
    """The id of the participant a list's `participant_id` query names, checked as
    `resolve_participant` checks it; None when the query leaves it out."""
    if reference is None:
        return None
    participant = await resolve_participant(
        session, principal, reference, capability, study_id=study_id
    )
    return participant.id


async def resolve_participant(
    session: AsyncSession,
    principal: Principal,
    reference: str | None,
    capability: Capability,
    *,
    study_id: uuid.UUID | None,
) -> Participant:
    """The participant a body or a query names: its UUID, or its code within `study_id` (the
    study the request names, or a participant token's own).

    A participant token names only itself and may leave the field out. Staff must name a
    participant they can see and hold `capability` on it. A study the caller cannot see is
    404; a reference matching no participant the caller can reach is 422 naming `field`, the
    same whether the participant does not exist or is hidden; a missing capability is 403.
    Errors name the field `participant_id`, as every body and query that takes one calls it.
    """
    if isinstance(principal, ParticipantPrincipal):
        if study_id is not None and study_id != principal.study_id:
            raise NotFoundError("Study not found")
        participant = await session.get(Participant, principal.participant_id)
        if participant is None:
            raise NotFoundError("Participant not found")
        if reference is not None and not names_participant(participant, reference):
            raise unknown_participant()
        return participant
    if reference is None:
        raise field_error("participant_id", "participant_id is required for staff")
    if study_id is not None:
        await study_access(session, principal, study_id)
    elif as_uuid(reference) is None:
        raise code_without_study("participant_id", "participant")
    participant = await find_participant(session, reference, study_id)
    access = await _visible_to(session, principal, participant) if participant else None
    if participant is None or access is None:
        raise unknown_participant()
    access.require(capability)
    return participant
