"""Executive function: matrix reasoning, probabilistic reversal learning, Stroop, Tower of
London, Trail Making, WCST."""

from __future__ import annotations

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import fixed, no_chance_level, one_in
from app.catalogue.checks import at_most
from app.catalogue.metrics import CONFLICT_METRICS, GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain

TRAIL_MAKING_METRICS = ("time_a", "time_b", "errors_a", "errors_b", "b_minus_a", "b_over_a")

MATRIX_REASONING = define_module(
    module_id="matrix-reasoning",
    name="Matrix Reasoning",
    domain=Domain.EXECUTIVE_FUNCTION,
    description="""
        Non-verbal abstract reasoning: each item shows a matrix of geometric patterns with one
        cell missing, and the participant chooses the option that completes it. Accuracy indexes
        fluid (inductive) reasoning with little dependence on language or motor speed.
    """,
    parameters={
        "n_trials": p.n_trials(20, minimum=5, maximum=60, description="Number of scored items."),
        "practice_trials": p.practice_trials(2, maximum=5),
        "n_choices": p.integer(6, minimum=4, maximum=8, description="Response options per item."),
        "timeout_ms": p.timeout_ms(
            60_000,
            minimum=10_000,
            maximum=180_000,
            description="Time allowed per item, in ms; an unanswered item is scored incorrect.",
        ),
        "discontinue_after_errors": p.integer(
            0,
            minimum=0,
            maximum=10,
            description="Stop after this many consecutive errors (0 = administer every item).",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Forced choice among n_choices options: 1/6 by default.
    chance=one_in("n_choices"),
)

PROBABILISTIC_REVERSAL_LEARNING = define_module(
    module_id="probabilistic-reversal-learning",
    name="Probabilistic Reversal Learning",
    domain=Domain.EXECUTIVE_FUNCTION,
    description="""
        Two stimuli are offered on each trial; one is usually rewarded and the other usually not,
        and once the participant has learned the contingency it reverses without warning.
        Learning rate and perseveration after reversals index feedback-driven learning and
        cognitive flexibility; win-stay/lose-shift behaviour shows sensitivity to reward and
        punishment.
    """,
    parameters={
        "n_trials": p.n_trials(80, minimum=40, maximum=400),
        "practice_trials": p.practice_trials(5),
        "reward_probability": p.number(
            0.8,
            minimum=0.55,
            maximum=1.0,
            description="Probability that the currently correct stimulus is rewarded.",
        ),
        "reversal_criterion": p.integer(
            8,
            minimum=3,
            maximum=20,
            description="Consecutive choices of the correct stimulus that trigger a reversal.",
        ),
        "max_reversals": p.integer(
            8, minimum=1, maximum=20, description="Reversals after which no further reversal."
        ),
        "feedback_duration_ms": p.integer(
            1000, minimum=200, maximum=3000, description="Reward feedback display time, in ms."
        ),
        "timeout_ms": p.timeout_ms(3000, minimum=500, maximum=10_000),
        "isi_ms": p.isi_ms(500, maximum=5000),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Choice between two stimuli; accuracy = choosing the currently better one.
    chance=fixed(0.5),
)

STROOP = define_module(
    module_id="stroop",
    name="Stroop Colour–Word Test",
    domain=Domain.EXECUTIVE_FUNCTION,
    description="""
        Colour words are printed in an ink colour that matches (congruent) or conflicts with
        (incongruent) the word, and the participant taps the button of the ink colour. Slower and
        less accurate responses on incongruent trials (Stroop interference) index the inhibition
        of the prepotent reading response.
    """,
    parameters={
        "n_trials": p.n_trials(48, minimum=12, maximum=400),
        "practice_trials": p.practice_trials(8),
        "n_colors": p.integer(
            2,
            minimum=2,
            maximum=4,
            description="Ink colours in use, each with its own response button.",
        ),
        "congruent_proportion": p.proportion(
            0.5,
            low=0.1,
            high=0.9,
            description="Proportion of congruent among congruent and incongruent trials.",
        ),
        "include_neutral": p.boolean(
            False, description="Add neutral trials (a coloured row of symbols such as ####)."
        ),
        "timeout_ms": p.timeout_ms(3000, minimum=500, maximum=10_000),
        "isi_ms": p.isi_ms(500, maximum=5000),
    },
    summary_metrics=CONFLICT_METRICS,
    scorer="stroop",
    # One response button per ink colour: 1/2 with the default two colours.
    chance=one_in("n_colors"),
)

TOWER_TASK = define_module(
    module_id="tower-task",
    name="Tower Task (Tower of London)",
    domain=Domain.EXECUTIVE_FUNCTION,
    description="""
        Planning task after Shallice's Tower of London: the participant moves coloured balls
        between pegs of different heights to reproduce a goal arrangement in a stated minimum
        number of moves. Problems solved in the minimum number of moves, excess moves and
        planning time index forward planning and goal management.
    """,
    parameters={
        "n_trials": p.n_trials(12, minimum=4, maximum=30, description="Number of problems."),
        "practice_trials": p.practice_trials(2, maximum=5),
        "min_moves": p.integer(
            2, minimum=1, maximum=7, description="Minimum-move length of the easiest problems."
        ),
        "max_moves": p.integer(
            5, minimum=1, maximum=7, description="Minimum-move length of the hardest problems."
        ),
        "show_minimum_moves": p.boolean(
            True, description="Tell the participant the minimum number of moves of each problem."
        ),
        "timeout_ms": p.timeout_ms(
            60_000,
            minimum=10_000,
            maximum=300_000,
            description="Time allowed per problem, in ms; an unsolved problem is scored failed.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Free sequence of moves, not a choice among alternatives: no chance level.
    chance=no_chance_level,
    checks=(at_most("min_moves", "max_moves"),),
)

TRAIL_MAKING = define_module(
    module_id="trail-making",
    name="Trail Making Test (Parts A and B)",
    domain=Domain.EXECUTIVE_FUNCTION,
    description="""
        Part A: the participant connects numbered circles in ascending order as fast as possible;
        Part B: the participant alternates between numbers and letters (1-A-2-B...). Part A
        indexes visual search and psychomotor speed; the B − A difference and the B/A ratio
        isolate the cost of set-shifting.
    """,
    parameters={
        "parts": p.choice(
            "both", ("A", "B", "both"), description="Parts to run; `both` is A then B."
        ),
        "practice_trials": p.practice_trials(
            1, maximum=3, description="Short sample trails before each part (0 = none)."
        ),
        "n_circles": p.integer(
            25,
            minimum=8,
            maximum=25,
            description="Circles per part (25 as on paper; Part B alternates 1-13 with A-L).",
        ),
        "timeout_ms": p.timeout_ms(
            300_000,
            minimum=60_000,
            maximum=600_000,
            description="Time allowed per part, in ms; an unfinished part is discontinued.",
        ),
    },
    summary_metrics=TRAIL_MAKING_METRICS,
    scorer="trail-making",
    # Completion time and errors only; there is no accuracy to compare with chance.
    chance=no_chance_level,
)

WCST = define_module(
    module_id="wcst",
    name="Wisconsin Card Sorting Test (WCST)",
    domain=Domain.EXECUTIVE_FUNCTION,
    description="""
        The participant sorts each card to one of four key cards by colour, shape or number,
        inferring the rule from right/wrong feedback; after a run of correct sorts the rule
        changes without warning. Categories completed and perseverative errors index abstraction,
        set-shifting and cognitive flexibility.
    """,
    parameters={
        "n_trials": p.n_trials(64, minimum=24, maximum=128, description="Cards to sort."),
        "practice_trials": p.practice_trials(
            0,
            maximum=10,
            description=(
                "Unscored practice sorts (0 = none, the standard: learning the rule from"
                " feedback is what is measured)."
            ),
        ),
        "category_criterion": p.integer(
            10,
            minimum=3,
            maximum=20,
            description="Consecutive correct sorts after which the rule changes.",
        ),
        "max_categories": p.integer(
            6, minimum=1, maximum=9, description="Categories after which the test ends."
        ),
        "feedback_duration_ms": p.integer(
            1000, minimum=200, maximum=3000, description="Right/wrong feedback time, in ms."
        ),
        "timeout_ms": p.timeout_ms(30_000, minimum=3000, maximum=120_000),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Each card is placed under one of four key cards.
    chance=fixed(0.25),
)

MODULES: tuple[CatalogueEntry, ...] = (
    MATRIX_REASONING,
    PROBABILISTIC_REVERSAL_LEARNING,
    STROOP,
    TOWER_TASK,
    TRAIL_MAKING,
    WCST,
)
