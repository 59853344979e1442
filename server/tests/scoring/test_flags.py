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
