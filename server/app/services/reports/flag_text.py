"""Each validity flag code (app/scoring/flags.py, docs/scoring.md) as a sentence for a report.

The sentence uses the flag's evidence when it holds the numbers expected; otherwise, or for a
code this module does not know, a general sentence that still names the code, so a report never
fails on a flag it cannot explain in detail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.scoring.flags import FlagCode

Evidence = Mapping[str, Any]


def _percent(value: Any) -> str:
    return f"{float(value) * 100:.0f} %"


def _number(value: Any) -> str:
    number = float(value)
    return f"{number:.0f}" if number.is_integer() else f"{number:.2f}"


def _anticipations(e: Evidence) -> str:
    return (
        f"{_number(e['anticipations'])} of {_number(e['responses'])} responses "
        f"({_percent(e['share'])}) came faster than {_number(e['anticipation_limit_ms'])} ms, "
        f"more than the {_percent(e['share_limit'])} allowed: the participant may have responded "
        "before seeing the stimulus."
    )


def _timeouts(e: Evidence) -> str:
    return (
        f"{_number(e['timeouts'])} of {_number(e['trials_expecting_response'])} trials that "
        f"needed a response got none ({_percent(e['share'])}, more than the "
        f"{_percent(e['share_limit'])} allowed): the participant may have stopped attending."
    )


def _chance(e: Evidence) -> str:
    return (
        f"Accuracy was {_percent(e['accuracy'])}, at or below the {_percent(e['chance_accuracy'])}"
        " expected by guessing: the task may not have been understood or done in earnest."
    )


def _focus(e: Evidence) -> str:
    parts = []
    if e.get("focus_lost") or e.get("backgrounded"):
        parts.append("the window lost focus or went to the background")
    if "visibility_changes" in e:
        parts.append(f"the page was hidden {_number(e['visibility_changes'])} time(s)")
    if "focus_events" in e:
        parts.append(f"{_number(e['focus_events'])} focus change(s) were recorded")
    if not parts:
        raise KeyError("focus evidence")
    return f"During the session {'; '.join(parts)}: the participant may have been interrupted."


def _coarse_timer(e: Evidence) -> str:
    return (
        f"The {_number(e['n_rts'])} response times all fall on a grid of "
        f"{_number(e['grid_step_ms'])} ms (the limit is {_number(e['min_step_ms'])} ms): the "
        "device's timer is too coarse for fine reaction-time differences."
    )


def _clock_skew(e: Evidence) -> str:
    return (
        f"The device clock differed from the server's by {_number(e['clock_offset_seconds'])} s "
        f"(more than {_number(e['limit_seconds'])} s): times reported by the device may be off."
    )


def _mismatch(e: Evidence) -> str:
    metrics = ", ".join(str(m) for m in e["metrics"])
    return (
        f"The device's own summary disagreed with the server's scoring for: {metrics}. "
        "The server's values are the ones reported."
    )


def _device_estimate(e: Evidence) -> str:
    return (
        f"The device estimated theta = {_number(e['device_theta'])} (SE {_number(e['device_se'])}) "
        f"where the server's rescoring of the same answers gives theta = "
        f"{_number(e['server_theta'])} (SE {_number(e['server_se'])}): the server's values are "
        "the ones reported, and the device's adaptive test software may need checking."
    )


def _missing(e: Evidence) -> str:
    return (
        f"The field '{e['field']}' was missing or unusable in {_number(e['count'])} of "
        f"{_number(e['trials'])} scored trials: metrics that need it rest on fewer trials."
    )


def _unrecognised(e: Evidence) -> str:
    labels = ", ".join(str(label) for label in e["labels"])
    return (
        f"The field '{e['field']}' held values the scorer does not recognise ({labels}) in "
        f"{_number(e['count'])} of {_number(e['trials'])} scored trials: those trials were "
        "left out of the metrics that need it."
    )


# What each flag means, without numbers: the legend of the study report, and the fallback.
GENERAL: Mapping[str, str] = {
    FlagCode.ANTICIPATIONS_HIGH: (
        "More than 10 % of the responses came before 100 ms, faster than a real reaction."
    ),
    FlagCode.TIMEOUTS_HIGH: "More than 20 % of the trials that needed a response got none.",
    FlagCode.ACCURACY_AT_CHANCE: "Accuracy was at or below the level expected by guessing.",
    FlagCode.FOCUS_LOST: "The window lost focus or was hidden during the session.",
    FlagCode.COARSE_TIMER: "Response times fall on a coarse grid: the device timer is imprecise.",
    FlagCode.CLOCK_SKEW: "The device clock differed from the server's by more than 5 minutes.",
    FlagCode.SUMMARY_MISMATCH: "The device's own summary disagreed with the server's scoring.",
    FlagCode.MISSING_FIELD: "A field the scorer needs was missing or unusable in some trials.",
    FlagCode.UNRECOGNISED_CONDITION: "Some trials held a condition the scorer does not know.",
    FlagCode.DEVICE_ESTIMATE_DIFFERS: (
        "The device's adaptive test estimate differed from the server's rescoring."
    ),
}

_DETAILED: Mapping[str, Callable[[Evidence], str]] = {
    FlagCode.ANTICIPATIONS_HIGH: _anticipations,
    FlagCode.TIMEOUTS_HIGH: _timeouts,
    FlagCode.ACCURACY_AT_CHANCE: _chance,
    FlagCode.FOCUS_LOST: _focus,
    FlagCode.COARSE_TIMER: _coarse_timer,
    FlagCode.CLOCK_SKEW: _clock_skew,
    FlagCode.SUMMARY_MISMATCH: _mismatch,
    FlagCode.MISSING_FIELD: _missing,
    FlagCode.UNRECOGNISED_CONDITION: _unrecognised,
    FlagCode.DEVICE_ESTIMATE_DIFFERS: _device_estimate,
}


def general_sentence(code: str) -> str:
    return GENERAL.get(code, f"The scorer raised the flag {code}.")


def explain_flag(code: str, evidence: Any) -> str:
    """One sentence about one stored flag, its numbers included when the evidence has them."""
    detailed = _DETAILED.get(code)
    if detailed is not None and isinstance(evidence, Mapping):
        try:
            return detailed(evidence)
        except (KeyError, TypeError, ValueError):
            pass
    return general_sentence(code)
