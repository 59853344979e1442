"""Patient-reported outcomes: Brain Fog Scale, COMPASS-31, FACS, MFIS, PROMIS Pediatric
Profile-25.

Item wording, response options and translations are content the client ships; the catalogue
holds what a study may set. A recall period is part of a validated instrument, so it is declared
(for clients to show) but fixed with `const`. None of these has a chance level (`accuracy` does
not apply), and all are scored by the `pro` scorer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import no_chance_level
from app.catalogue.checks import at_most, numeric
from app.catalogue.errors import FieldError
from app.catalogue.metrics import PRO_METRICS, PRO_SCORER
from app.catalogue.model import CatalogueEntry, Domain, JSONSchema, ModuleKind

BRAIN_FOG_SCALE_ITEMS = 23
COMPASS_31_ITEMS = 31
FACS_DEFAULT_ITEMS = 20
FACS_MAX_ITEMS = 100
MFIS_ITEMS = {"full": 21, "abbreviated": 5}
PROMIS_PEDIATRIC_PROFILE_25_ITEMS = 25


def _delivery(n_items: int) -> dict[str, JSONSchema]:
    """Presentation options every questionnaire has."""
    return {
        "allow_skipping_items": p.boolean(
            True, description="Let the respondent leave items unanswered (scored as missing)."
        ),
        "items_per_page": p.integer(
            1, minimum=1, maximum=n_items, description="Items shown together on one screen."
        ),
    }


def _recall_period(days: int, wording: str) -> JSONSchema:
    return p.fixed_integer(days, description=f"Recall period of the instrument ({wording}).")


def _mfis_page_fits_version(config: Mapping[str, Any]) -> list[FieldError]:
    per_page, version = numeric(config, "items_per_page"), config.get("version")
    if per_page is None or not isinstance(version, str) or version not in MFIS_ITEMS:
        return []
    if per_page <= MFIS_ITEMS[version]:
        return []
    message = f"must be at most {MFIS_ITEMS[version]}, the item count of the {version} version"
    return [FieldError(field="items_per_page", message=message)]


BRAIN_FOG_SCALE = define_module(
    module_id="brain-fog-scale",
    name="Brain Fog Scale (BFS)",
    domain=Domain.PATIENT_REPORTED_OUTCOME,
    kind=ModuleKind.PRO,
    # The 23-item BFS of Debowska et al. (2024), the first published validation of a brain fog
    # scale; its recall period is not pinned here, so none is declared.
    description="""
        Self-report questionnaire of brain fog (Debowska et al., 2024): 23 rating-scale items in
        three subscales, mental fatigue, impaired cognitive acuity and confusion, developed for
        clinical and research use as brain fog emerged as a frequent complaint of long COVID.
        Higher scores indicate more severe brain fog.
    """,
    parameters=_delivery(BRAIN_FOG_SCALE_ITEMS),
    summary_metrics=PRO_METRICS,
    scorer=PRO_SCORER,
    chance=no_chance_level,
)

COMPASS_31 = define_module(
    module_id="compass-31",
    name="Composite Autonomic Symptom Score (COMPASS-31)",
    domain=Domain.PATIENT_REPORTED_OUTCOME,
    kind=ModuleKind.PRO,
    description="""
        31-item self-report questionnaire of autonomic symptoms over the past year in six
        domains: orthostatic intolerance, vasomotor, secretomotor, gastrointestinal, bladder and
        pupillomotor (Sletten et al., 2012). The published total weights the domains to a 0–100
        score; higher scores indicate a greater autonomic symptom burden.
    """,
    parameters={
        "recall_period_days": _recall_period(365, "the past year"),
        **_delivery(COMPASS_31_ITEMS),
    },
    summary_metrics=PRO_METRICS,
    scorer=PRO_SCORER,
    chance=no_chance_level,
)

FACS = define_module(
    module_id="facs",
    name="FACS",
    domain=Domain.PATIENT_REPORTED_OUTCOME,
    kind=ModuleKind.PRO,
    # The platform's sources name this instrument only by its acronym; its published form could
    # not be pinned down, so instead of hard-coding a guessed length the study declares the item
    # count of the form it licensed (20 by default) and the catalogue claims no recall period.
    description="""
        FACS self-report questionnaire from the platform's neurology bundle, administered as a
        fixed list of rating-scale items and scored as the sum and mean of the item responses.
        The item count is set per study to match the licensed form.
    """,
    parameters={
        "n_items": p.integer(
            FACS_DEFAULT_ITEMS,
            minimum=1,
            maximum=FACS_MAX_ITEMS,
            description="Items of the form in use.",
        ),
        **_delivery(FACS_MAX_ITEMS),
    },
    summary_metrics=PRO_METRICS,
    scorer=PRO_SCORER,
    chance=no_chance_level,
    checks=(at_most("items_per_page", "n_items"),),
)

MFIS = define_module(
    module_id="mfis",
    name="Modified Fatigue Impact Scale (MFIS)",
    domain=Domain.PATIENT_REPORTED_OUTCOME,
    kind=ModuleKind.PRO,
    description="""
        Self-report measure of how fatigue has affected physical, cognitive and psychosocial
        functioning over the past four weeks, developed for multiple sclerosis: 21 items in the
        full version and 5 in the abbreviated MFIS-5, each rated from 0 (never) to 4 (almost
        always). Higher scores indicate a greater impact of fatigue.
    """,
    parameters={
        "version": p.choice(
            "full",
            tuple(MFIS_ITEMS),
            description="`full` (21 items) or `abbreviated` (MFIS-5, 5 items).",
        ),
        "recall_period_days": _recall_period(28, "the past four weeks"),
        **_delivery(MFIS_ITEMS["full"]),
    },
    summary_metrics=PRO_METRICS,
    scorer=PRO_SCORER,
    chance=no_chance_level,
    checks=(_mfis_page_fits_version,),
)

PROMIS_PEDIATRIC_PROFILE_25 = define_module(
    module_id="promis-pediatric-profile-25",
    name="PROMIS Pediatric Profile-25",
    domain=Domain.PATIENT_REPORTED_OUTCOME,
    kind=ModuleKind.PRO,
    description="""
        PROMIS pediatric health-related quality-of-life profile over the past seven days: four
        items each for physical function–mobility, anxiety, depressive symptoms, fatigue, peer
        relationships and pain interference, plus a 0–10 pain-intensity item (25 items).
        Self-report from age 8; parent-proxy report from age 5.
    """,
    parameters={
        "respondent": p.choice(
            "self",
            ("self", "parent_proxy"),
            description="Child self-report (ages 8-17) or parent proxy (ages 5-17).",
        ),
        "recall_period_days": _recall_period(7, "the past seven days"),
        **_delivery(PROMIS_PEDIATRIC_PROFILE_25_ITEMS),
    },
    summary_metrics=PRO_METRICS,
    scorer=PRO_SCORER,
    chance=no_chance_level,
)

MODULES: tuple[CatalogueEntry, ...] = (
    BRAIN_FOG_SCALE,
    COMPASS_31,
    FACS,
    MFIS,
    PROMIS_PEDIATRIC_PROFILE_25,
)
