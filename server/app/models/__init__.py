"""Every ORM model, imported here so that Alembic and the mappers see the whole schema."""

from app.db.base import Base
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult, Trial
from app.models.audit import ActorType, AuditCategory, AuditChainHead, AuditEvent
from app.models.battery import Battery, BatteryVersion
from app.models.consent import ConsentForm, ConsentFormStatus, ConsentRecord, SignerRole
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.participant import (
    MagicLinkToken,
    Participant,
    ParticipantActor,
    ParticipantLogin,
    ParticipantStatus,
    WithdrawalScope,
)
from app.models.study import ConsentMode, MemberRole, Site, Study, StudyMember, StudyStatus
from app.models.user import User, UserRole, UserSession, UserStatus
from app.models.worker import WorkerHeartbeat

__all__ = [
    "ActorType",
    "AssessmentSession",
    "AuditCategory",
    "AuditChainHead",
    "AuditEvent",
    "Base",
    "Battery",
    "BatteryVersion",
    "ConsentForm",
    "ConsentFormStatus",
    "ConsentMode",
    "ConsentRecord",
    "MagicLinkToken",
    "MemberRole",
    "Notification",
    "NotificationChannel",
    "NotificationKind",
    "NotificationOptOut",
    "NotificationStatus",
    "Participant",
    "ParticipantActor",
    "ParticipantLogin",
    "ParticipantStatus",
    "SessionStatus",
    "SignerRole",
    "Site",
    "Study",
    "StudyMember",
    "StudyStatus",
    "TaskResult",
    "Trial",
    "User",
    "UserRole",
    "UserSession",
    "UserStatus",
    "WithdrawalScope",
    "WorkerHeartbeat",
]
