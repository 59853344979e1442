"""Study templates: a study's whole configuration as one versioned JSON document
(docs/templates.md). The same document is exported, imported, applied and served as a JSON
Schema (`GET /api/templates/schema`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models.schedule import VisitAnchor
from app.models.study import ConsentMode
from app.schemas.consent import LANGUAGE_PATTERN, MAX_QUESTIONS, ConsentQuestion, Text
from app.schemas.schedules import (
    EVENT_KEY_PATTERN,
    MAX_EVENTS,
    MAX_REMINDERS_PER_EVENT,
    QuietHours,
    ReminderRule,
    RepeatRule,
)
from app.schemas.studies import StudyRead

TEMPLATE_FORMAT_VERSION = 1
MAX_TEMPLATE_BATTERIES = 50
MAX_TEMPLATE_SITES = 200


# Names as the services store them (stripped), so a document round-trips as written.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class _Strict(BaseModel):
    # A misspelt key would otherwise vanish silently from a clinical configuration.
    model_config = ConfigDict(extra="forbid")


class TemplateStudySettings(_Strict):
    """The study's own settings; its code and name are chosen when the template is applied."""

    description: str | None = Field(default=None, max_length=10_000)
    consent_mode: ConsentMode = ConsentMode.BUILTIN
    supported_languages: list[str] = Field(
        default_factory=lambda: ["en"], min_length=1, max_length=20
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone")
    config: dict[str, Any] = Field(default_factory=dict, description="The study's free settings")


class TemplateSite(_Strict):
    code: str = Field(min_length=1, max_length=50)
    name: Name
    timezone: str = Field(max_length=64, description="IANA time zone")


class TemplateTask(_Strict):
    module_id: str = Field(min_length=1, max_length=64, examples=["simple-rt"])
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Only the parameters that differ from the module's `default_config`",
    )


class TemplateBattery(_Strict):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    estimated_minutes: int | None = Field(default=None, ge=1, le=600)
    tasks: list[TemplateTask] = Field(min_length=1, max_length=50)


class TemplateEvent(_Strict):
    key: str = Field(pattern=EVENT_KEY_PATTERN, examples=["baseline"])
    label: Name
    anchor: VisitAnchor = VisitAnchor.ENROLLMENT_DATE
    offset_days: int = Field(ge=-3650, le=3650)
    window_before_days: int = Field(default=0, ge=0, le=365)
    window_after_days: int = Field(default=0, ge=0, le=365)
    battery: int = Field(ge=0, description="Index of the battery in `batteries` (0 is the first)")
    repeat: RepeatRule | None = None
    reminders: list[ReminderRule] = Field(default_factory=list, max_length=MAX_REMINDERS_PER_EVENT)


class TemplateSchedule(_Strict):
    name: Name = "Visit schedule"
    description: str | None = Field(default=None, max_length=10_000)
    reminder_quiet_hours: QuietHours | None = None
    events: list[TemplateEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class TemplateConsentForm(_Strict):
    """The text in force for one language: applied, it is created and published."""

    language: str = Field(min_length=2, max_length=16, pattern=LANGUAGE_PATTERN)
    title: Text = Field(min_length=1, max_length=255)
    content: Text = Field(min_length=1, max_length=200_000, description="Markdown")
    questions: list[ConsentQuestion] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    requires_signature: bool = True
    reconsent_required: bool = False


class TemplateRedcap(_Strict):
    """The study's REDCap mapping, without the API URL's token or the trigger token."""

    api_url: str = Field(max_length=2000)
    record_id_field: str = Field(min_length=1, max_length=100)
    field_mapping: dict[str, str] = Field(default_factory=dict)
    event_mapping: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True


class TemplateWebhook(_Strict):
    """A webhook subscription without its secret."""

    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=255)
    event_types: list[str] = Field(min_length=1)
    active: bool = True


class TemplateIntegrations(_Strict):
    """Exported for reference; applying a template does not configure them (docs/templates.md)."""

    redcap: TemplateRedcap | None = None
    webhooks: list[TemplateWebhook] = Field(default_factory=list)


class StudyTemplate(_Strict):
    """A study's whole configuration. Problems are reported with their JSON path, e.g.
    `batteries.0.tasks.1.config.n_trials`."""

    format_version: Literal[1] = Field(description="The document format; this server writes 1")
    study: TemplateStudySettings = Field(default_factory=TemplateStudySettings)
    sites: list[TemplateSite] = Field(default_factory=list, max_length=MAX_TEMPLATE_SITES)
    batteries: list[TemplateBattery] = Field(
        default_factory=list, max_length=MAX_TEMPLATE_BATTERIES
    )
    schedule: TemplateSchedule | None = None
    consent_forms: list[TemplateConsentForm] = Field(default_factory=list, max_length=20)
    integrations: TemplateIntegrations = Field(default_factory=TemplateIntegrations)


class TemplateKind(StrEnum):
    BUILTIN = "builtin"  # ships with the server, id a short name
    SAVED = "saved"  # kept by `POST /api/templates`, id a UUID


class TemplateSummary(BaseModel):
    id: str
    kind: TemplateKind
    title: str
    summary: str | None
    estimated_minutes: int | None
    source_study_id: uuid.UUID | None = Field(
        default=None, description="Saved templates: the study it was made from"
    )
    created_at: datetime | None = Field(default=None, description="Saved templates")


class TemplateRead(TemplateSummary):
    document: dict[str, Any] = Field(description="The template document (see the schema)")


class TemplateCreate(BaseModel):
    """`POST /api/templates`: keep a template made from a study or from a document."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=255)
    summary: str | None = Field(default=None, max_length=2000)
    from_study_id: uuid.UUID | None = Field(
        default=None, description="Save this study's configuration as it is now"
    )
    document: dict[str, Any] | None = Field(
        default=None, description="Or save a template document (see the schema)"
    )


class TemplateApply(BaseModel):
    """`POST /api/templates/{id}/apply`: the new study's code and name."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=2, max_length=50, examples=["NEURO-2024-001"])
    name: str = Field(min_length=1, max_length=255)


class TemplateImport(TemplateApply):
    """`POST /api/templates/apply`: a study from a template file."""

    document: dict[str, Any] = Field(description="A template document (see the schema)")


class TemplateApplied(BaseModel):
    study: StudyRead
    battery_ids: list[uuid.UUID]
    schedule_id: uuid.UUID | None
    consent_form_ids: list[uuid.UUID]
    not_applied: list[str] = Field(
        description="Document sections kept out of the new study (integrations need secrets)"
    )
