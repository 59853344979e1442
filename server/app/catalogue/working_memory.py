"""Working memory: Corsi block-tapping, digit span, letter-number switching, n-back, OSPAN."""

from __future__ import annotations

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import fixed, majority_response, no_chance_level
from app.catalogue.checks import at_most, at_most_sum
from app.catalogue.metrics import GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain, JSONSchema

DIGIT_SPAN_METRICS = (
    "max_span_forward",
    "max_span_backward",
    "total_correct_forward",
    "total_correct_backward",
    "total_correct",
)
N_BACK_LEVELS = (1, 2, 3)
N_BACK_METRICS = (
    *(
        f"{metric}_{level}"
        for level in N_BACK_LEVELS
        for metric in ("hits", "false_alarms", "accuracy", "d_prime", "mean_rt_hits")
    ),
    "accuracy",
    "d_prime",
)

_DIRECTIONS = ("forward", "backward", "both")


def _stop_rule() -> JSONSchema:
    return p.boolean(
        True, description="Stop a direction once every trial at one sequence length is failed."
    )


CORSI_BLOCK_TAPPING = define_module(
    module_id="corsi-block-tapping",
    name="Corsi Block-Tapping Test",
    domain=Domain.WORKING_MEMORY,
    description="""
        Visuospatial span: blocks scattered on the screen light up one at a time and the
        participant taps them in the same order (forward) or in reverse (backward), with
        sequences growing longer until both trials of a length are failed. The longest sequence
        reproduced indexes visuospatial short-term and working memory.
    """,
    parameters={
        "practice_trials": p.practice_trials(2, maximum=10),
        "n_blocks": p.integer(9, minimum=4, maximum=16, description="Blocks on the board."),
        "direction": p.choice(
            "forward", _DIRECTIONS, description="Recall order; `both` runs forward then backward."
        ),
        "min_length": p.integer(2, minimum=2, maximum=12, description="First sequence length."),
        "max_length": p.integer(9, minimum=2, maximum=12, description="Last sequence length."),
        "trials_per_length": p.integer(
            2, minimum=1, maximum=5, description="Sequences presented at each length."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            700, minimum=200, maximum=3000, description="Time each block stays lit, in ms."
        ),
        "isi_ms": p.isi_ms(300, maximum=3000),
        "stop_after_failed_length": _stop_rule(),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Serial reproduction of a sequence, not a choice among a few alternatives: no chance level.
    chance=no_chance_level,
    # A sequence visits each block at most once, so it cannot be longer than the board.
    checks=(at_most("min_length", "max_length"), at_most("max_length", "n_blocks")),
)

DIGIT_SPAN = define_module(
    module_id="digit-span",
    name="Digit Span (Forward and Backward)",
    domain=Domain.WORKING_MEMORY,
    description="""
        Digits are presented one at a time and the participant enters them in the same order
        (forward) or in reverse order (backward), with sequences growing longer until both trials
        at a length are failed. Forward span indexes verbal short-term storage; backward span adds
        the manipulation demands of working memory.
    """,
    parameters={
        "practice_trials": p.practice_trials(2, maximum=10),
        "direction": p.choice(
            "both", _DIRECTIONS, description="Recall order; `both` runs forward then backward."
        ),
        "min_length": p.integer(3, minimum=2, maximum=12, description="First sequence length."),
        "max_length": p.integer(9, minimum=2, maximum=12, description="Last sequence length."),
        "trials_per_length": p.integer(
            2, minimum=1, maximum=5, description="Sequences presented at each length."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            800, minimum=200, maximum=3000, description="Time each digit is shown, in ms."
        ),
        "isi_ms": p.isi_ms(200, maximum=3000),
        "stop_after_failed_length": _stop_rule(),
    },
    summary_metrics=DIGIT_SPAN_METRICS,
    scorer="digit-span",
    # Serial recall of a digit string: no chance level.
    chance=no_chance_level,
    checks=(at_most("min_length", "max_length"),),
)

LETTER_NUMBER_SWITCHING = define_module(
    module_id="letter-number-switching",
    name="Letter–Number Switching",
    domain=Domain.WORKING_MEMORY,
    description="""
        Task switching after Rogers and Monsell (1995): each display is a letter–digit pair whose
        position tells the participant to classify the letter (vowel or consonant) or the digit
        (odd or even). Slower, less accurate responses on switch than on repeat trials (the switch
        cost) index the updating and reconfiguration of task sets in working memory.
    """,
    parameters={
        "n_trials": p.n_trials(64, minimum=16, maximum=400),
        "practice_trials": p.practice_trials(12, maximum=40),
        "switch_probability": p.proportion(
            0.5,
            low=0.1,
            high=0.9,
            description="Probability that a trial's task differs from the previous trial's.",
        ),
        "timeout_ms": p.timeout_ms(5000, minimum=500, maximum=15_000),
        "isi_ms": p.isi_ms(400, maximum=5000),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Both classifications map onto the same two response keys.
    chance=fixed(0.5),
)

N_BACK = define_module(
    module_id="n-back",
    name="N-Back",
    domain=Domain.WORKING_MEMORY,
    description="""
        Letters are presented one at a time and the participant responds when the current letter
        matches the one presented n positions earlier, at 1-, 2- and 3-back load. Hits, false
        alarms and d′ as load rises index the continuous monitoring and updating of working
        memory.
    """,
    parameters={
        "levels": p.integer_list(
            N_BACK_LEVELS,
            item_minimum=min(N_BACK_LEVELS),
            item_maximum=max(N_BACK_LEVELS),
            min_items=1,
            max_items=len(N_BACK_LEVELS),
            description="Load levels (n) to run, in this order, each at most once.",
        ),
        "trials_per_level": p.integer(
            20, minimum=10, maximum=200, description="Scored trials at each load level."
        ),
        "practice_trials": p.practice_trials(
            6, description="Unscored practice trials with feedback before each level (0 = none)."
        ),
        "target_frequency": p.proportion(
            0.3, low=0.1, high=0.5, description="Proportion of trials that are n-back matches."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(500, maximum=5000),
        "isi_ms": p.isi_ms(2000, minimum=100),
        "timeout_ms": p.timeout_ms(
            2500,
            minimum=100,
            maximum=15_000,
            description="Response window from stimulus onset, in ms (at most stimulus + ISI).",
        ),
    },
    summary_metrics=N_BACK_METRICS,
    scorer="n-back",
    # Match detection: never responding scores 1 - target_frequency (0.7); chance is max(p, 1 - p).
    chance=majority_response("target_frequency"),
    checks=(at_most_sum("timeout_ms", "stimulus_duration_ms", "isi_ms"),),
)

OPERATION_SPAN = define_module(
    module_id="operation-span",
    name="Operation Span (OSPAN)",
    domain=Domain.WORKING_MEMORY,
    description="""
        Complex span task after Turner and Engle (1989), in the automated form of Unsworth et al.
        (2005): the participant verifies simple equations, each followed by a letter to remember,
        and recalls the letters of each set in order. Letters recalled in their correct serial
        position index working-memory capacity under concurrent processing.
    """,
    parameters={
        "practice_trials": p.practice_trials(
            3, maximum=10, description="Unscored practice sets before the scored sets (0 = none)."
        ),
        "min_set_size": p.integer(3, minimum=2, maximum=9, description="Smallest set size."),
        "max_set_size": p.integer(7, minimum=2, maximum=9, description="Largest set size."),
        "sets_per_size": p.integer(
            3, minimum=1, maximum=5, description="Sets presented at each size, in random order."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(
            1000, minimum=200, maximum=3000, description="Time each letter is shown, in ms."
        ),
        "timeout_ms": p.timeout_ms(
            6000,
            minimum=1000,
            maximum=20_000,
            description="Time allowed to verify each equation, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Serial recall of letter sets: no chance level.
    chance=no_chance_level,
    checks=(at_most("min_set_size", "max_set_size"),),
)

MODULES: tuple[CatalogueEntry, ...] = (
    CORSI_BLOCK_TAPPING,
    DIGIT_SPAN,
    LETTER_NUMBER_SWITCHING,
    N_BACK,
    OPERATION_SPAN,
)
