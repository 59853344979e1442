"""REDCap configuration, connection test and push log (docs/redcap.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.models.outbox import DeliveryStatus, EventType
from app.schemas.outbox import DeliveryAttemptRead

FieldName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_]{0,99}$")
]
MappingKey = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=200, pattern=r"^[A-Za-z0-9_-]+\.[^.\s][^\s]*$"
    ),
]
EventName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
VisitKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
MAX_MAPPED_FIELDS = 500


class RedcapConfigWrite(BaseModel):
    api_url: str = Field(
        min_length=1,
        max_length=2000,
        description="The project's API address, ending in /api/; https (http outside "
        "production), public addresses only unless WEBHOOK_ALLOWED_HOSTS names the host",
        examples=["https://redcap.example.org/api/"],
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="The project's API token (32 hexadecimal characters); write-only, stored "
        "encrypted. Required the first time; left out, the stored one is kept",
    )
    record_id_field: FieldName = Field(description="The project's record id field")
    field_mapping: dict[MappingKey, FieldName] = Field(
        min_length=1,
        max_length=MAX_MAPPED_FIELDS,
        description='"<task>.<metric>" -> REDCap field',
        examples=[{"simple-rt.median_rt": "srt_median"}],
    )
    event_mapping: dict[VisitKey, EventName] = Field(
        default_factory=dict,
        description="visit (schedule event key) -> redcap_event_name; longitudinal projects",
        examples=[{"baseline": "baseline_arm_1", "week4": "week_4_arm_1"}],
    )
    enabled: bool = True

    @field_validator("api_url")
    @classmethod
    def _api_address(cls, value: str) -> str:
        value = value.strip()
        if not value.endswith("/api/"):
            raise ValueError("a REDCap API address ends in /api/")
        return value

    @field_validator("api_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if len(token) != 32 or any(c not in "0123456789abcdefABCDEF" for c in token):
            # The message never repeats the value.
            raise ValueError("a REDCap API token is 32 hexadecimal characters")
        return SecretStr(token)


class RedcapConfigRead(BaseModel):
    id: uuid.UUID
    study_id: uuid.UUID
    site_id: uuid.UUID | None = Field(description="empty: the study's project; else a site's")
    api_url: str
    token_set: bool = Field(description="always true: the token is stored, never returned")
    record_id_field: str
    field_mapping: dict[str, str]
    event_mapping: dict[str, str]
    enabled: bool
    longitudinal: bool
    project_title: str | None
    redcap_version: str | None
    checked_at: datetime | None
    trigger_path: str | None = Field(
        description="where REDCap's Data Entry Trigger posts (prefix the server's address); "
        "the token in it is the trigger's credential: rotate it if it leaks"
    )
    created_at: datetime
    updated_at: datetime


class ConnectionTestRead(BaseModel):
    ok: bool
    redcap_version: str | None = None
    project_title: str | None = None
    project_id: str | None = None
    longitudinal: bool | None = None
    error: str | None = Field(default=None, description="why the test failed, REDCap's words")


class SyncRead(BaseModel):
    queued: int = Field(description="failed or dead pushes queued to be sent again")


class RedcapDeliveryRead(BaseModel):
    id: uuid.UUID
    config_id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    session_id: str | None
    participant_code: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None = Field(description="REDCap's own error text when it gave one")
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[DeliveryAttemptRead]


class ImportParticipantsRequest(BaseModel):
    event: EventName | None = Field(
        default=None, description="only records of this REDCap event (longitudinal projects)"
    )
    filter_field: FieldName | None = Field(
        default=None, description="only records whose field has `filter_value`"
    )
    filter_value: str | None = Field(default=None, max_length=200)
    field_mapping: dict[Literal["enrollment_date", "language", "timezone"], FieldName] = Field(
        default_factory=dict,
        description="participant field -> REDCap field that fills it",
        examples=[{"enrollment_date": "consent_date", "language": "lang"}],
    )

    @model_validator(mode="after")
    def _filter_pair(self) -> ImportParticipantsRequest:
        if (self.filter_field is None) != (self.filter_value is None):
            raise ValueError("filter_field and filter_value go together")
        return self


class ImportedRowRead(BaseModel):
    record: str = Field(description="the REDCap record id, the participant's code")
    status: Literal["created", "updated", "skipped"]
    participant_id: uuid.UUID | None
    message: str | None = Field(description="why it was skipped")


class ImportParticipantsRead(BaseModel):
    created: int
    updated: int
    skipped: int
    rows: list[ImportedRowRead]
