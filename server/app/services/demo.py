"""`metricis demo`: a study to click through in development, built through the real services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.audit import ActorType
from app.models.participant import ParticipantActor, ParticipantStatus
from app.models.study import MemberRole, Study, StudyStatus
from app.models.user import User, UserRole
from app.services import participants, studies
from app.services.audit import AuditContext
from app.services.principals import StaffPrincipal
from app.services.users import create_user

DEMO_STUDY_CODE = "DEMO-2026-001"
DEMO_PASSWORD = "Orchid-Lantern-2026!"  # noqa: S105 - development only; refused in production
DEMO_ADMIN_EMAIL = "admin@metricis.local"
DEMO_STAFF = (
    (DEMO_ADMIN_EMAIL, "Demo Administrator", UserRole.ADMIN),
    ("researcher@metricis.local", "Demo Researcher", UserRole.RESEARCHER),
    ("coordinator@metricis.local", "Demo Coordinator", UserRole.COORDINATOR),
    ("viewer@metricis.local", "Demo Viewer", UserRole.READ_ONLY),
)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    created: bool
    staff: tuple[tuple[str, UserRole], ...]
    study_code: str
    participant_code: str | None
    access_code: str | None


async def _user(
    session: AsyncSession, context: AuditContext, email: str, name: str, role: UserRole
) -> User:
    existing = await session.scalar(select(User).where(User.email == email))
    if existing is not None:
        return existing
    created = await create_user(
        session,
        context,
        email=email,
        name=name,
        role=role,
        password=DEMO_PASSWORD,
        must_change_password=False,
    )
    return created.user


def _principal(user: User) -> StaffPrincipal:
    return StaffPrincipal(
        user_id=user.id,
        session_id=uuid.uuid4(),
        email=user.email,
        name=user.name,
        role=user.role,
        must_change_password=False,
    )


async def seed_demo(
    session: AsyncSession, settings: Settings, encryptor: FieldEncryptor
) -> DemoSummary:
    context = AuditContext(actor_type=ActorType.SYSTEM, actor_id="demo", user_agent="metricis-demo")
    users = {
        role: await _user(session, context, email, name, role) for email, name, role in DEMO_STAFF
    }
    staff = tuple((email, role) for email, _, role in DEMO_STAFF)
    if await session.scalar(select(Study.id).where(Study.code == DEMO_STUDY_CODE)):
        return DemoSummary(False, staff, DEMO_STUDY_CODE, None, None)

    researcher = _principal(users[UserRole.RESEARCHER])
    researcher_context = context.as_actor(ActorType.USER, str(researcher.user_id))
    study = await studies.create_study(
        session,
        researcher_context,
        researcher,
        studies.StudyFields(
            code=DEMO_STUDY_CODE,
            name="Demo: cognition after mild stroke",
            description="A demonstration study with two sites and a few participants.",
            pi_name="Dr. Demo",
            pi_email="pi@example.org",
            supported_languages=["en", "fr"],
        ),
    )
    paris = await studies.create_site(
        session,
        researcher_context,
        researcher,
        study.id,
        code="PARIS",
        name="Paris",
        timezone="Europe/Paris",
    )
    await studies.create_site(
        session,
        researcher_context,
        researcher,
        study.id,
        code="MTL",
        name="Montréal",
        timezone="America/Toronto",
    )
    await studies.add_member(
        session,
        researcher_context,
        researcher,
        study.id,
        user_id=users[UserRole.COORDINATOR].id,
        role=MemberRole.COORDINATOR,
        site_id=paris.id,
    )
    await studies.add_member(
        session,
        researcher_context,
        researcher,
        study.id,
        user_id=users[UserRole.READ_ONLY].id,
        role=MemberRole.READ_ONLY,
        site_id=None,
    )
    await studies.change_study_status(
        session, researcher_context, researcher, study.id, StudyStatus.ACTIVE, "demo"
    )
    first = None
    for index in range(1, 6):
        participant, _ = await participants.create_participant(
            session,
            settings,
            encryptor,
            researcher_context,
            researcher,
            study.id,
            participants.ParticipantFields(
                participant_code=f"P{index:03d}",
                site_id=paris.id,
                email=f"participant{index}@example.org",
                actor=ParticipantActor.CAREGIVER if index == 5 else ParticipantActor.PATIENT,
                status=ParticipantStatus.SCREENED if index == 4 else ParticipantStatus.ENROLLED,
            ),
        )
        first = first or participant
    assert first is not None
    _, access_code = await participants.issue_access_code(
        session, settings, researcher_context, researcher, first.id
    )
    return DemoSummary(True, staff, DEMO_STUDY_CODE, first.participant_code, access_code)
