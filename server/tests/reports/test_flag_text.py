"""Every validity flag code reads as a sentence, with its evidence when it has the numbers."""

from __future__ import annotations

import pytest

from app.scoring.flags import FlagCode
from app.services.reports.flag_text import GENERAL, explain_flag, general_sentence

EVIDENCE: dict[FlagCode, dict[str, object]] = {
    FlagCode.ANTICIPATIONS_HIGH: {
        "anticipations": 3,
        "responses": 20,
        "share": 0.15,
        "share_limit": 0.1,
        "anticipation_limit_ms": 100,
    },
    FlagCode.TIMEOUTS_HIGH: {
        "timeouts": 6,
        "trials_expecting_response": 20,
        "share": 0.3,
        "share_limit": 0.2,
    },
    FlagCode.ACCURACY_AT_CHANCE: {"accuracy": 0.5, "chance_accuracy": 0.5},
    FlagCode.FOCUS_LOST: {"backgrounded": True, "visibility_changes": 2},
    FlagCode.COARSE_TIMER: {"n_rts": 40, "grid_step_ms": 16.0, "min_step_ms": 8},
    FlagCode.CLOCK_SKEW: {"clock_offset_seconds": -420.5, "limit_seconds": 300.0},
    FlagCode.SUMMARY_MISMATCH: {
        "metrics": ["mean_rt"],
        "client": {"mean_rt": 1.0},
        "server": {"mean_rt": 2.0},
    },
    FlagCode.MISSING_FIELD: {"field": "rt", "count": 4, "trials": 20},
    FlagCode.UNRECOGNISED_CONDITION: {
        "field": "condition",
        "labels": ["<b>odd"],
        "count": 2,
        "trials": 20,
        "allowed": ["congruent"],
    },
    FlagCode.DEVICE_ESTIMATE_DIFFERS: {
        "device_theta": 0.52,
        "device_se": 0.31,
        "server_theta": 0.4,
        "server_se": 0.29,
        "theta_difference": 0.12,
        "se_difference": 0.02,
        "tolerance": 0.0001,
    },
}
NUMBERS: dict[FlagCode, tuple[str, ...]] = {
    FlagCode.ANTICIPATIONS_HIGH: ("3 of 20", "15 %", "100 ms"),
    FlagCode.TIMEOUTS_HIGH: ("6 of 20", "30 %", "20 %"),
    FlagCode.ACCURACY_AT_CHANCE: ("50 %",),
    FlagCode.FOCUS_LOST: ("hidden 2 time(s)",),
    FlagCode.COARSE_TIMER: ("40", "16 ms"),
    FlagCode.CLOCK_SKEW: ("-420.50 s", "300 s"),
    FlagCode.SUMMARY_MISMATCH: ("mean_rt",),
    FlagCode.MISSING_FIELD: ("'rt'", "4 of 20"),
    FlagCode.UNRECOGNISED_CONDITION: ("<b>odd", "2 of 20"),
    FlagCode.DEVICE_ESTIMATE_DIFFERS: ("theta = 0.52", "SE 0.31", "theta = 0.40", "SE 0.29"),
}


@pytest.mark.parametrize("code", list(FlagCode))
def test_every_code_has_a_sentence_with_its_numbers(code: FlagCode) -> None:
    assert code in GENERAL
    sentence = explain_flag(code.value, EVIDENCE[code])
    assert sentence.endswith(".")
    for part in NUMBERS[code]:
        assert part in sentence, (code, sentence)


@pytest.mark.parametrize("evidence", [None, {}, {"share": "lots"}, ["not", "a", "mapping"]])
def test_evidence_it_cannot_read_falls_back_to_the_general_sentence(evidence: object) -> None:
    for code in FlagCode:
        assert explain_flag(code.value, evidence) == GENERAL[code]


def test_an_unknown_code_is_named() -> None:
    assert explain_flag("NEW_FLAG", {"x": 1}) == "The scorer raised the flag NEW_FLAG."
    assert general_sentence("NEW_FLAG") == "The scorer raised the flag NEW_FLAG."
