"""Every ORM model, imported here so that Alembic and the mappers see the whole schema."""

from app.db.base import Base
from app.models.assessment import AssessmentSession, SessionStatus, TaskResult, Trial
from app.models.audit import (
    ActorType,
    AuditCategory,
    AuditChainLink,
    AuditChainState,
    AuditEvent,
)
from app.models.battery import Battery, BatteryVersion
from app.models.consent import ConsentForm, ConsentFormStatus, ConsentRecord, SignerRole
from app.models.export import ExportJob, ExportStatus
from app.models.invitation import Invitation
from app.models.item_bank import CatSession, CatSessionStep, ItemBank, ItemBankVersion
from app.models.notification import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationOptOut,
    NotificationStatus,
)
from app.models.outbox import (
    AttemptOutcome,
    DeliveryStatus,
    DestinationKind,
    EventType,
    OutboxDelivery,
    OutboxDeliveryAttempt,
    OutboxEvent,
)
from app.models.participant import (
    MagicLinkToken,
    Participant,
    ParticipantActor,
    ParticipantLogin,
    ParticipantStatus,
    WithdrawalScope,
)
from app.models.redcap import RedcapProject, RedcapRepeatInstance
from app.models.schedule import (
    Schedule,
    ScheduleEvent,
    ScheduleVersion,
    Visit,
    VisitAnchor,
    VisitCancellation,
    VisitStatus,
)
from app.models.study import ConsentMode, MemberRole, Site, Study, StudyMember, StudyStatus
from app.models.template import SavedTemplate
from app.models.user import (
    PasswordReset,
    PersonalAccessToken,
    User,
    UserKind,
    UserRole,
    UserSession,
    UserStatus,
)
from app.models.webhook import WebhookSubscription
from app.models.worker import WorkerHeartbeat

__all__ = [
    "ActorType",
    "AssessmentSession",
    "AttemptOutcome",
    "AuditCategory",
    "AuditChainLink",
    "AuditChainState",
    "AuditEvent",
    "Base",
    "Battery",
    "BatteryVersion",
    "CatSession",
    "CatSessionStep",
    "ConsentForm",
    "ConsentFormStatus",
    "ConsentMode",
    "ConsentRecord",
    "DeliveryStatus",
    "DestinationKind",
    "EventType",
    "ExportJob",
    "ExportStatus",
    "Invitation",
    "ItemBank",
    "ItemBankVersion",
    "MagicLinkToken",
    "MemberRole",
    "Notification",
    "NotificationChannel",
    "NotificationKind",
    "NotificationOptOut",
    "NotificationStatus",
    "OutboxDelivery",
    "OutboxDeliveryAttempt",
    "OutboxEvent",
    "Participant",
    "ParticipantActor",
    "ParticipantLogin",
    "ParticipantStatus",
    "PasswordReset",
    "PersonalAccessToken",
    "RedcapProject",
    "RedcapRepeatInstance",
    "SavedTemplate",
    "Schedule",
    "ScheduleEvent",
    "ScheduleVersion",
    "SessionStatus",
    "SignerRole",
    "Site",
    "Study",
    "StudyMember",
    "StudyStatus",
    "TaskResult",
    "Trial",
    "User",
    "UserKind",
    "UserRole",
    "UserSession",
    "UserStatus",
    "Visit",
    "VisitAnchor",
    "VisitCancellation",
    "VisitStatus",
    "WebhookSubscription",
    "WithdrawalScope",
    "WorkerHeartbeat",
]
