"""Processing speed: digit-symbol coding, simple reaction time."""

from __future__ import annotations

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import no_chance_level, one_in
from app.catalogue.checks import at_most
from app.catalogue.metrics import GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain

SIMPLE_RT_METRICS = (
    "n_trials",
    "n_responses",
    "n_timeouts",
    "n_anticipations",
    "mean_rt",
    "median_rt",
    "sd_rt",
    "n_lapses",
)

DIGIT_SYMBOL_CODING = define_module(
    module_id="digit-symbol-coding",
    name="Digit–Symbol Coding",
    domain=Domain.PROCESSING_SPEED,
    description="""
        Substitution task modelled on the WAIS Coding and Symbol Digit Modalities tests: a key
        pairs digits with abstract symbols, and for each symbol shown the participant taps its
        digit as quickly as possible within a fixed time. The number of correct substitutions
        indexes processing speed, with contributions from visual scanning and incidental
        associative learning.
    """,
    parameters={
        "practice_trials": p.practice_trials(6),
        "time_limit_ms": p.integer(
            90_000,
            minimum=30_000,
            maximum=300_000,
            description="Duration of the scored period, in ms.",
        ),
        "n_symbols": p.integer(
            9, minimum=4, maximum=9, description="Digit-symbol pairs in the key (digits 1 to n)."
        ),
        "randomize_key": p.boolean(
            True,
            description="Draw a new digit-symbol pairing per session (alternate forms for retest).",
        ),
        "timeout_ms": p.timeout_ms(
            10_000,
            minimum=1000,
            maximum=60_000,
            description="Time allowed for one item before it is skipped, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Each item is a forced choice among the n_symbols digits of the key: 1/9 by default.
    chance=one_in("n_symbols"),
    checks=(at_most("timeout_ms", "time_limit_ms"),),
)

SIMPLE_RT = define_module(
    module_id="simple-rt",
    name="Simple Reaction Time",
    domain=Domain.PROCESSING_SPEED,
    description="""
        The participant taps as quickly as possible whenever a single stimulus appears after an
        unpredictable foreperiod. Mean and variability of response time index psychomotor speed
        and alertness; slow responses (lapses) and anticipations flag lapses of arousal and
        impulsive responding.
    """,
    parameters={
        "n_trials": p.n_trials(20, minimum=5, maximum=200),
        "practice_trials": p.practice_trials(3),
        "timeout_ms": p.timeout_ms(5000, minimum=500, maximum=10_000),
        "isi_min_ms": p.integer(
            500,
            minimum=100,
            maximum=10_000,
            description="Shortest foreperiod before the stimulus, in ms.",
        ),
        "isi_max_ms": p.integer(
            1500,
            minimum=100,
            maximum=10_000,
            description="Longest foreperiod before the stimulus, in ms (drawn uniformly).",
        ),
    },
    summary_metrics=SIMPLE_RT_METRICS,
    scorer="simple-rt",
    # One stimulus and one response: there are no alternatives to guess among.
    chance=no_chance_level,
    checks=(at_most("isi_min_ms", "isi_max_ms"),),
)

MODULES: tuple[CatalogueEntry, ...] = (DIGIT_SYMBOL_CODING, SIMPLE_RT)
