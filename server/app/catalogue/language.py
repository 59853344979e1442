"""Language: semantic fluency, sentence comprehension, vocabulary."""

from __future__ import annotations

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import no_chance_level, one_in
from app.catalogue.metrics import GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain

SEMANTIC_FLUENCY = define_module(
    module_id="semantic-fluency",
    name="Semantic (Category) Fluency",
    domain=Domain.LANGUAGE,
    description="""
        The participant produces, by typing, as many different members of a category (animals by
        default) as possible within a time limit. The number of correct, non-repeated words
        indexes lexical-semantic retrieval and strategic search, and is sensitive to temporal-lobe
        and frontal dysfunction.
    """,
    parameters={
        "practice_trials": p.practice_trials(
            0, maximum=1, description="A short practice round on another category (0 = none)."
        ),
        "category": p.choice(
            "animals",
            ("animals", "fruits", "vegetables", "supermarket_items", "clothing"),
            description="Category to generate; the client shows it in the session's language.",
        ),
        "time_limit_ms": p.integer(
            60_000, minimum=30_000, maximum=180_000, description="Generation time, in ms."
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Free generation: there are no alternatives to guess among.
    chance=no_chance_level,
)

SENTENCE_COMPREHENSION = define_module(
    module_id="sentence-comprehension",
    name="Sentence Comprehension",
    domain=Domain.LANGUAGE,
    description="""
        Sentence-picture matching: the participant reads a sentence and chooses, among several
        pictures, the one it describes, across grammatical constructions of increasing complexity
        (reversible, passive, embedded). Accuracy indexes the comprehension of syntax beyond
        single-word vocabulary.
    """,
    parameters={
        "n_trials": p.n_trials(24, minimum=8, maximum=80, description="Number of scored items."),
        "practice_trials": p.practice_trials(2, maximum=5),
        "n_choices": p.integer(4, minimum=2, maximum=4, description="Pictures per item."),
        "timeout_ms": p.timeout_ms(
            20_000,
            minimum=3000,
            maximum=60_000,
            description="Time allowed per item, in ms; an unanswered item is scored incorrect.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Forced choice among n_choices pictures: 1/4 by default.
    chance=one_in("n_choices"),
)

VOCABULARY = define_module(
    module_id="vocabulary",
    name="Vocabulary",
    domain=Domain.LANGUAGE,
    description="""
        Multiple-choice vocabulary: for each target word the participant chooses the word
        closest in meaning among several alternatives. Accuracy indexes acquired word knowledge
        (crystallised ability), which is relatively resistant to brain disease and serves as an
        estimate of premorbid ability.
    """,
    parameters={
        "n_trials": p.n_trials(30, minimum=10, maximum=80, description="Number of scored items."),
        "practice_trials": p.practice_trials(2, maximum=5),
        "n_choices": p.integer(4, minimum=3, maximum=6, description="Alternatives per item."),
        "timeout_ms": p.timeout_ms(
            20_000,
            minimum=3000,
            maximum=60_000,
            description="Time allowed per item, in ms; an unanswered item is scored incorrect.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Forced choice among n_choices words: 1/4 by default.
    chance=one_in("n_choices"),
)

MODULES: tuple[CatalogueEntry, ...] = (SEMANTIC_FLUENCY, SENTENCE_COMPREHENSION, VOCABULARY)
