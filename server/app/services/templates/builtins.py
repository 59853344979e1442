"""The templates that ship with the server. Each document is valid against the model and lists
task parameters only where they differ from the module's defaults, so exporting a study made
from one gives the same document back (tests/templates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.core.errors import NotFoundError
from app.schemas.templates import TEMPLATE_FORMAT_VERSION, StudyTemplate

_CONSENT_PLACEHOLDER = (
    "# Consent to take part\n\n"
    "This is the template's sample text. Replace it with the consent form your ethics "
    "committee approved before the study starts.\n\n"
    "Taking part is voluntary and you can stop at any time without giving a reason."
)

_EMAIL_REMINDER: dict[str, Any] = {
    "channel": "email",
    "anchor": "window_open",
    "offset_days": 0,
    "local_time": "09:00",
    "templates": {
        "en": {
            "subject": "{study_name}: your {visit_label} is open",
            "body": "Hello {participant_code}, your {visit_label} can be done now: {link}",
        }
    },
}

_SCREENING: dict[str, Any] = {
    "format_version": TEMPLATE_FORMAT_VERSION,
    "study": {
        "description": "A ten-minute cognitive screening: reaction time, sustained attention "
        "and inhibition, and working memory, done once.",
        "consent_mode": "builtin",
        "supported_languages": ["en"],
        "timezone": "UTC",
        "config": {},
    },
    "batteries": [
        {
            "name": "10-minute screening",
            "description": "Simple reaction time, go/no-go continuous performance, digit span",
            "estimated_minutes": 10,
            "tasks": [
                {"module_id": "simple-rt", "config": {}},
                {"module_id": "cpt-go-nogo", "config": {"n_trials": 80}},
                {"module_id": "digit-span", "config": {"direction": "forward"}},
            ],
        }
    ],
    "schedule": {
        "name": "Screening",
        "events": [
            {
                "key": "screening",
                "label": "Screening",
                "offset_days": 0,
                "window_after_days": 7,
                "battery": 0,
                "reminders": [_EMAIL_REMINDER],
            }
        ],
    },
    "consent_forms": [
        {
            "language": "en",
            "title": "Consent to the screening",
            "content": _CONSENT_PLACEHOLDER,
            "questions": [
                {
                    "id": "contact_later",
                    "text": "May we contact you about later studies?",
                    "type": "yes_no",
                    "required": False,
                }
            ],
        }
    ],
}

_DEEP_PHENOTYPING: dict[str, Any] = {
    "format_version": TEMPLATE_FORMAT_VERSION,
    "study": {
        "description": "Deep cognitive phenotyping: every cognitive domain of the catalogue, in "
        "two sittings on consecutive days, at baseline and again after six months.",
        "consent_mode": "external",
        "supported_languages": ["en"],
        "timezone": "UTC",
        "config": {},
    },
    "batteries": [
        {
            "name": "Deep phenotyping, part 1",
            "description": "Attention, processing speed, working memory, executive function",
            "estimated_minutes": 40,
            "tasks": [
                {"module_id": "flanker", "config": {}},
                {"module_id": "digit-symbol-coding", "config": {}},
                {"module_id": "n-back", "config": {"levels": [1, 2]}},
                {"module_id": "trail-making", "config": {}},
                {"module_id": "stroop", "config": {}},
            ],
        },
        {
            "name": "Deep phenotyping, part 2",
            "description": "Episodic memory, language, social cognition, decision making",
            "estimated_minutes": 35,
            "tasks": [
                {"module_id": "verbal-paired-associates", "config": {}},
                {"module_id": "semantic-fluency", "config": {}},
                {"module_id": "emotion-recognition", "config": {}},
                {"module_id": "delay-discounting", "config": {}},
            ],
        },
    ],
    "schedule": {
        "name": "Baseline and six months",
        "reminder_quiet_hours": {"start": "21:00", "end": "08:00"},
        "events": [
            {
                "key": "baseline-1",
                "label": "Baseline, part 1",
                "offset_days": 0,
                "window_after_days": 7,
                "battery": 0,
                "reminders": [_EMAIL_REMINDER],
            },
            {
                "key": "baseline-2",
                "label": "Baseline, part 2",
                "offset_days": 1,
                "window_after_days": 7,
                "battery": 1,
            },
            {
                "key": "month-6-1",
                "label": "Month 6, part 1",
                "offset_days": 182,
                "window_before_days": 7,
                "window_after_days": 14,
                "battery": 0,
                "reminders": [_EMAIL_REMINDER],
            },
            {
                "key": "month-6-2",
                "label": "Month 6, part 2",
                "offset_days": 183,
                "window_before_days": 7,
                "window_after_days": 14,
                "battery": 1,
            },
        ],
    },
}

_PRO_FOLLOW_UP: dict[str, Any] = {
    "format_version": TEMPLATE_FORMAT_VERSION,
    "study": {
        "description": "Patient-reported follow-up: brain fog and fatigue questionnaires every "
        "four weeks for six months, no cognitive task.",
        "consent_mode": "builtin",
        "supported_languages": ["en", "fr"],
        "timezone": "UTC",
        "config": {},
    },
    "batteries": [
        {
            "name": "Brain fog and fatigue",
            "description": "Brain Fog Scale and the Modified Fatigue Impact Scale",
            "estimated_minutes": 10,
            "tasks": [
                {"module_id": "brain-fog-scale", "config": {}},
                {"module_id": "mfis", "config": {}},
            ],
        }
    ],
    "schedule": {
        "name": "Four-weekly follow-up",
        "events": [
            {
                "key": "follow-up",
                "label": "Follow-up questionnaires",
                "offset_days": 0,
                "window_after_days": 6,
                "battery": 0,
                "repeat": {"every_days": 28, "count": 7},
                "reminders": [
                    {
                        **_EMAIL_REMINDER,
                        "templates": {
                            **_EMAIL_REMINDER["templates"],
                            "fr": {
                                "subject": "{study_name} : votre {visit_label} est ouverte",
                                "body": "Bonjour {participant_code}, votre {visit_label} "
                                "peut être faite maintenant : {link}",
                            },
                        },
                    },
                    {
                        "channel": "sms",
                        "anchor": "window_close",
                        "offset_days": -1,
                        "local_time": "18:00",
                        "templates": {
                            "en": {"body": "{study_name}: last day for your questionnaires."},
                            "fr": {"body": "{study_name} : dernier jour pour vos questionnaires."},
                        },
                    },
                ],
            }
        ],
    },
    "consent_forms": [
        {
            "language": "en",
            "title": "Consent to the follow-up",
            "content": _CONSENT_PLACEHOLDER,
        },
        {
            "language": "fr",
            "title": "Consentement au suivi",
            "content": "# Consentement\n\nTexte d'exemple du modèle : remplacez-le par le "
            "formulaire approuvé par votre comité d'éthique.",
        },
    ],
}


def estimated_minutes(document: Mapping[str, Any]) -> int | None:
    """The template's batteries' estimated minutes, summed (None when none says)."""
    minutes = [battery.get("estimated_minutes") for battery in document.get("batteries", [])]
    known = [value for value in minutes if isinstance(value, int)]
    return sum(known) if known else None


@dataclass(frozen=True, slots=True)
class BuiltinTemplate:
    id: str
    title: str
    summary: str
    document: dict[str, Any]

    @property
    def estimated_minutes(self) -> int | None:
        return estimated_minutes(self.document)

    def normalized(self) -> dict[str, Any]:
        """The document with every default written out: what an export of it gives."""
        return StudyTemplate.model_validate(self.document).model_dump(mode="json")


_BUILTINS: tuple[BuiltinTemplate, ...] = (
    BuiltinTemplate(
        "screening-10min",
        "10-minute cognitive screening",
        "Simple reaction time, go/no-go CPT and digit span, once, with an email reminder.",
        _SCREENING,
    ),
    BuiltinTemplate(
        "deep-phenotyping",
        "Deep cognitive phenotyping",
        "Every cognitive domain of the catalogue in two sittings, at baseline and six months.",
        _DEEP_PHENOTYPING,
    ),
    BuiltinTemplate(
        "pro-follow-up",
        "Patient-reported follow-up",
        "Brain Fog Scale and MFIS every four weeks for six months, in English and French.",
        _PRO_FOLLOW_UP,
    ),
)


def builtin_templates() -> tuple[BuiltinTemplate, ...]:
    return _BUILTINS


def builtin_template(template_id: str) -> BuiltinTemplate:
    for template in _BUILTINS:
        if template.id == template_id:
            return template
    raise NotFoundError("Template not found", details={"template_id": template_id})
