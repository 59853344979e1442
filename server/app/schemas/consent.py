"""Consent forms, signatures and consent status: request and response shapes (docs/consent.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.models.consent import ConsentFormStatus, ConsentRecord, SignerRole
from app.schemas.common import Reference

MAX_QUESTIONS = 100
MAX_ANSWERS = MAX_QUESTIONS
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"


def _without_nul(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold U+0000: refuse it here rather than fail at write.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_without_nul)]


class QuestionType(StrEnum):
    YES_NO = "yes_no"
    TEXT = "text"
    CHECKBOX = "checkbox"


class ConsentQuestion(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    text: Text = Field(min_length=1, max_length=2000)
    type: QuestionType
    required: bool = False


def _unique_question_ids(questions: list[ConsentQuestion] | None) -> list[ConsentQuestion] | None:
    if questions is None:
        return None
    ids = [question.id for question in questions]
    duplicates = sorted({question_id for question_id in ids if ids.count(question_id) > 1})
    if duplicates:
        raise ValueError(f"question ids must be unique; repeated: {', '.join(duplicates)}")
    return questions


class ConsentFormCreate(BaseModel):
    study_id: uuid.UUID
    language: str = Field(min_length=2, max_length=16, pattern=LANGUAGE_PATTERN)
    title: Text = Field(min_length=1, max_length=255)
    content: Text = Field(min_length=1, max_length=200_000, description="Markdown")
    questions: list[ConsentQuestion] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    requires_signature: bool = True
    reconsent_required: bool = False

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, value: list[ConsentQuestion]) -> list[ConsentQuestion]:
        return _unique_question_ids(value) or []


class ConsentFormUpdate(BaseModel):
    """A draft's editable fields; the study, language and version are fixed at creation."""

    title: Text | None = Field(default=None, min_length=1, max_length=255)
    content: Text | None = Field(default=None, min_length=1, max_length=200_000)
    questions: list[ConsentQuestion] | None = Field(default=None, max_length=MAX_QUESTIONS)
    requires_signature: bool | None = None
    reconsent_required: bool | None = None
    reason: Text | None = Field(default=None, max_length=2000)

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, value: list[ConsentQuestion] | None) -> list[ConsentQuestion] | None:
        return _unique_question_ids(value)


class ConsentFormPublish(BaseModel):
    reason: Text | None = Field(default=None, max_length=2000)


class ConsentFormContent(BaseModel):
    """A form version as a signer reads it and signs it: the fields every reader shares."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    language: str
    version: int
    title: str
    content: str
    questions: list[ConsentQuestion]
    requires_signature: bool
    reconsent_required: bool
    content_hash: str | None
    published_at: datetime | None


class ConsentFormRead(ConsentFormContent):
    study_id: uuid.UUID
    status: ConsentFormStatus
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ConsentSignRequest(BaseModel):
    """A signature of one form version: `POST /api/consent/sign`, and a sync item given offline."""

    participant_id: Reference | None = Field(
        default=None,
        description="The UUID, or the code within the form's study; a participant token may "
        "leave it out, staff must give it",
    )
    form_id: uuid.UUID
    signer_name: Text = Field(min_length=1, max_length=255)
    signer_role: SignerRole
    answers: dict[Text, bool | Text] = Field(default_factory=dict, max_length=MAX_ANSWERS)
    # No length limit here: an oversized image answers 413 from the service, not 422.
    signature_image: str | None = None
    witness_name: Text | None = Field(default=None, min_length=1, max_length=255)


class ConsentWithdrawRequest(BaseModel):
    participant_id: Reference | None = Field(
        default=None,
        description="The UUID, or the code with study_id; a participant token may leave it "
        "out, staff must give it",
    )
    study_id: uuid.UUID | None = Field(
        default=None, description="The study a participant code is read in"
    )
    reason: Text = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return value.strip()


class ConsentRecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    participant_id: uuid.UUID
    study_id: uuid.UUID
    form_id: uuid.UUID
    form_version: int
    content_hash: str
    signer_name: str
    signer_role: SignerRole
    witness_name: str | None
    answers: dict[str, Any]
    signature_image_type: str | None
    signed_at: datetime
    device_signed_at: datetime | None = None
    ip: str | None
    device: str | None
    recorded_by: uuid.UUID | None
    withdrawn_at: datetime | None
    withdrawal_reason: str | None

    @classmethod
    def from_record(cls, record: ConsentRecord) -> Self:
        return cls.model_validate(
            {
                **{name: getattr(record, name) for name in _RECORD_COLUMNS},
                "signature_image": servable_signature_image(record.signature_image),
                "signature_image_type": signature_image_type(record.signature_image),
            }
        )


class ConsentRecordDetailRead(ConsentRecordRead):
    signature_image: str | None = Field(
        description=(
            "The signature as a PNG data URI; null without an image, and for a signature stored "
            "as SVG before SVG was refused (`signature_image_type` = `svg`): that markup is kept "
            "in the record but never served"
        )
    )


_RECORD_COLUMNS = tuple(
    name for name in ConsentRecordRead.model_fields if name != "signature_image_type"
)


def servable_signature_image(data_uri: str | None) -> str | None:
    """The stored data URI when it is a PNG; stored SVG markup is never handed to a client."""
    return data_uri if signature_image_type(data_uri) == "png" else None


def signature_image_type(data_uri: str | None) -> str | None:
    """`png` or `svg` from the stored data URI (always normalised to base64 by the service)."""
    if data_uri is None:
        return None
    if data_uri.startswith("data:image/png"):
        return "png"
    if data_uri.startswith("data:image/svg+xml"):
        return "svg"
    return None


class ConsentStatusRead(BaseModel):
    participant_id: uuid.UUID
    required: bool
    current_form: ConsentFormRead | None
    signed_version: int | None
    needs_reconsent: bool
    withdrawn: bool
    record_id: uuid.UUID | None


class ConsentWithdrawalRead(BaseModel):
    participant_id: uuid.UUID
    withdrawn_at: datetime
    reason: str
    records: list[ConsentRecordRead]
