"""Studies, their sites and members."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Integer,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import ConflictError, NotFoundError, field_error
from app.models.assessment import AssessmentSession, SessionStatus
from app.models.participant import Participant, ParticipantStatus
from app.models.study import (
    ConsentMode,
    MemberRole,
    Site,
    Study,
    StudyMember,
    StudyRole,
    StudyStatus,
)
from app.models.user import User, UserRole, UserStatus
from app.schemas.common import PageParams, Pagination
from app.services.audit import AuditContext
from app.services.audit_subjects import AuditSubject, record_about, record_change
from app.services.pagination import (
    PreparedPage,
    paginate,
    paginate_rows,
    prepare_page,
    run_prepared_page,
    sort_key_of,
)
from app.services.participants import valid_timezone
from app.services.policy import (
    Capability,
    StudyAccess,
    member_study_access,
    require_study_capability,
    require_study_creator,
    study_access,
)
from app.services.principals import StaffPrincipal
from app.services.references import resolve_site

STUDY_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{1,19}(-[A-Z0-9]{1,20}){0,4}$")
SITE_CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")

# draft → active ⇄ paused → completed; archived from any state.
ALLOWED_TRANSITIONS: dict[StudyStatus, frozenset[StudyStatus]] = {
    StudyStatus.DRAFT: frozenset({StudyStatus.ACTIVE, StudyStatus.ARCHIVED}),
    StudyStatus.ACTIVE: frozenset(
        {StudyStatus.PAUSED, StudyStatus.COMPLETED, StudyStatus.ARCHIVED}
    ),
    StudyStatus.PAUSED: frozenset(
        {StudyStatus.ACTIVE, StudyStatus.COMPLETED, StudyStatus.ARCHIVED}
    ),
    StudyStatus.COMPLETED: frozenset({StudyStatus.ARCHIVED}),
    StudyStatus.ARCHIVED: frozenset(),
}


def _study_subject(study: Study) -> AuditSubject:
    return AuditSubject.configuration("study", study.id, study.id)


def study_snapshot(study: Study) -> dict[str, Any]:
    return {
        "code": study.code,
        "name": study.name,
        "description": study.description,
        "pi_name": study.pi_name,
        "pi_email": study.pi_email,
        "start_date": study.start_date.isoformat() if study.start_date else None,
        "end_date": study.end_date.isoformat() if study.end_date else None,
        "status": study.status,
        "config": study.config,
        "supported_languages": study.supported_languages,
        "consent_mode": study.consent_mode,
        "redcap_enabled": study.redcap_enabled,
        "timezone": study.timezone,
    }


@dataclass(slots=True)
class StudyFields:
    code: str | None = None
    name: str | None = None
    description: str | None = None
    pi_name: str | None = None
    pi_email: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    config: dict[str, Any] | None = None
    supported_languages: list[str] | None = None
    consent_mode: ConsentMode | None = None
    redcap_enabled: bool | None = None
    timezone: str | None = None
    provided: set[str] = field(default_factory=set)


def _code_taken() -> ConflictError:
    return ConflictError("A study with this code already exists", details={"field": "code"})


def _check_study_fields(study: Study) -> None:
    if not STUDY_CODE_PATTERN.match(study.code):
        raise field_error(
            "code",
            "Use upper-case letters, digits and hyphens, e.g. NEURO-2024-001",
        )
    if study.start_date and study.end_date and study.end_date < study.start_date:
        raise field_error("end_date", "The end date is before the start date")
    languages = study.supported_languages or []
    if not languages:
        raise field_error("supported_languages", "At least one language is required")
    bad = [lang for lang in languages if not LANGUAGE_PATTERN.match(lang)]
    if bad:
        raise field_error("supported_languages", f"Not language codes: {', '.join(bad)}")
    if len(set(languages)) != len(languages):
        raise field_error("supported_languages", "Languages are listed twice")
    if not valid_timezone(study.timezone):
        raise field_error("timezone", f"'{study.timezone}' is not an IANA time zone")


async def create_study(
    session: AsyncSession, context: AuditContext, principal: StaffPrincipal, fields: StudyFields
) -> Study:
    require_study_creator(principal)
    assert fields.code is not None and fields.name is not None
    study = Study(
        id=uuid.uuid4(),
        code=fields.code.strip().upper(),
        name=fields.name.strip(),
        description=fields.description,
        pi_name=fields.pi_name,
        pi_email=fields.pi_email,
        start_date=fields.start_date,
        end_date=fields.end_date,
        status=StudyStatus.DRAFT,
        config=fields.config or {},
        supported_languages=fields.supported_languages or ["en"],
        consent_mode=fields.consent_mode or ConsentMode.BUILTIN,
        redcap_enabled=bool(fields.redcap_enabled),
        timezone=fields.timezone or "UTC",
        created_by=principal.user_id,
    )
    _check_study_fields(study)
    if await session.scalar(select(Study.id).where(Study.code == study.code)):
        raise _code_taken()
    session.add(study)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _code_taken() from exc
    # The creator becomes the study's researcher, so they can configure what they created.
    session.add(
        StudyMember(
            id=uuid.uuid4(),
            study_id=study.id,
            user_id=principal.user_id,
            role=MemberRole.RESEARCHER,
        )
    )
    await record_about(
        session, context, _study_subject(study), "study.create", after=study_snapshot(study)
    )
    return study


async def get_study(session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID) -> Study:
    await study_access(session, principal, study_id)
    study = await session.get(Study, study_id)
    assert study is not None
    return study


_STUDY_SORTS: dict[str, InstrumentedAttribute[Any]] = {
    "code": Study.code,
    "name": Study.name,
    "created_at": Study.created_at,
    "status": Study.status,
    "start_date": Study.start_date,
}


@lru_cache(maxsize=128)  # 80 shapes: three filters, five sorts, two orders
def _study_page(
    members_only: bool, by_status: bool, searched: bool, sort_key: str, descending: bool
) -> PreparedPage[Study]:
    """The page statement of the study list for one combination of filters and sort; the
    values are bound at execution (`study_ids`, `status`, `pattern`)."""
    statement = select(Study)
    if members_only:
        statement = statement.where(Study.id.in_(bindparam("study_ids", expanding=True)))
    if by_status:
        statement = statement.where(Study.status == bindparam("status"))
    if searched:
        pattern = bindparam("pattern", type_=String)
        statement = statement.where(Study.code.ilike(pattern) | Study.name.ilike(pattern))
    return prepare_page(
        statement, sort=_STUDY_SORTS[sort_key], descending=descending, tie_breaker=Study.id
    )


async def list_studies(
    session: AsyncSession,
    principal: StaffPrincipal,
    params: PageParams,
    *,
    status: StudyStatus | None,
    q: str | None,
) -> tuple[list[StudyView], Pagination]:
    """One page of the studies the caller can see (members: theirs; administrators: all), as
    `study_views` gives them."""
    sort_key = sort_key_of(params, _STUDY_SORTS, "code")
    access = await member_study_access(session, principal)
    if access is not None and not access:
        return [], Pagination.empty(params)
    values: dict[str, Any] = {}
    if access is not None:
        values["study_ids"] = list(access)
    if status is not None:
        values["status"] = status
    if q:
        values["pattern"] = f"%{q.strip()}%"
    prepared = _study_page(
        access is not None, status is not None, bool(q), sort_key, params.order == "desc"
    )
    studies, pagination = await run_prepared_page(session, prepared, params, values)
    return await _views(session, studies, access), pagination


@dataclass(frozen=True, slots=True)
class StudyStats:
    participants_by_status: dict[ParticipantStatus, int]
    participants_total: int
    sessions_total: int
    sessions_completed: int
    completion_rate: float


def _counts_for(
    access: dict[uuid.UUID, StudyAccess] | None, study_id: uuid.UUID, site_id: uuid.UUID | None
) -> bool:
    """Whether a row of a study's site enters the caller's statistics (a site-scoped member
    counts their own site only; administrators, with no `access`, count everything)."""
    scope = access.get(study_id) if access is not None else None
    return scope is None or scope.sees_site(site_id)


def _stats_statement() -> CompoundSelect[int, uuid.UUID, uuid.UUID | None, str, int]:
    """Participants by status, then assessment sessions by status, per study and site, in one
    round trip (`kind` 0 and 1). Statuses come as their stored strings: the two enums share
    the column. Built once: only `study_ids` changes."""
    participants: Select[int, uuid.UUID, uuid.UUID | None, str, int] = (
        select(
            literal_column("0", Integer).label("kind"),
            Participant.study_id,
            Participant.site_id,
            type_coerce(Participant.status, String).label("status"),
            func.count().label("count"),
        )
        .where(Participant.study_id.in_(bindparam("study_ids", expanding=True)))
        .group_by(Participant.study_id, Participant.site_id, Participant.status)
    )
    sessions: Select[int, uuid.UUID, uuid.UUID | None, str, int] = (
        select(
            literal_column("1", Integer),
            AssessmentSession.study_id,
            Participant.site_id,
            type_coerce(AssessmentSession.status, String),
            func.count(),
        )
        .join(Participant, Participant.id == AssessmentSession.participant_id)
        .where(AssessmentSession.study_id.in_(bindparam("study_ids", expanding=True)))
        .group_by(AssessmentSession.study_id, Participant.site_id, AssessmentSession.status)
    )
    return union_all(participants, sessions)


_STUDY_STATS = _stats_statement()
_PARTICIPANT_COUNTS = 0


async def study_stats(
    session: AsyncSession,
    study_ids: Sequence[uuid.UUID],
    access: dict[uuid.UUID, StudyAccess] | None,
) -> dict[uuid.UUID, StudyStats]:
    """Participants by status and assessment sessions per study, in one grouped query;
    site-scoped members count their site only. The completion rate is completed sessions over
    all sessions (0 when there are none)."""
    counts: dict[uuid.UUID, dict[ParticipantStatus, int]] = {sid: {} for sid in study_ids}
    sessions: dict[uuid.UUID, list[int]] = {sid: [0, 0] for sid in study_ids}  # total, completed
    if study_ids:
        rows = await session.execute(_STUDY_STATS, {"study_ids": list(study_ids)})
        for kind, study_id, site_id, status, count in rows:
            if not _counts_for(access, study_id, site_id):
                continue
            if kind == _PARTICIPANT_COUNTS:
                by_status = counts[study_id]
                participant_status = ParticipantStatus(status)
                by_status[participant_status] = by_status.get(participant_status, 0) + int(count)
            else:
                sessions[study_id][0] += int(count)
                if status == SessionStatus.COMPLETED.value:
                    sessions[study_id][1] += int(count)
    result: dict[uuid.UUID, StudyStats] = {}
    for study_id, by_status in counts.items():
        full = {status: by_status.get(status, 0) for status in ParticipantStatus}
        total, completed = sessions[study_id]
        result[study_id] = StudyStats(
            participants_by_status=full,
            participants_total=sum(full.values()),
            sessions_total=total,
            sessions_completed=completed,
            completion_rate=round(completed / total, 4) if total else 0.0,
        )
    return result


@dataclass(frozen=True, slots=True)
class StudyView:
    """A study as every route answers it: with the caller's role in it and its statistics."""

    study: Study
    role: StudyRole
    stats: StudyStats


async def study_views(
    session: AsyncSession, principal: StaffPrincipal, studies: Sequence[Study]
) -> list[StudyView]:
    """The read model of studies the caller can see, whichever route returns them."""
    return await _views(session, studies, await member_study_access(session, principal))


async def _views(
    session: AsyncSession,
    studies: Sequence[Study],
    access: dict[uuid.UUID, StudyAccess] | None,
) -> list[StudyView]:
    """`study_views` for the caller's memberships already read (`access`, None for an
    administrator)."""
    stats = await study_stats(session, [study.id for study in studies], access)
    return [
        StudyView(
            study=study,
            role=access[study.id].role if access is not None else UserRole.ADMIN,
            stats=stats[study.id],
        )
        for study in studies
    ]


async def _study_to_configure(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID
) -> Study:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    study = await session.get(Study, study_id)
    assert study is not None  # study_access found it
    return study


async def update_study(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    fields: StudyFields,
    reason: str | None,
) -> Study:
    study = await _study_to_configure(session, principal, study_id)
    if study.status == StudyStatus.ARCHIVED:
        raise ConflictError("An archived study cannot be changed")
    before = study_snapshot(study)
    for name in fields.provided:
        value = getattr(fields, name)
        if name == "code" and value is not None:
            value = value.strip().upper()
            if value != study.code and await session.scalar(
                select(Study.id).where(Study.code == value)
            ):
                raise _code_taken()
        if (
            name in ("code", "name", "supported_languages", "config", "consent_mode", "timezone")
            and value is None
        ):
            raise field_error(name, "This field cannot be empty")
        setattr(study, name, value)
    _check_study_fields(study)
    after = study_snapshot(study)
    await record_change(
        session, context, _study_subject(study), "study.update", before, after, reason
    )
    return study


async def change_study_status(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    new_status: StudyStatus,
    reason: str | None,
) -> Study:
    study = await _study_to_configure(session, principal, study_id)
    current = study.status
    if new_status == current:
        return study
    allowed = ALLOWED_TRANSITIONS[current]
    if new_status not in allowed:
        raise ConflictError(
            f"A {current.value} study cannot become {new_status.value}",
            details={
                "current_status": current.value,
                "requested_status": new_status.value,
                "allowed": sorted(status.value for status in allowed),
            },
        )
    study.status = new_status
    await record_about(
        session,
        context,
        _study_subject(study),
        "study.status_changed",
        before={"status": current.value},
        after={"status": new_status.value},
        reason=reason,
    )
    return study


def _site_subject(site: Site) -> AuditSubject:
    return AuditSubject.configuration("site", site.id, site.study_id)


def site_snapshot(site: Site) -> dict[str, Any]:
    return {"code": site.code, "name": site.name, "timezone": site.timezone}


async def list_sites(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID, params: PageParams
) -> tuple[Sequence[Site], Pagination]:
    await study_access(session, principal, study_id)
    return await paginate(
        session,
        select(Site).where(Site.study_id == study_id),
        params,
        sortable={"code": Site.code, "name": Site.name, "created_at": Site.created_at},
        default_sort="code",
        tie_breaker=Site.id,
    )


async def create_site(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    *,
    code: str,
    name: str,
    timezone: str | None,
) -> Site:
    """`timezone` None: the study's."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    if timezone is None:
        study = await session.get(Study, study_id)
        assert study is not None  # the access check found it
        timezone = study.timezone
    if not SITE_CODE_PATTERN.match(code):
        raise field_error("code", "Use letters, digits, '-' and '_' (at most 50)")
    if not valid_timezone(timezone):
        raise field_error("timezone", f"'{timezone}' is not an IANA time zone")
    if await session.scalar(select(Site.id).where(Site.study_id == study_id, Site.code == code)):
        raise ConflictError(
            "This study already has a site with this code", details={"field": "code"}
        )
    site = Site(id=uuid.uuid4(), study_id=study_id, code=code, name=name.strip(), timezone=timezone)
    session.add(site)
    await session.flush()
    await record_about(
        session, context, _site_subject(site), "site.create", after=site_snapshot(site)
    )
    return site


async def update_site(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    site_id: uuid.UUID,
    *,
    name: str | None,
    timezone: str | None,
) -> Site:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    site = await session.get(Site, site_id)
    if site is None or site.study_id != study_id:
        raise NotFoundError("Site not found")
    before = site_snapshot(site)
    if name is not None:
        site.name = name.strip()
    if timezone is not None:
        if not valid_timezone(timezone):
            raise field_error("timezone", f"'{timezone}' is not an IANA time zone")
        site.timezone = timezone
    await record_change(
        session, context, _site_subject(site), "site.update", before, site_snapshot(site)
    )
    return site


def _member_subject(member: StudyMember) -> AuditSubject:
    return AuditSubject.configuration("study_member", member.id, member.study_id)


def member_snapshot(member: StudyMember) -> dict[str, Any]:
    return {
        "user_id": str(member.user_id),
        "role": member.role,
        "site_id": str(member.site_id) if member.site_id else None,
    }


async def list_members(
    session: AsyncSession, principal: StaffPrincipal, study_id: uuid.UUID, params: PageParams
) -> tuple[Sequence[tuple[StudyMember, User]], Pagination]:
    await study_access(session, principal, study_id)
    rows, pagination = await paginate_rows(
        session,
        select(StudyMember, User)
        .join(User, User.id == StudyMember.user_id)
        .where(StudyMember.study_id == study_id),
        params,
        sortable={
            "email": User.email,
            "name": User.name,
            "role": StudyMember.role,
            "created_at": StudyMember.created_at,
        },
        default_sort="email",
        tie_breaker=StudyMember.id,
    )
    return [(member, user) for member, user in rows], pagination


async def add_member(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    role: MemberRole,
    site: str | None,
) -> tuple[StudyMember, User]:
    """`site` is the UUID or code of the site the membership is limited to."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    user = await session.get(User, user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        raise field_error("user_id", "No active user with this id")
    site_id = (await resolve_site(session, study_id, site)).id if site is not None else None
    if await session.scalar(
        select(StudyMember.id).where(
            StudyMember.study_id == study_id, StudyMember.user_id == user_id
        )
    ):
        raise ConflictError(
            "This user is already a member of the study", details={"field": "user_id"}
        )
    member = StudyMember(
        id=uuid.uuid4(), study_id=study_id, user_id=user_id, role=role, site_id=site_id
    )
    session.add(member)
    await session.flush()
    await record_about(
        session, context, _member_subject(member), "member.add", after=member_snapshot(member)
    )
    return member, user


async def _member(session: AsyncSession, study_id: uuid.UUID, member_id: uuid.UUID) -> StudyMember:
    member = await session.get(StudyMember, member_id)
    if member is None or member.study_id != study_id:
        raise NotFoundError("Member not found")
    return member


async def update_member(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    member_id: uuid.UUID,
    *,
    role: MemberRole | None,
    site: str | None,
    site_provided: bool,
) -> tuple[StudyMember, User]:
    """`site` is the UUID or code of the site the membership is limited to; None lifts it."""
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    member = await _member(session, study_id, member_id)
    before = member_snapshot(member)
    if role is not None:
        await _keep_one_researcher(session, study_id, member, role)
        member.role = role
    if site_provided:
        member.site_id = (
            (await resolve_site(session, study_id, site)).id if site is not None else None
        )
    after = member_snapshot(member)
    await record_change(session, context, _member_subject(member), "member.update", before, after)
    user = await session.get(User, member.user_id)
    assert user is not None
    return member, user


async def _keep_one_researcher(
    session: AsyncSession, study_id: uuid.UUID, member: StudyMember, new_role: MemberRole | None
) -> None:
    """A study keeps at least one researcher, so somebody can still configure it."""
    if member.role != MemberRole.RESEARCHER or new_role is MemberRole.RESEARCHER:
        return
    researchers = await session.scalar(
        select(func.count())
        .select_from(StudyMember)
        .where(StudyMember.study_id == study_id, StudyMember.role == MemberRole.RESEARCHER)
    )
    if (researchers or 0) <= 1:
        raise ConflictError("A study must keep at least one researcher")


async def remove_member(
    session: AsyncSession,
    context: AuditContext,
    principal: StaffPrincipal,
    study_id: uuid.UUID,
    member_id: uuid.UUID,
) -> None:
    await require_study_capability(session, principal, study_id, Capability.CONFIGURE_STUDY)
    member = await _member(session, study_id, member_id)
    await _keep_one_researcher(session, study_id, member, None)
    before = member_snapshot(member)
    await session.delete(member)
    await record_about(session, context, _member_subject(member), "member.remove", before=before)
