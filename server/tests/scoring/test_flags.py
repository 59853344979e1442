"""Each validity flag, raised just past its threshold and not raised at it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from app.scoring import Flag, score_task, session_flags, task_flags


def _flags(
    task: str,
    trials: Sequence[Mapping[str, Any]],
    *,
    chance_accuracy: float | None = None,
    client_summary: Mapping[str, Any] | None = None,
) -> dict[str, Flag]:
    flags = task_flags(
        task,
        trials,
        score_task(task, trials),
        chance_accuracy=chance_accuracy,
        client_summary=client_summary,
    )
    for flag in flags:
        json.dumps(flag.evidence, allow_nan=False)
    return {flag.code: flag for flag in flags}


def _rts(*rts: float | None) -> list[dict[str, Any]]:
    # 313 ms is prime, so these trials never sit on a coarse grid by accident.
    return [{"rt": rt} for rt in rts]


# --- ANTICIPATIONS_HIGH ---------------------------------------------------------------------


def test_anticipations_at_ten_percent_are_not_flagged() -> None:
    assert "ANTICIPATIONS_HIGH" not in _flags("simple-rt", _rts(50, *[313] * 9))


def test_anticipations_above_ten_percent_are_flagged() -> None:
    flag = _flags("simple-rt", _rts(50, *[313] * 8, None))["ANTICIPATIONS_HIGH"]
    assert flag.task == "simple-rt"
    assert flag.evidence["anticipations"] == 1
    assert flag.evidence["responses"] == 9
    assert flag.evidence["share"] == pytest.approx(1 / 9)


def test_anticipations_are_not_judged_where_rt_is_no_reaction_time() -> None:
    trials: list[dict[str, Any]] = [{"part": "A", "rt": 50}, {"part": "B", "rt": 60}]
    assert "ANTICIPATIONS_HIGH" not in _flags("trail-making", trials)


# --- TIMEOUTS_HIGH --------------------------------------------------------------------------


def test_timeouts_at_twenty_percent_are_not_flagged() -> None:
    assert "TIMEOUTS_HIGH" not in _flags("simple-rt", _rts(*[None] * 20, *[313] * 80))


def test_timeouts_above_twenty_percent_are_flagged() -> None:
    flag = _flags("choice-rt", _rts(*[None] * 21, *[313] * 79))["TIMEOUTS_HIGH"]
    assert flag.evidence["timeouts"] == 21
    assert flag.evidence["trials_expecting_response"] == 100


def test_practice_timeouts_do_not_count() -> None:
    trials = [*_rts(*[313] * 4), *({"rt": None, "is_practice": True} for _ in range(5))]
    assert "TIMEOUTS_HIGH" not in _flags("simple-rt", trials)


def _go_nogo(target_rts: list[float | None], nontargets: int) -> list[dict[str, Any]]:
    targets = [{"condition": "target", "rt": rt} for rt in target_rts]
    return targets + [{"condition": "nontarget", "rt": None}] * nontargets


def test_cpt_counts_only_target_omissions_as_timeouts() -> None:
    assert "TIMEOUTS_HIGH" not in _flags("cpt", _go_nogo([313] * 8 + [None] * 2, 90))
    flag = _flags("cpt", _go_nogo([313] * 7 + [None] * 3, 90))["TIMEOUTS_HIGH"]
    assert flag.task == "cpt-go-nogo"
    assert (flag.evidence["timeouts"], flag.evidence["trials_expecting_response"]) == (3, 10)


def test_n_back_counts_only_target_omissions_as_timeouts() -> None:
    trials = [{"level": 2, **trial} for trial in _go_nogo([313] * 4 + [None], 20)]
    assert "TIMEOUTS_HIGH" not in _flags("n-back", trials)
    trials = [{"level": 2, **trial} for trial in _go_nogo([313] * 3 + [None] * 2, 20)]
    assert "TIMEOUTS_HIGH" in _flags("n-back", trials)


def test_generic_tasks_do_not_count_correct_withholding() -> None:
    withheld = [{"rt": None, "correct": True}] * 50
    missed = [{"rt": None, "correct": False}]
    assert "TIMEOUTS_HIGH" not in _flags(
        "vigilance-cpt", [*_rts(313, 317, 331, 337), *withheld, *missed]
    )
    flag = _flags("vigilance-cpt", [*_rts(313, 317, 331), *withheld, *missed])["TIMEOUTS_HIGH"]
    assert (flag.evidence["timeouts"], flag.evidence["trials_expecting_response"]) == (1, 4)


def test_generic_tasks_without_any_rt_are_not_judged_for_timeouts() -> None:
    assert "TIMEOUTS_HIGH" not in _flags("semantic-fluency", [{"response": "cat"}] * 5)


def test_timeouts_are_not_judged_for_digit_span_or_pros() -> None:
    assert "TIMEOUTS_HIGH" not in _flags("digit-span", _rts(None, None, None))
    assert "TIMEOUTS_HIGH" not in _flags("mfis", [{"response": None, "rt": None}] * 3)


# --- ACCURACY_AT_CHANCE ---------------------------------------------------------------------


def _choices(correct: int, incorrect: int) -> list[dict[str, Any]]:
    return [{"rt": 313, "correct": True}] * correct + [{"rt": 313, "correct": False}] * incorrect


def test_accuracy_at_chance_is_flagged() -> None:
    flag = _flags("choice-rt", _choices(50, 50), chance_accuracy=0.5)["ACCURACY_AT_CHANCE"]
    assert flag.evidence == {"accuracy": 0.5, "chance_accuracy": 0.5}
    assert "ACCURACY_AT_CHANCE" in _flags("choice-rt", _choices(1, 2), chance_accuracy=1 / 3)
    assert "ACCURACY_AT_CHANCE" in _flags("choice-rt", _choices(49, 51), chance_accuracy=0.5)


def test_accuracy_above_chance_is_not_flagged() -> None:
    assert "ACCURACY_AT_CHANCE" not in _flags("choice-rt", _choices(51, 49), chance_accuracy=0.5)


def test_accuracy_at_chance_needs_both_numbers() -> None:
    assert "ACCURACY_AT_CHANCE" not in _flags("choice-rt", _choices(0, 10), chance_accuracy=None)
    assert "ACCURACY_AT_CHANCE" not in _flags("choice-rt", [], chance_accuracy=0.5)
    assert "ACCURACY_AT_CHANCE" not in _flags("mfis", [{"response": 1}], chance_accuracy=0.5)


# --- COARSE_TIMER ---------------------------------------------------------------------------


def test_five_rts_on_an_8_ms_grid_are_flagged() -> None:
    flag = _flags("simple-rt", _rts(304, 312, 400, 488, 520))["COARSE_TIMER"]
    assert flag.evidence == {"n_rts": 5, "grid_step_ms": 8.0, "min_step_ms": 8}


def test_four_rts_are_too_few_to_judge_the_timer() -> None:
    assert "COARSE_TIMER" not in _flags("simple-rt", _rts(304, 312, 400, 488, None))


def test_a_4_ms_grid_is_fine() -> None:
    assert "COARSE_TIMER" not in _flags("simple-rt", _rts(304, 316, 400, 488, 520))


def test_float_rts_are_rounded_to_a_millionth_of_a_ms() -> None:
    assert "COARSE_TIMER" in _flags("simple-rt", _rts(304.0000001, 312, 400, 488, 520))
    assert "COARSE_TIMER" not in _flags("simple-rt", _rts(304.000001, 312, 400, 488, 520))


def test_anticipations_and_negative_rts_sit_on_the_grid_too() -> None:
    assert "COARSE_TIMER" in _flags("simple-rt", _rts(-16, 0, 48, 400, 520))


def test_a_60_hz_frame_grid_is_not_an_exact_grid() -> None:
    assert "COARSE_TIMER" not in _flags(
        "simple-rt", _rts(*(frame * 1000 / 60 for frame in range(20, 25)))
    )


# --- SUMMARY_MISMATCH -----------------------------------------------------------------------

SIMPLE_RT_TRIALS = _rts(250, 300, 350, 600)  # mean_rt 375


def test_summary_within_relative_tolerance_is_not_flagged() -> None:
    # Tolerances: 1e-6 * 375 for mean_rt, 1e-6 * 4 for n_trials, 1e-6 * max(1, 0) for n_timeouts.
    summary = {"mean_rt": 375.00037, "n_trials": 4.0000039, "n_timeouts": 0.0000009}
    assert "SUMMARY_MISMATCH" not in _flags("simple-rt", SIMPLE_RT_TRIALS, client_summary=summary)


def test_summary_beyond_relative_tolerance_is_flagged() -> None:
    summary = {"mean_rt": 375.00038, "n_trials": 4.0000041, "n_timeouts": 0.0000011, "n_lapses": 1}
    flag = _flags("simple-rt", SIMPLE_RT_TRIALS, client_summary=summary)["SUMMARY_MISMATCH"]
    assert flag.evidence == {
        "metrics": ["mean_rt", "n_timeouts", "n_trials"],
        "client": {"mean_rt": 375.00038, "n_trials": 4.0000041, "n_timeouts": 0.0000011},
        "server": {"mean_rt": 375.0, "n_trials": 4.0, "n_timeouts": 0.0},
    }


def test_summary_values_that_are_not_usable_numbers_are_not_compared() -> None:
    summary = {
        "mean_rt": "375",
        "median_rt": math.nan,
        "n_trials": True,
        "sd_rt": None,
        "n_responses": {"value": 4},
        "client_only": 1,
    }
    assert "SUMMARY_MISMATCH" not in _flags("simple-rt", SIMPLE_RT_TRIALS, client_summary=summary)
    # The server has no sd_rt for a single response, so the client's number is not compared.
    summary = {"sd_rt": 12.5}
    assert "SUMMARY_MISMATCH" not in _flags("simple-rt", _rts(300), client_summary=summary)


def test_no_summary_no_mismatch() -> None:
    assert "SUMMARY_MISMATCH" not in _flags("simple-rt", SIMPLE_RT_TRIALS, client_summary=None)


# --- MISSING_FIELD and UNRECOGNISED_CONDITION ----------------------------------------------


def _data_flags(task: str, trials: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    flags = task_flags(
        task, trials, score_task(task, trials), chance_accuracy=None, client_summary=None
    )
    data_codes = {"MISSING_FIELD", "UNRECOGNISED_CONDITION"}
    return [(flag.code, flag.evidence) for flag in flags if flag.code in data_codes]


def _flanker(*conditions: object) -> list[dict[str, Any]]:
    return [{"condition": condition, "rt": 413, "correct": True} for condition in conditions]


def test_flanker_with_short_condition_labels_is_flagged() -> None:
    assert _data_flags("flanker", _flanker("C", "I", "I", "C", "I")) == [
        (
            "UNRECOGNISED_CONDITION",
            {
                "field": "condition",
                "labels": ["I", "C"],
                "count": 5,
                "trials": 5,
                "allowed": ["congruent", "incongruent", "neutral"],
            },
        )
    ]


def test_recognised_labels_in_other_spellings_are_not_flagged() -> None:
    assert _data_flags("stroop", _flanker("Congruent", "IN_CONGRUENT", " neutral ")) == []
    cpt = [{"condition": c, "rt": None} for c in ("Non-Target", "NO_GO", "go", "TARGET")]
    assert _data_flags("cpt", cpt) == []


def test_missing_and_unrecognised_labels_are_told_apart() -> None:
    flags = _data_flags("flanker", _flanker("congruent", None, "sideways", 3))
    assert flags == [
        ("MISSING_FIELD", {"field": "condition", "count": 1, "trials": 4}),
        (
            "UNRECOGNISED_CONDITION",
            {
                "field": "condition",
                "labels": ["sideways", "<number>"],
                "count": 2,
                "trials": 4,
                "allowed": ["congruent", "incongruent", "neutral"],
            },
        ),
    ]


def test_digit_span_without_direction_is_flagged() -> None:
    trials = [{"span_length": 3 + i, "correct": True} for i in range(4)]
    assert score_task("digit-span", trials).metrics["total_correct"] == 0
    assert _data_flags("digit-span", trials) == [
        ("MISSING_FIELD", {"field": "direction", "count": 4, "trials": 4})
    ]


def test_each_field_gets_its_own_flag() -> None:
    trials: list[dict[str, Any]] = [
        {"direction": "sideways"},
        {"direction": "forward", "span_length": 0},
    ]
    assert [(code, evidence["field"]) for code, evidence in _data_flags("digit-span", trials)] == [
        ("UNRECOGNISED_CONDITION", "direction"),
        ("MISSING_FIELD", "span_length"),
        ("MISSING_FIELD", "correct"),
    ]


def test_unusable_values_count_as_missing() -> None:
    # n-back levels run from 0 to 9; a trail-making time cannot be negative.
    n_back = [{"level": 12, "condition": "target", "rt": 413}, {"level": 2, "condition": "target"}]
    assert _data_flags("n-back", n_back) == [
        ("MISSING_FIELD", {"field": "level", "count": 1, "trials": 2})
    ]
    trail = [{"part": "A", "rt": -5, "errors": 0}, {"part": "B", "rt": 61000}]
    assert _data_flags("trail-making", trail) == [
        ("MISSING_FIELD", {"field": "rt", "count": 1, "trials": 2}),
        ("MISSING_FIELD", {"field": "errors", "count": 1, "trials": 2}),
    ]


def test_the_ant_checks_cue_and_flanker() -> None:
    trials = [{"cue": "left", "flanker": "congruent", "correct": True, "rt": 413}]
    assert [evidence["field"] for _, evidence in _data_flags("ant", trials)] == ["cue"]


def test_compass_31_items_need_their_bounds_and_other_pros_do_not() -> None:
    items = [{"response": 1}, {"response": 2, "min": 0, "max": 4}]
    assert _data_flags("compass-31", items) == [
        ("MISSING_FIELD", {"field": "min", "count": 1, "trials": 2}),
        ("MISSING_FIELD", {"field": "max", "count": 1, "trials": 2}),
    ]
    assert _data_flags("mfis", items) == []
    assert _data_flags("mfis", [{"answer": 3}]) == [
        ("MISSING_FIELD", {"field": "response", "count": 1, "trials": 1})
    ]


def test_practice_trials_and_tasks_without_needed_fields_are_not_checked() -> None:
    practice = [{"condition": "C", "is_practice": True, "rt": 413, "correct": True}]
    assert _data_flags("flanker", practice) == []
    assert _data_flags("simple-rt", [{"condition": "C"}, {"foo": 1}]) == []
    assert _data_flags("wcst", [{"rt": 413}]) == []
    assert _data_flags("flanker", []) == []


def test_evidence_lists_at_most_ten_labels_each_cut_to_64_characters() -> None:
    labels = [f"label-{i}" for i in range(12)] + ["x" * 100]
    ((_, evidence),) = _data_flags("flanker", _flanker(*labels, "x" * 100))
    assert evidence["count"] == 14
    assert len(evidence["labels"]) == 10
    assert evidence["labels"][0] == "x" * 64


# --- session flags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_info", "evidence"),
    [
        ({"focus_lost": True}, {"focus_lost": True}),
        ({"backgrounded": True}, {"backgrounded": True}),
        ({"visibility_changes": 1}, {"visibility_changes": 1.0}),
        ({"focus_events": [{"at": "2025-01-01T00:00:00Z"}]}, {"focus_events": 1}),
        (
            {"focus_lost": True, "visibility_changes": 2, "platform": "ios"},
            {"focus_lost": True, "visibility_changes": 2.0},
        ),
    ],
)
def test_focus_lost_is_flagged(device_info: dict[str, Any], evidence: dict[str, Any]) -> None:
    flags = session_flags(device_info=device_info, clock_offset_seconds=None)
    assert flags == [Flag(code="FOCUS_LOST", task=None, evidence=evidence)]


@pytest.mark.parametrize(
    "device_info",
    [
        None,
        {},
        {"focus_lost": False},
        {"focus_lost": "true"},
        {"backgrounded": False},
        {"visibility_changes": 0},
        {"visibility_changes": "3"},
        {"focus_events": []},
        {"focus_events": "blur"},
    ],
)
def test_focus_kept_is_not_flagged(device_info: dict[str, Any] | None) -> None:
    assert session_flags(device_info=device_info, clock_offset_seconds=None) == []


@pytest.mark.parametrize("offset", [300.001, -300.001, 86400])
def test_clock_skew_beyond_five_minutes_is_flagged(offset: float) -> None:
    flags = session_flags(device_info=None, clock_offset_seconds=offset)
    assert [flag.code for flag in flags] == ["CLOCK_SKEW"]
    assert flags[0].task is None
    assert flags[0].evidence == {"clock_offset_seconds": offset, "limit_seconds": 300.0}


@pytest.mark.parametrize("offset", [300, -300, 0, None, math.nan, math.inf])
def test_clock_skew_up_to_five_minutes_is_not_flagged(offset: float | None) -> None:
    assert session_flags(device_info=None, clock_offset_seconds=offset) == []
