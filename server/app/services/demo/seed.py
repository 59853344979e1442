"""Seeding the demo through the real services, as the people of a study would.

The researcher creates the study, its sites, its consent form and its battery; the coordinator
records participant P002's in-person consent and runs their first session on the clinic tablet;
participant P001 can sign in and start. Each part is created only when it is missing, so a second
run changes nothing, except one thing on purpose: P001 gets a fresh access code at every run.
Codes are stored hashed, so an earlier one cannot be printed again; issuing one is audited like
any other and ends P001's earlier sign-ins.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.assessment import AssessmentSession, SessionStatus
from app.models.audit import ActorType
from app.models.battery import Battery
from app.models.consent import ConsentRecord, SignerRole
from app.models.participant import Participant, ParticipantActor, ParticipantStatus
from app.models.schedule import Schedule, Visit
from app.models.study import MemberRole, Study, StudyStatus
from app.models.user import User, UserRole
from app.schemas.assessments import SubmitRequest
from app.schemas.schedules import QuietHours, ScheduleEventIn
from app.services import assessment_sessions, batteries, participants, studies, submissions
from app.services.audit import AuditContext
from app.services.consent import forms, signing
from app.services.consent.gate import consent_gate
from app.services.demo import content
from app.services.principals import StaffPrincipal
from app.services.schedules import definitions
from app.services.session_store import SessionStore
from app.services.source_storage import SourceStorage
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
READY_PARTICIPANT_CODE = "P001"
COMPLETED_PARTICIPANT_CODE = "P002"
COMPLETED_SIGNER_NAME = "Alex Martin"
TRIALS_SEED = 2026
CLINIC_TABLET: dict[str, object] = {
    "model": "Clinic tablet",
    "os": "Android 14",
    "screen": [1280, 800],
}


@dataclass(frozen=True, slots=True)
class DemoSummary:
    created: bool
    """Whether this run added anything (False: everything was already there)."""
    staff: tuple[tuple[str, UserRole], ...]
    study_code: str
    study_id: uuid.UUID
    battery_id: uuid.UUID
    completed_participant_code: str
    participant_code: str
    """The participant who can sign in and start now."""
    access_code: str | None
    """Issued by this run; None when that participant has withdrawn since."""
    participant_must_sign_consent: bool
    reminder_participant_code: str | None = None
    """Enrolled by this run so that a reminder goes out now; None when one was enrolled earlier
    in the same hour (its reminder went out already, or is about to)."""


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


@dataclass(frozen=True, slots=True)
class _Actor:
    principal: StaffPrincipal
    context: AuditContext


async def _participant(session: AsyncSession, study_id: uuid.UUID, code: str) -> Participant | None:
    return await session.scalar(
        select(Participant).where(
            Participant.study_id == study_id, Participant.participant_code == code
        )
    )


async def _create_study(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    researcher: _Actor,
    users: dict[UserRole, User],
) -> Study:
    """The study, two sites, its members and five participants, then opened."""
    principal, context = researcher.principal, researcher.context
    study = await studies.create_study(
        session,
        context,
        principal,
        studies.StudyFields(
            code=DEMO_STUDY_CODE,
            name="Demo: cognition after mild stroke",
            description="A demonstration study with two sites and a few participants.",
            pi_name="Dr. Demo",
            pi_email="pi@example.org",
            supported_languages=[content.DEMO_LANGUAGE, "fr"],
        ),
    )
    paris = await studies.create_site(
        session, context, principal, study.id, code="PARIS", name="Paris", timezone="Europe/Paris"
    )
    await studies.create_site(
        session,
        context,
        principal,
        study.id,
        code="MTL",
        name="Montréal",
        timezone="America/Toronto",
    )
    # The coordinator works at the Paris site; the read-only member sees the whole study.
    for role, site in ((MemberRole.COORDINATOR, paris.code), (MemberRole.READ_ONLY, None)):
        await studies.add_member(
            session,
            context,
            principal,
            study.id,
            user_id=users[UserRole(role.value)].id,
            role=role,
            site=site,
        )
    await studies.change_study_status(
        session, context, principal, study.id, StudyStatus.ACTIVE, "demo"
    )
    for index in range(1, 6):
        await participants.create_participant(
            session,
            settings,
            encryptor,
            context,
            principal,
            study.id,
            participants.ParticipantFields(
                participant_code=f"P{index:03d}",
                site=paris.code,
                email=f"participant{index}@example.org",
                actor=ParticipantActor.CAREGIVER if index == 5 else ParticipantActor.PATIENT,
                status=ParticipantStatus.SCREENED if index == 4 else ParticipantStatus.ENROLLED,
            ),
        )
    return study


async def _ensure_consent_form(session: AsyncSession, researcher: _Actor, study: Study) -> bool:
    if await forms.published_form(session, study.id, content.DEMO_LANGUAGE) is not None:
        return False
    form = await forms.create_form(
        session,
        researcher.context,
        researcher.principal,
        study_id=study.id,
        language=content.DEMO_LANGUAGE,
        fields=forms.FormFields(
            title=content.CONSENT_TITLE,
            content=content.CONSENT_CONTENT,
            questions=content.CONSENT_QUESTIONS,
            requires_signature=True,
            reconsent_required=False,
        ),
    )
    await forms.publish_form(
        session, researcher.context, researcher.principal, form.id, reason="Demo data"
    )
    return True


async def _ensure_battery(
    session: AsyncSession, researcher: _Actor, study: Study
) -> tuple[Battery, bool]:
    existing = await session.scalar(
        select(Battery).where(
            Battery.study_id == study.id,
            Battery.name == content.BATTERY_NAME,
            Battery.archived.is_(False),
        )
    )
    if existing is not None:
        return existing, False
    battery, _ = await batteries.create_battery(
        session,
        researcher.context,
        researcher.principal,
        study.id,
        batteries.BatteryFields(
            name=content.BATTERY_NAME,
            description=content.BATTERY_DESCRIPTION,
            tasks=[
                batteries.TaskSpec(module_id, config) for module_id, config in content.BATTERY_TASKS
            ],
            estimated_minutes=content.BATTERY_MINUTES,
        ),
    )
    return battery, True


async def _ensure_schedule(
    session: AsyncSession, researcher: _Actor, study: Study, battery: Battery
) -> bool:
    """The study's schedule; its enrolled participants get their visits from it."""
    if await session.scalar(select(Schedule.id).where(Schedule.study_id == study.id)):
        return False
    await definitions.create_schedule(
        session,
        researcher.context,
        researcher.principal,
        study.id,
        definitions.ScheduleFields(
            name=content.SCHEDULE_NAME,
            events=[
                ScheduleEventIn.model_validate(event)
                for event in content.schedule_events(str(battery.id))
            ],
            reminder_quiet_hours=QuietHours.model_validate(content.SCHEDULE_QUIET_HOURS),
        ),
    )
    return True


async def _ensure_completed_visit(
    session: AsyncSession,
    store: SessionStore,
    storage: SourceStorage,
    coordinator: _Actor,
    study: Study,
    battery: Battery,
) -> bool:
    """P002's baseline visit: consent in person, then the battery on the clinic tablet.

    Only for a P002 nobody has touched yet (no consent record, no session): what someone did
    with the demo since is left as it is.
    """
    participant = await _participant(session, study.id, COMPLETED_PARTICIPANT_CODE)
    if (
        participant is None
        or participant.status == ParticipantStatus.WITHDRAWN
        or study.status != StudyStatus.ACTIVE
        or await session.scalar(
            select(ConsentRecord.id).where(ConsentRecord.participant_id == participant.id).limit(1)
        )
        or await session.scalar(
            select(AssessmentSession.id)
            .where(AssessmentSession.participant_id == participant.id)
            .limit(1)
        )
    ):
        return False
    form = await forms.current_form(session, study, participant.language)
    assert form is not None  # _ensure_consent_form ran first
    principal, context = coordinator.principal, coordinator.context
    await signing.sign_consent(
        session,
        context,
        principal,
        signing.SignatureInput(
            participant_ref=str(participant.id),
            form_id=form.id,
            signer_name=COMPLETED_SIGNER_NAME,
            signer_role=SignerRole.PARTICIPANT,
            answers=content.CONSENT_ANSWERS,
            signature_image=content.signature_data_uri(),
            witness_name=None,
        ),
    )
    await session.flush()  # the consent gate of start_session reads it
    baseline = await session.scalar(
        select(Visit.id).where(
            Visit.participant_id == participant.id,
            Visit.event_key == "baseline",
            Visit.occurrence == 1,
        )
    )
    started = await assessment_sessions.start_session(
        session,
        store,
        context,
        principal,
        participant_ref=str(participant.id),
        battery_id=battery.id,
        battery_version=None,
        visit_id=baseline,
        session_id=None,
        device=CLINIC_TABLET,
        started_at=None,
        clock_offset_seconds=None,
    )
    await submissions.submit(
        session,
        store,
        storage,
        context,
        principal,
        SubmitRequest.model_validate(
            {
                "session_id": started.session.id,
                "trials": content.demo_trials(TRIALS_SEED),
                "device_info": {"screen": CLINIC_TABLET["screen"], "input": "touch"},
                "completed_at": utcnow(),
            }
        ),
    )
    await assessment_sessions.end_session(
        session, store, context, principal, started.session.id, SessionStatus.COMPLETED
    )
    return True


def reminder_demo_zone(now: datetime) -> str:
    """A zone whose clock shows 09:xx at `now`: the opening email of the demo schedule (09:00
    local) is then due a few minutes ago, outside quiet hours, whatever the hour of the run.
    `Etc/GMT-3` is UTC+3 (the zone database inverts the sign)."""
    offset = (9 - now.hour) % 24
    if offset > 14:  # zones run from UTC-12 to UTC+14
        offset -= 24
    if offset == 0:
        return "Etc/UTC"
    return f"Etc/GMT{-offset:+d}"


async def _ensure_reminder_participant(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    coordinator: _Actor,
    study: Study,
) -> str | None:
    """A participant enrolled today in a zone where it is now just past 09:00: its baseline
    window is open and its opening email is due, so the next reminder scan writes it and the
    worker sends it (printed by the console email backend). One per hour of runs."""
    now = utcnow()
    code = f"R{now:%Y%m%d%H}"
    if await _participant(session, study.id, code) is not None:
        return None
    zone_name = reminder_demo_zone(now)
    await participants.create_participant(
        session,
        settings,
        encryptor,
        coordinator.context,
        coordinator.principal,
        study.id,
        participants.ParticipantFields(
            participant_code=code,
            site="PARIS",
            email="reminders@example.org",
            timezone=zone_name,
            enrollment_date=now.astimezone(ZoneInfo(zone_name)).date(),
        ),
    )
    return code


async def seed_demo(
    session: AsyncSession,
    settings: Settings,
    encryptor: FieldEncryptor,
    store: SessionStore,
    storage: SourceStorage,
) -> DemoSummary:
    """Create what is missing of the demo and issue P001 a fresh access code. Does not commit."""
    context = AuditContext(actor_type=ActorType.SYSTEM, actor_id="demo", user_agent="metricis-demo")
    users = {
        role: await _user(session, context, email, name, role) for email, name, role in DEMO_STAFF
    }

    def actor(role: UserRole) -> _Actor:
        principal = _principal(users[role])
        return _Actor(principal, context.as_actor(ActorType.USER, str(principal.user_id)))

    researcher, coordinator = actor(UserRole.RESEARCHER), actor(UserRole.COORDINATOR)
    study = await session.scalar(select(Study).where(Study.code == DEMO_STUDY_CODE))
    created = study is None
    if study is None:
        study = await _create_study(session, settings, encryptor, researcher, users)
    created |= await _ensure_consent_form(session, researcher, study)
    battery, battery_created = await _ensure_battery(session, researcher, study)
    created |= battery_created
    created |= await _ensure_schedule(session, researcher, study, battery)
    created |= await _ensure_completed_visit(session, store, storage, coordinator, study, battery)

    reminder_code = await _ensure_reminder_participant(
        session, settings, encryptor, coordinator, study
    )
    created |= reminder_code is not None

    ready = await _participant(session, study.id, READY_PARTICIPANT_CODE)
    access_code = None
    must_sign_consent = False
    if ready is not None and ready.status != ParticipantStatus.WITHDRAWN:
        _, access_code = await participants.issue_access_code(
            session, settings, coordinator.context, coordinator.principal, ready.id
        )
        must_sign_consent = not (await consent_gate(session, ready)).allowed
    return DemoSummary(
        created=created,
        staff=tuple((email, role) for email, _, role in DEMO_STAFF),
        study_code=DEMO_STUDY_CODE,
        study_id=study.id,
        battery_id=battery.id,
        completed_participant_code=COMPLETED_PARTICIPANT_CODE,
        participant_code=READY_PARTICIPANT_CODE,
        access_code=access_code,
        participant_must_sign_consent=must_sign_consent,
        reminder_participant_code=reminder_code,
    )
