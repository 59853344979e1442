"""The demo study's content: its consent form, its battery, and believable synthetic data.

The trials are generated from a fixed seed, so every demo database holds the same session. Their
reaction times are drawn from normal distributions around typical adult values and rounded to
0.1 ms, as a browser's timer reports them, so the server's scores and validity flags read like a
real participant's (and none of the flags is raised).
"""

from __future__ import annotations

import base64
import io
import math
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

DEMO_LANGUAGE = "en"

CONSENT_TITLE = "Consent to take part in the Metricis demonstration study"
CONSENT_CONTENT = """# Taking part in the demonstration study

This is a **demonstration** form: no real study stands behind it.

## What the study is about

We want to understand how attention, processing speed and memory recover in the months after a
mild stroke.

## What taking part means

- Three short tasks on a phone or tablet, about 10 minutes, once a month for six months.
- Your responses and response times are stored under a participant code, never with your name.

## Risks and benefits

The tasks carry no known risk beyond mild tiredness. There is no direct benefit to you; the
results may help future patients.

## Your rights

Taking part is voluntary. You may stop at any time and withdraw your consent, without giving a
reason and without any effect on your care. Questions go to the study team: Dr. Demo,
pi@example.org.
"""
CONSENT_QUESTIONS: list[dict[str, Any]] = [
    {
        "id": "agree",
        "text": "I have read this information and I agree to take part in the study.",
        "type": "checkbox",
        "required": True,
    },
    {
        "id": "future_contact",
        "text": "May the study team contact me about future studies?",
        "type": "yes_no",
        "required": False,
    },
]
CONSENT_ANSWERS: dict[str, bool | str] = {"agree": True, "future_contact": "yes"}

BATTERY_NAME = "Core cognition"
BATTERY_DESCRIPTION = "Processing speed, attention and working memory in about ten minutes."
BATTERY_MINUTES = 10
SIMPLE_RT_TRIALS = 20
SIMPLE_RT_PRACTICE = 3
FLANKER_TRIALS = 32
FLANKER_PRACTICE = 4
# Configurations the catalogue validates; unnamed parameters take the module's defaults.
BATTERY_TASKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("simple-rt", {"n_trials": SIMPLE_RT_TRIALS, "practice_trials": SIMPLE_RT_PRACTICE}),
    ("flanker", {"n_trials": FLANKER_TRIALS, "practice_trials": FLANKER_PRACTICE}),
    ("digit-span", {"direction": "both", "min_length": 3, "max_length": 8}),
)


# The schedule the consent form describes: a baseline, then once a month for six months, each
# with an email when the window opens and a text message the day before it closes.
SCHEDULE_NAME = "Baseline and monthly follow-up"
SCHEDULE_QUIET_HOURS: dict[str, str] = {"start": "21:00", "end": "08:00"}
_OPENING_EMAIL: dict[str, Any] = {
    "channel": "email",
    "anchor": "window_open",
    "offset_days": 0,
    "local_time": "09:00",
    "templates": {
        "en": {
            "subject": "{study_name}: your {visit_label} assessment is open",
            "body": "Hello {participant_code},\n\nYour {visit_label} assessment is open until "
            "{window_closes}. It takes about ten minutes: {link}\n\nThank you!",
        },
        "fr": {
            "subject": "{study_name} : votre évaluation {visit_label} est ouverte",
            "body": "Bonjour {participant_code},\n\nVotre évaluation {visit_label} est ouverte "
            "jusqu'au {window_closes}. Elle dure une dizaine de minutes : {link}\n\nMerci !",
        },
    },
}
_CLOSING_SMS: dict[str, Any] = {
    "channel": "sms",
    "anchor": "window_close",
    "offset_days": -1,
    "local_time": "18:00",
    "templates": {
        "en": {"body": "{study_name}: your {visit_label} assessment closes tomorrow. {link}"},
        "fr": {"body": "{study_name} : votre évaluation {visit_label} ferme demain. {link}"},
    },
}


def schedule_events(battery_id: str) -> list[dict[str, Any]]:
    return [
        {
            "key": "baseline",
            "label": "Baseline",
            "offset_days": 0,
            "window_after_days": 7,
            "battery_id": battery_id,
            "reminders": [_OPENING_EMAIL],
        },
        {
            "key": "monthly",
            "label": "Monthly follow-up",
            "offset_days": 30,
            "window_before_days": 3,
            "window_after_days": 3,
            "battery_id": battery_id,
            "repeat": {"every_days": 30, "count": 6},
            "reminders": [_OPENING_EMAIL, _CLOSING_SMS],
        },
    ]


@dataclass(frozen=True, slots=True)
class _Timing:
    mean_ms: float
    sd_ms: float
    floor_ms: float

    def draw(self, rng: random.Random) -> float:
        return round(max(self.floor_ms, rng.gauss(self.mean_ms, self.sd_ms)), 1)


SIMPLE_RT_TIMING = _Timing(mean_ms=292.0, sd_ms=42.0, floor_ms=185.0)
FLANKER_CONGRUENT_TIMING = _Timing(mean_ms=468.0, sd_ms=55.0, floor_ms=280.0)
FLANKER_INCONGRUENT_TIMING = _Timing(mean_ms=541.0, sd_ms=66.0, floor_ms=300.0)


def _simple_rt_trials(rng: random.Random) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    for index in range(SIMPLE_RT_PRACTICE + SIMPLE_RT_TRIALS):
        trials.append(
            {
                "task": "simple-rt",
                "trial_index": index,
                "is_practice": index < SIMPLE_RT_PRACTICE,
                "stimulus": "circle",
                "response": "tap",
                "rt": SIMPLE_RT_TIMING.draw(rng),
                "foreperiod_ms": rng.randint(500, 1500),
            }
        )
    return trials


def _flanker_trials(rng: random.Random) -> list[dict[str, Any]]:
    conditions = ["congruent", "incongruent"] * (FLANKER_TRIALS // 2)
    rng.shuffle(conditions)
    practice = ["congruent", "incongruent"] * (FLANKER_PRACTICE // 2)
    trials: list[dict[str, Any]] = []
    for index, condition in enumerate(practice + conditions):
        direction = rng.choice(("left", "right"))
        opposite = "right" if direction == "left" else "left"
        target = "<" if direction == "left" else ">"
        congruent = condition == "congruent"
        flanker = target if congruent else ("<" if target == ">" else ">")
        correct = rng.random() < (0.97 if congruent else 0.9)
        timing = FLANKER_CONGRUENT_TIMING if congruent else FLANKER_INCONGRUENT_TIMING
        trials.append(
            {
                "task": "flanker",
                "trial_index": index,
                "is_practice": index < len(practice),
                "condition": condition,
                "stimulus": flanker * 2 + target + flanker * 2,
                "response": direction if correct else opposite,
                "correct": correct,
                "rt": timing.draw(rng),
            }
        )
    return trials


DIGIT_SPAN_PRACTICE = (("forward", 2, True), ("forward", 2, True))
# Per direction: (sequence length, recalled correctly) in the order presented; the task stops
# after a length whose two sequences both failed.
DIGIT_SPAN_RUN: dict[str, tuple[tuple[int, bool], ...]] = {
    "forward": ((3, True), (3, True), (4, True), (4, True), (5, True), (5, True), (6, True),
                (6, False), (7, False), (7, False)),
    "backward": ((3, True), (3, True), (4, True), (4, False), (5, False), (5, False)),
}  # fmt: skip


def _recalled(digits: list[int], direction: str, correct: bool, rng: random.Random) -> list[int]:
    expected = digits if direction == "forward" else digits[::-1]
    if correct:
        return expected
    # The usual error: two neighbouring digits swapped.
    wrong = list(expected)
    swap = rng.randrange(len(wrong) - 1)
    wrong[swap], wrong[swap + 1] = wrong[swap + 1], wrong[swap]
    return wrong


def _digit_span_trials(rng: random.Random) -> list[dict[str, Any]]:
    plan = [
        (direction, length, correct, True) for direction, length, correct in DIGIT_SPAN_PRACTICE
    ]
    plan += [
        (direction, length, correct, False)
        for direction, run in DIGIT_SPAN_RUN.items()
        for length, correct in run
    ]
    trials: list[dict[str, Any]] = []
    for index, (direction, length, correct, practice) in enumerate(plan):
        digits = rng.sample(range(1, 10), length)
        trials.append(
            {
                "task": "digit-span",
                "trial_index": index,
                "is_practice": practice,
                "direction": direction,
                "span_length": length,
                "stimulus": "".join(map(str, digits)),
                "response": "".join(map(str, _recalled(digits, direction, correct, rng))),
                "correct": correct,
                # Time to type the sequence in; digit span has no reaction time to score.
                "rt": round(rng.gauss(1400.0 + 420.0 * length, 250.0), 1),
            }
        )
    return trials


def demo_trials(seed: int) -> list[dict[str, Any]]:
    """One completed run of the demo battery, as a client submits it (the same for one seed)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not a secret
    return [*_simple_rt_trials(rng), *_flanker_trials(rng), *_digit_span_trials(rng)]


def signature_data_uri() -> str:
    """A handwritten-looking stroke as a PNG data URI, the format consent signatures take."""
    image = Image.new("RGBA", (320, 100), (255, 255, 255, 0))
    stroke = [
        (20 + x, 52 + 28 * math.sin(x / 9.0) * math.exp(-x / 240.0)) for x in range(0, 282, 2)
    ]
    ImageDraw.Draw(image).line(stroke, fill=(20, 24, 70, 255), width=3, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
