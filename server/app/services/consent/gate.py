"""Consent state and the consent gate: who must consent, or consent again, before a session.

Consent is given by a `participant`, `caregiver` or `lar` signature that is not withdrawn; a
`witness` record is never consent on its own. A signed version no longer suffices once a later
version marked `reconsent_required` is published.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFoundError
from app.models.consent import ConsentForm, ConsentRecord, SignerRole
from app.models.participant import Participant
from app.models.study import ConsentMode, Study
from app.services.consent.forms import current_form
from app.services.consent.records import participant_records
from app.services.participants import resolve_participant
from app.services.policy import Capability
from app.services.principals import Principal

CONSENTING_ROLES = frozenset({SignerRole.PARTICIPANT, SignerRole.CAREGIVER, SignerRole.LAR})


class ConsentGateReason(StrEnum):
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    RECONSENT_REQUIRED = "RECONSENT_REQUIRED"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"


_GATE_MESSAGES = {
    ConsentGateReason.CONSENT_REQUIRED: "The participant has not given consent for this study",
    ConsentGateReason.RECONSENT_REQUIRED: (
        "A new version of the consent form must be signed before continuing"
    ),
    ConsentGateReason.CONSENT_WITHDRAWN: "The participant has withdrawn consent",
}


@dataclass(frozen=True, slots=True)
class ConsentGateResult:
    """Whether the participant may start an assessment; `reason` is a gate code otherwise."""

    allowed: bool
    reason: str | None = None
    message: str | None = None

    @classmethod
    def refused(cls, reason: ConsentGateReason) -> ConsentGateResult:
        return cls(allowed=False, reason=reason.value, message=_GATE_MESSAGES[reason])


@dataclass(frozen=True, slots=True)
class ConsentState:
    participant: Participant
    study: Study
    required: bool
    current_form: ConsentForm | None
    active_record: ConsentRecord | None
    needs_reconsent: bool
    withdrawn: bool


async def _consenting_records(
    session: AsyncSession, participant_id: uuid.UUID
) -> Sequence[ConsentRecord]:
    return await participant_records(
        session,
        participant_id,
        ConsentRecord.signer_role.in_(list(CONSENTING_ROLES)),
        newest_first=True,
    )


async def _needs_reconsent(
    session: AsyncSession, record: ConsentRecord, current: ConsentForm
) -> bool:
    """Whether a version marked `reconsent_required` was published after the signed one.

    Same language: any such version after the signed one, up to the current one (an intermediate
    version counts: its changes were never signed). Another language (the participant's
    language changed): any such version of the current language published after the signature.
    """
    if record.form_id == current.id:
        return False
    statement = select(ConsentForm.id).where(
        ConsentForm.study_id == current.study_id,
        ConsentForm.language == current.language,
        ConsentForm.reconsent_required.is_(True),
        ConsentForm.published_at.is_not(None),
    )
    signed_form = await session.get(ConsentForm, record.form_id)
    if signed_form is not None and signed_form.language == current.language:
        statement = statement.where(
            ConsentForm.version > record.form_version, ConsentForm.version <= current.version
        )
    else:
        statement = statement.where(ConsentForm.published_at > record.signed_at)
    return await session.scalar(statement.limit(1)) is not None


async def consent_state(session: AsyncSession, participant: Participant) -> ConsentState:
    study = await session.get(Study, participant.study_id)
    if study is None:
        raise NotFoundError("Study not found")
    current = await current_form(session, study, participant.language)
    records = await _consenting_records(session, participant.id)
    active = next((record for record in records if record.withdrawn_at is None), None)
    return ConsentState(
        participant=participant,
        study=study,
        required=study.consent_mode == ConsentMode.BUILTIN,
        current_form=current,
        active_record=active,
        needs_reconsent=(
            active is not None
            and current is not None
            and await _needs_reconsent(session, active, current)
        ),
        withdrawn=active is None and any(record.withdrawn_at is not None for record in records),
    )


async def consent_gate(session: AsyncSession, participant: Participant) -> ConsentGateResult:
    """May this participant start an assessment as far as consent goes?

    Called by the assessment service before a session starts. Only consent is judged here: a
    participant withdrawn from the study is refused by the session service itself (409).
    """
    state = await consent_state(session, participant)
    if not state.required:
        return ConsentGateResult(allowed=True)
    if state.active_record is None:
        if state.withdrawn:
            return ConsentGateResult.refused(ConsentGateReason.CONSENT_WITHDRAWN)
        return ConsentGateResult.refused(ConsentGateReason.CONSENT_REQUIRED)
    if state.needs_reconsent:
        return ConsentGateResult.refused(ConsentGateReason.RECONSENT_REQUIRED)
    return ConsentGateResult(allowed=True)


async def get_consent_status(
    session: AsyncSession,
    principal: Principal,
    participant_ref: str | None,
    study_id: uuid.UUID | None,
) -> ConsentState:
    """`participant_ref` is the UUID, or the code within `study_id`."""
    participant = await resolve_participant(
        session, principal, participant_ref, Capability.READ, study_id=study_id
    )
    return await consent_state(session, participant)
