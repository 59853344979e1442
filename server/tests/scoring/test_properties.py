"""Scoring never raises on untrusted trials, and returns only finite numbers or null."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.scoring import registered_task_ids, score_task, session_flags, task_flags

# No example database: the suite must not write outside its own files.
PROPERTY_SETTINGS = settings(max_examples=75, database=None, deadline=None)

TASKS = (*registered_task_ids(), "cpt", "simpleRT", "vigilance-cpt", "not-a-task")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
untrusted_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def _field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, untrusted_values)


plausible_rts = st.one_of(st.none(), st.floats(min_value=-50, max_value=5000), st.integers(0, 5000))
labels = st.sampled_from(
    [
        "target",
        "nontarget",
        "Go",
        "NOGO",
        "congruent",
        "incongruent",
        "neutral",
        "forward",
        "backward",
        "A",
        "b",
        "none",
        "center",
        "double",
        "spatial",
    ]
)
trials = st.fixed_dictionaries(
    {},
    optional={
        "task": _field(st.sampled_from(TASKS)),
        "trial_index": _field(st.integers(0, 500)),
        "rt": _field(plausible_rts),
        "correct": _field(st.booleans()),
        "is_practice": _field(st.booleans()),
        "condition": _field(labels),
        "level": _field(st.integers(0, 4)),
        "direction": _field(labels),
        "span_length": _field(st.integers(0, 10)),
        "part": _field(labels),
        "errors": _field(st.integers(0, 20)),
        "cue": _field(labels),
        "flanker": _field(labels),
        "response": _field(st.one_of(st.integers(-1, 11), st.floats(-1e308, 1e308))),
        "reverse": _field(st.booleans()),
        "min": _field(st.integers(-1, 2)),
        "max": _field(st.integers(3, 10)),
    },
)
trial_lists = st.lists(trials, max_size=40)
client_summaries = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(
            ["accuracy", "mean_rt", "d_prime", "n_trials", "raw_score", "time_a", "hits_2"]
        ),
        json_scalars,
    ),
)
chance_accuracies = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


def _is_finite_number_or_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.parametrize("task", TASKS)
@PROPERTY_SETTINGS
@given(trials=trial_lists, client_summary=client_summaries, chance_accuracy=chance_accuracies)
def test_scoring_and_flags_never_raise(
    task: str,
    trials: list[dict[str, Any]],
    client_summary: dict[str, Any] | None,
    chance_accuracy: float | None,
) -> None:
    score = score_task(task, trials)
    assert all(_is_finite_number_or_null(value) for value in score.metrics.values()), score.metrics
    flags = task_flags(
        task, trials, score, chance_accuracy=chance_accuracy, client_summary=client_summary
    )
    for flag in flags:
        assert flag.task == score.task
        json.dumps(flag.evidence, allow_nan=False)


@PROPERTY_SETTINGS
@given(
    device_info=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(
                ["focus_lost", "backgrounded", "visibility_changes", "focus_events", "platform"]
            ),
            untrusted_values,
        ),
    ),
    clock_offset_seconds=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_session_flags_never_raise(
    device_info: dict[str, Any] | None, clock_offset_seconds: float | None
) -> None:
    for flag in session_flags(device_info=device_info, clock_offset_seconds=clock_offset_seconds):
        assert flag.task is None
        json.dumps(flag.evidence, allow_nan=False)
