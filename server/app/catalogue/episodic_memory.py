"""Episodic memory: pattern separation, picture sequence memory, source memory, verbal and
visual paired associates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import fixed, no_chance_level, one_in
from app.catalogue.checks import at_most, at_most_sum, numeric
from app.catalogue.errors import FieldError
from app.catalogue.metrics import GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain


def _lures_and_repeats_fit_study_list(config: Mapping[str, Any]) -> list[FieldError]:
    # Every repeat and every similar lure stands for a different studied item.
    per_type, studied = numeric(config, "n_test_per_type"), numeric(config, "n_study_items")
    if per_type is None or studied is None or 2 * per_type <= studied:
        return []
    message = (
        f"must be at most half of n_study_items ({int(studied)}): repeats and similar lures"
        " each need a distinct studied item"
    )
    return [FieldError(field="n_test_per_type", message=message)]


def _source_or_new(config: Mapping[str, Any]) -> float:
    # Each test word takes one of n_sources + 1 answers (one per source, or "new").
    return 1.0 / (int(config["n_sources"]) + 1)


def _paired_recall_chance(config: Mapping[str, Any]) -> float | None:
    # Selecting the partner among n_choices words is a forced choice; typed recall has no
    # chance level.
    if config["response_mode"] == "multiple_choice":
        return 1.0 / int(config["n_choices"])
    return None


PATTERN_SEPARATION = define_module(
    module_id="pattern-separation",
    name="Pattern Separation (Mnemonic Similarity Task)",
    domain=Domain.EPISODIC_MEMORY,
    description="""
        After the Mnemonic Similarity Task (Stark et al.): pictures of everyday objects are
        encoded incidentally, then test items are judged old, similar or new among exact repeats,
        similar lures and new foils. Calling lures "similar" rather than "old" (lure
        discrimination) indexes mnemonic discrimination, thought to rely on hippocampal pattern
        separation.
    """,
    parameters={
        "practice_trials": p.practice_trials(3, maximum=10),
        "n_study_items": p.integer(
            64, minimum=24, maximum=128, description="Objects shown at incidental encoding."
        ),
        "n_test_per_type": p.integer(
            32,
            minimum=8,
            maximum=64,
            description="Test items of each type: repeats, similar lures and new foils.",
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(2000, minimum=500, maximum=5000),
        "isi_ms": p.isi_ms(500, maximum=5000),
        "timeout_ms": p.timeout_ms(
            2500,
            minimum=500,
            maximum=10_000,
            description="Response window from stimulus onset, in ms (at most stimulus + ISI).",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Three answers (old, similar, new) and three equally frequent item types.
    chance=fixed(1 / 3),
    checks=(
        _lures_and_repeats_fit_study_list,
        at_most_sum("timeout_ms", "stimulus_duration_ms", "isi_ms"),
    ),
)

PICTURE_SEQUENCE_MEMORY = define_module(
    module_id="picture-sequence-memory",
    name="Picture Sequence Memory",
    domain=Domain.EPISODIC_MEMORY,
    description="""
        After the NIH Toolbox test: pictures of activities are shown in a set order, then
        scrambled, and the participant rebuilds the sequence, over trials of increasing length.
        The number of adjacent pairs placed correctly indexes episodic memory for the order of
        events.
    """,
    parameters={
        "practice_trials": p.practice_trials(1, maximum=3),
        "sequence_lengths": p.integer_list(
            (15, 18),
            item_minimum=4,
            item_maximum=18,
            min_items=1,
            max_items=4,
            unique=False,
            description="Pictures in each scored sequence, one entry per trial, in order.",
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            2000,
            minimum=500,
            maximum=5000,
            description="Time each picture is shown when it is placed in the sequence, in ms.",
        ),
        "timeout_ms": p.timeout_ms(
            180_000,
            minimum=30_000,
            maximum=600_000,
            description="Time allowed to rebuild one sequence, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Reconstruction of an order, not a choice among a few alternatives: no chance level.
    chance=no_chance_level,
)

SOURCE_MEMORY = define_module(
    module_id="source-memory",
    name="Source Memory",
    domain=Domain.EPISODIC_MEMORY,
    description="""
        Words are studied in one of several sources (by default two screen locations), then mixed
        with new words; for each test word the participant indicates its source or that it is
        new. Item recognition and, separately, correct source attribution index the binding of
        content to its encoding context, which depends on frontal and hippocampal systems.
    """,
    parameters={
        "practice_trials": p.practice_trials(2, maximum=10),
        "n_study_items": p.integer(40, minimum=12, maximum=120, description="Words studied."),
        "n_new_items": p.integer(
            20, minimum=6, maximum=120, description="New words mixed into the test."
        ),
        "n_sources": p.integer(
            2, minimum=2, maximum=4, description="Study sources (screen locations)."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(2000, minimum=500, maximum=5000),
        "isi_ms": p.isi_ms(500, maximum=5000),
        "timeout_ms": p.timeout_ms(
            10_000,
            minimum=1000,
            maximum=30_000,
            description="Time allowed for each test judgement, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    chance=_source_or_new,
)

VERBAL_PAIRED_ASSOCIATES = define_module(
    module_id="verbal-paired-associates",
    name="Verbal Paired Associates",
    domain=Domain.EPISODIC_MEMORY,
    description="""
        Word pairs are studied over several learning trials; at each test the first word of a
        pair is shown and the participant retrieves its partner, by choosing it among
        alternatives or by typing it. Learning across trials indexes verbal associative episodic
        memory.
    """,
    parameters={
        "practice_trials": p.practice_trials(1, maximum=3),
        "n_pairs": p.integer(10, minimum=4, maximum=20, description="Word pairs to learn."),
        "n_learning_trials": p.integer(
            3, minimum=1, maximum=6, description="Study-test cycles through the list."
        ),
        "response_mode": p.choice(
            "multiple_choice",
            ("multiple_choice", "typed_recall"),
            description="Choose the partner among alternatives, or type it (cued recall).",
        ),
        "n_choices": p.integer(
            4,
            minimum=2,
            maximum=6,
            description="Alternatives in multiple-choice mode (partners of other pairs).",
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            3000, minimum=1000, maximum=8000, description="Time each pair is studied, in ms."
        ),
        "isi_ms": p.isi_ms(500, maximum=5000),
        "timeout_ms": p.timeout_ms(
            15_000,
            minimum=3000,
            maximum=60_000,
            description="Time allowed for each cued response, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    chance=_paired_recall_chance,
    # The alternatives are partners of other pairs in the list.
    checks=(at_most("n_choices", "n_pairs"),),
)

VISUAL_PAIRED_ASSOCIATES = define_module(
    module_id="visual-paired-associates",
    name="Visual Paired Associates",
    domain=Domain.EPISODIC_MEMORY,
    description="""
        Abstract line designs are each paired with a colour over several learning trials (after
        the Wechsler Memory Scale subtest); at test a design is shown and the participant chooses
        its colour. Learning across trials indexes visual associative episodic memory with little
        verbal mediation.
    """,
    parameters={
        "practice_trials": p.practice_trials(1, maximum=3),
        "n_pairs": p.integer(6, minimum=3, maximum=12, description="Design-colour pairs."),
        "n_learning_trials": p.integer(
            3, minimum=1, maximum=6, description="Study-test cycles through the list."
        ),
        "n_choices": p.integer(
            6,
            minimum=2,
            maximum=12,
            description="Colours offered at each test (the colours of the pairs).",
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            3000, minimum=1000, maximum=8000, description="Time each pair is studied, in ms."
        ),
        "isi_ms": p.isi_ms(500, maximum=5000),
        "timeout_ms": p.timeout_ms(
            15_000,
            minimum=3000,
            maximum=60_000,
            description="Time allowed for each test response, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Forced choice among n_choices colours: 1/6 by default.
    chance=one_in("n_choices"),
    checks=(at_most("n_choices", "n_pairs"),),
)

MODULES: tuple[CatalogueEntry, ...] = (
    PATTERN_SEPARATION,
    PICTURE_SEQUENCE_MEMORY,
    SOURCE_MEMORY,
    VERBAL_PAIRED_ASSOCIATES,
    VISUAL_PAIRED_ASSOCIATES,
)
