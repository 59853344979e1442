"""Social cognition: facial emotion recognition, theory of mind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import fixed
from app.catalogue.checks import numeric
from app.catalogue.errors import FieldError
from app.catalogue.metrics import GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain

EMOTIONS = ("happiness", "sadness", "anger", "fear", "disgust", "surprise", "neutral")


def _balanced_emotions(config: Mapping[str, Any]) -> list[FieldError]:
    # Each emotion is shown equally often, so trials come in whole rounds of the emotion set.
    trials, emotions = numeric(config, "n_trials"), config.get("emotions")
    if trials is None or not isinstance(emotions, list) or not emotions:
        return []
    if trials % len(emotions) == 0:
        return []
    message = f"must be a multiple of the number of emotions ({len(emotions)})"
    return [FieldError(field="n_trials", message=message)]


def _one_label_in_set(config: Mapping[str, Any]) -> float:
    # The participant picks one label among the emotions in use: 1/7 by default.
    return 1.0 / len(config["emotions"])


EMOTION_RECOGNITION = define_module(
    module_id="emotion-recognition",
    name="Facial Emotion Recognition",
    domain=Domain.SOCIAL_COGNITION,
    description="""
        Photographs of faces showing a basic emotion (happiness, sadness, anger, fear, disgust,
        surprise) or a neutral expression are presented and the participant chooses the label
        that fits. Accuracy and response time per emotion index facial affect recognition, a core
        component of social perception.
    """,
    parameters={
        "n_trials": p.n_trials(
            42, minimum=14, maximum=210, description="Scored faces (a multiple of the emotions)."
        ),
        "practice_trials": p.practice_trials(2, maximum=10),
        "emotions": p.choice_list(
            EMOTIONS, EMOTIONS, min_items=2, description="Expressions shown and offered as labels."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            2000,
            minimum=200,
            maximum=10_000,
            description="Time each face is shown, in ms; the labels stay until a response.",
        ),
        "timeout_ms": p.timeout_ms(10_000, minimum=2000, maximum=30_000),
        "isi_ms": p.isi_ms(500, maximum=5000),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    chance=_one_label_in_set,
    checks=(_balanced_emotions,),
)

THEORY_OF_MIND = define_module(
    module_id="theory-of-mind",
    name="Theory of Mind (Reading the Mind in the Eyes)",
    domain=Domain.SOCIAL_COGNITION,
    description="""
        After Baron-Cohen's Reading the Mind in the Eyes test: photographs of the eye region of
        faces are shown and the participant chooses which of four words best describes what the
        person is thinking or feeling. Accuracy indexes affective theory of mind, the attribution
        of mental states from subtle social cues.
    """,
    parameters={
        "n_trials": p.n_trials(
            36, minimum=10, maximum=36, description="Scored items (36 in the full test)."
        ),
        "practice_trials": p.practice_trials(1, maximum=2),
        "timeout_ms": p.timeout_ms(
            60_000,
            minimum=5000,
            maximum=180_000,
            description="Time allowed per item, in ms; an unanswered item is scored incorrect.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Four mental-state words per item.
    chance=fixed(0.25),
)

MODULES: tuple[CatalogueEntry, ...] = (EMOTION_RECOGNITION, THEORY_OF_MIND)
