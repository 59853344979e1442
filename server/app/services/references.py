"""Participants and sites named in a body, a query or an import file: by UUID or by code.

Paths take UUIDs only (the routers' `uuid` converter). Where a person types the identifier, the
UUID and the code are both accepted: a participant's code within its study, a site's code within
its study. A reference that matches nothing is 422 naming the field, the same answer whether
nothing exists or the caller may not see what does (docs/api-conventions.md, identifiers).
Which participant a caller may reach is decided by `app.services.participants`, on top of this.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailedError, field_error
from app.models.participant import Participant
from app.models.study import Site


def as_uuid(reference: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(reference)
    except ValueError:
        return None


def unknown_site() -> ValidationFailedError:
    return field_error("site_id", "No site you can reach has this id or code")


def unknown_participant() -> ValidationFailedError:
    return field_error("participant_id", "No participant you can reach has this id or code")


def code_without_study(field: str, what: str) -> ValidationFailedError:
    return field_error(field, f"A {what} code is read within a study: give study_id too")


def match_site(sites: Iterable[Site], reference: str) -> Site | None:
    """The site named by its UUID or its code; a code differing only in case names the one
    site it can mean, and none when two sites' codes differ only in case."""
    wanted_id = as_uuid(reference)
    folded: list[Site] = []
    for site in sites:
        if site.id == wanted_id or site.code == reference:
            return site
        if site.code.casefold() == reference.casefold():
            folded.append(site)
    return folded[0] if len(folded) == 1 else None


async def find_site(
    session: AsyncSession, reference: str, study_id: uuid.UUID | None
) -> Site | None:
    """The site of `study_id` named by UUID or code; without a study, by UUID only."""
    if study_id is None:
        site_id = as_uuid(reference)
        return await session.get(Site, site_id) if site_id is not None else None
    sites = (await session.scalars(select(Site).where(Site.study_id == study_id))).all()
    return match_site(sites, reference)


async def resolve_site(session: AsyncSession, study_id: uuid.UUID, reference: str) -> Site:
    """The site a body names within its study; 422 naming `site_id` when none matches."""
    site = await find_site(session, reference, study_id)
    if site is None:
        raise unknown_site()
    return site


def names_participant(participant: Participant, reference: str) -> bool:
    return participant.id == as_uuid(reference) or participant.participant_code == reference


async def find_participant(
    session: AsyncSession, reference: str, study_id: uuid.UUID | None
) -> Participant | None:
    """The participant named by UUID or by code within `study_id`; without a study, by UUID
    only. Visibility is the caller's business (`participants.resolve_participant`)."""
    participant_id = as_uuid(reference)
    matches = []
    if participant_id is not None:
        matches.append(Participant.id == participant_id)
    if study_id is not None:
        matches.append(Participant.participant_code == reference)
    if not matches:
        return None
    statement = select(Participant).where(or_(*matches))
    if study_id is not None:
        statement = statement.where(Participant.study_id == study_id)
    found = (await session.scalars(statement.limit(2))).all()
    # A code spelled like another participant's UUID: the UUID wins.
    return next((p for p in found if p.id == participant_id), found[0] if found else None)
