"""Decision-making: delay discounting."""

from __future__ import annotations

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import no_chance_level
from app.catalogue.metrics import GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain

DELAY_DISCOUNTING = define_module(
    module_id="delay-discounting",
    name="Delay Discounting",
    domain=Domain.DECISION_MAKING,
    description="""
        The participant chooses repeatedly between a smaller amount now and a larger amount after
        a delay; an adjusting-amount procedure converges on the indifference point at each delay.
        The rate at which delayed rewards lose subjective value (hyperbolic k, area under the
        discounting curve) indexes impulsive choice.
    """,
    parameters={
        "practice_trials": p.practice_trials(1, maximum=5),
        "delayed_amount": p.integer(
            100,
            minimum=10,
            maximum=10_000,
            description="The larger, later amount, in the study's currency units.",
        ),
        "delays_days": p.integer_list(
            (1, 7, 30, 90, 365),
            item_minimum=1,
            item_maximum=3650,
            min_items=1,
            max_items=10,
            description="Delays of the larger amount, in days, each at most once.",
        ),
        "choices_per_delay": p.integer(
            6,
            minimum=3,
            maximum=10,
            description="Adjusting choices at each delay (the step halves after every choice).",
        ),
        "timeout_ms": p.timeout_ms(
            30_000,
            minimum=5000,
            maximum=120_000,
            description="Time allowed per choice, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # A preference, with no correct answer: accuracy has no chance level.
    chance=no_chance_level,
)

MODULES: tuple[CatalogueEntry, ...] = (DELAY_DISCOUNTING,)
