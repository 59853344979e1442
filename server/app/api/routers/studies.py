from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.dependencies import ActorContextDep, CurrentUser, PageParamsDep, SessionDep
from app.api.openapi import error_responses
from app.models.study import Site, Study, StudyMember, StudyStatus
from app.models.user import User
from app.schemas.common import Page
from app.schemas.studies import (
    MemberCreate,
    MemberRead,
    MemberUpdate,
    SiteCreate,
    SiteRead,
    SiteUpdate,
    StudyCreate,
    StudyRead,
    StudyStatsRead,
    StudyStatusChange,
    StudyUpdate,
)
from app.services import studies as service
from app.services.principals import StaffPrincipal

router = APIRouter(prefix="/studies", tags=["studies"])


def _view_reads(views: Sequence[service.StudyView]) -> list[StudyRead]:
    return [
        StudyRead.from_study(view.study, view.role, StudyStatsRead.model_validate(view.stats))
        for view in views
    ]


async def _study_reads(
    session: AsyncSession, principal: StaffPrincipal, studies: Sequence[Study]
) -> list[StudyRead]:
    return _view_reads(await service.study_views(session, principal, studies))


async def _study_read(session: AsyncSession, principal: StaffPrincipal, study: Study) -> StudyRead:
    return (await _study_reads(session, principal, [study]))[0]


def _member_read(member: StudyMember, user: User) -> MemberRead:
    return MemberRead(
        id=member.id,
        study_id=member.study_id,
        user_id=member.user_id,
        email=user.email,
        name=user.name,
        role=member.role,
        site_id=member.site_id,
    )


@router.get("")
async def list_studies(
    principal: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    status: StudyStatus | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[StudyRead]:
    """The studies the caller can see, each with participants by status and completion."""
    views, pagination = await service.list_studies(session, principal, page, status=status, q=q)
    return Page[StudyRead](data=_view_reads(views), pagination=pagination)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(409))
async def create_study(
    body: StudyCreate, principal: CurrentUser, session: SessionDep, context: ActorContextDep
) -> StudyRead:
    fields = service.StudyFields(**body.model_dump())
    study = await service.create_study(session, context, principal, fields)
    return await _study_read(session, principal, study)


@router.get("/{study_id:uuid}")
async def get_study(study_id: uuid.UUID, principal: CurrentUser, session: SessionDep) -> StudyRead:
    study = await service.get_study(session, principal, study_id)
    return await _study_read(session, principal, study)


@router.patch("/{study_id:uuid}", responses=error_responses(409))
async def update_study(
    study_id: uuid.UUID,
    body: StudyUpdate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> StudyRead:
    provided = body.model_fields_set - {"reason"}
    fields = service.StudyFields(**body.model_dump(exclude={"reason"}), provided=provided)
    study = await service.update_study(session, context, principal, study_id, fields, body.reason)
    return await _study_read(session, principal, study)


@router.post("/{study_id:uuid}/status", responses=error_responses(409))
async def change_status(
    study_id: uuid.UUID,
    body: StudyStatusChange,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> StudyRead:
    """Move the study through draft → active ⇄ paused → completed, or archive it; else 409."""
    study = await service.change_study_status(
        session, context, principal, study_id, body.status, body.reason
    )
    return await _study_read(session, principal, study)


@router.get("/{study_id:uuid}/sites")
async def list_sites(
    study_id: uuid.UUID, principal: CurrentUser, session: SessionDep, page: PageParamsDep
) -> Page[SiteRead]:
    sites, pagination = await service.list_sites(session, principal, study_id, page)
    return Page[SiteRead](
        data=[SiteRead.model_validate(site) for site in sites], pagination=pagination
    )


@router.post(
    "/{study_id:uuid}/sites", status_code=status.HTTP_201_CREATED, responses=error_responses(409)
)
async def create_site(
    study_id: uuid.UUID,
    body: SiteCreate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> SiteRead:
    site: Site = await service.create_site(
        session,
        context,
        principal,
        study_id,
        code=body.code,
        name=body.name,
        timezone=body.timezone,
    )
    return SiteRead.model_validate(site)


@router.patch("/{study_id:uuid}/sites/{site_id:uuid}")
async def update_site(
    study_id: uuid.UUID,
    site_id: uuid.UUID,
    body: SiteUpdate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> SiteRead:
    site = await service.update_site(
        session, context, principal, study_id, site_id, name=body.name, timezone=body.timezone
    )
    return SiteRead.model_validate(site)


@router.get("/{study_id:uuid}/members")
async def list_members(
    study_id: uuid.UUID, principal: CurrentUser, session: SessionDep, page: PageParamsDep
) -> Page[MemberRead]:
    members, pagination = await service.list_members(session, principal, study_id, page)
    return Page[MemberRead](
        data=[_member_read(member, user) for member, user in members], pagination=pagination
    )


@router.post(
    "/{study_id:uuid}/members", status_code=status.HTTP_201_CREATED, responses=error_responses(409)
)
async def add_member(
    study_id: uuid.UUID,
    body: MemberCreate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> MemberRead:
    member, user = await service.add_member(
        session,
        context,
        principal,
        study_id,
        user_id=body.user_id,
        role=body.role,
        site=body.site_id,
    )
    return _member_read(member, user)


@router.patch("/{study_id:uuid}/members/{member_id:uuid}", responses=error_responses(409))
async def update_member(
    study_id: uuid.UUID,
    member_id: uuid.UUID,
    body: MemberUpdate,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> MemberRead:
    member, user = await service.update_member(
        session,
        context,
        principal,
        study_id,
        member_id,
        role=body.role,
        site=body.site_id,
        site_provided="site_id" in body.model_fields_set,
    )
    return _member_read(member, user)


@router.delete(
    "/{study_id:uuid}/members/{member_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(409),
)
async def remove_member(
    study_id: uuid.UUID,
    member_id: uuid.UUID,
    principal: CurrentUser,
    session: SessionDep,
    context: ActorContextDep,
) -> None:
    await service.remove_member(session, context, principal, study_id, member_id)
