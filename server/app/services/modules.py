"""The module catalogue as the API publishes it: catalogue entries joined with their scorers."""

from __future__ import annotations

from app.catalogue import ModuleDefinition
from app.schemas.modules import ModuleRead
from app.scoring import scorer_for


def module_read(module: ModuleDefinition) -> ModuleRead:
    # The catalogue names scorer families loosely (`pro`, `flanker`); the scorer registry
    # knows which scorer actually scores the task, its version is what results record, and its
    # trial format is what the task's trials must look like.
    scorer = scorer_for(module.id)
    return ModuleRead(
        id=module.id,
        name=module.name,
        domain=module.domain,
        kind=module.kind,
        description=module.description,
        default_config=module.default_config,
        config_schema=module.config_schema,
        summary_metrics=module.summary_metrics,
        chance_accuracy=module.chance_accuracy,
        scorer=scorer.name,
        scorer_version=scorer.version,
        trial_schema=scorer.trial_format.json_schema(module.id),
        trial_example=scorer.trial_format.example_trials(module.id),
    )
