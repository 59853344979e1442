"""Task ids, aliases and scorer versions."""

from __future__ import annotations

import pytest

from app.scoring import (
    SCORER_VERSIONS,
    TASK_ALIASES,
    canonical_task_id,
    registered_task_ids,
    scorer_for,
)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("cpt", "cpt-go-nogo"),
        ("CPT", "cpt-go-nogo"),
        ("cpt-go-nogo", "cpt-go-nogo"),
        ("simple_rt", "simple-rt"),
        ("simpleRT", "simple-rt"),
        ("nback", "n-back"),
        ("digitSpan", "digit-span"),
        ("tmt", "trail-making"),
        (" Stroop ", "stroop"),
        ("vigilance-cpt", "vigilance-cpt"),
        ("Some_Unknown_Task", "Some_Unknown_Task"),
    ],
)
def test_canonical_task_id(task: str, expected: str) -> None:
    assert canonical_task_id(task) == expected


def test_every_alias_points_at_a_registered_task() -> None:
    assert set(TASK_ALIASES.values()) <= set(registered_task_ids())


def test_the_first_wave_and_the_pros_have_dedicated_scorers() -> None:
    assert set(registered_task_ids()) == {
        "simple-rt",
        "choice-rt",
        "cpt-go-nogo",
        "n-back",
        "digit-span",
        "trail-making",
        "flanker",
        "stroop",
        "attention-network-test",
        "brain-fog-scale",
        "compass-31",
        "facs",
        "mfis",
        "promis-pediatric-profile-25",
    }


def test_unregistered_tasks_fall_back_to_the_generic_scorer() -> None:
    assert scorer_for("vigilance-cpt").name == "generic"
    assert scorer_for("").name == "generic"


def test_versions_name_their_scorer_and_agree_across_tasks() -> None:
    for task in registered_task_ids():
        scorer = scorer_for(task)
        assert SCORER_VERSIONS[scorer.name] == scorer.version
        assert scorer.version.startswith(f"{scorer.name}/")
    assert SCORER_VERSIONS["generic"] == "generic/1.0.0"
