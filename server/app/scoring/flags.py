"""Validity flags a researcher wants to see before trusting a task or a session.

Each flag carries the numbers that justify it. Definitions in docs/scoring.md, validity flags;
the thresholds in short:

- ANTICIPATIONS_HIGH: anticipations (rt < 100) are more than 10 % of the responses, for tasks
  whose `rt` is a reaction time (not trail-making, digit-span or PROs).
- TIMEOUTS_HIGH: more than 20 % of the trials that expected a response got none. Which trials
  expect one is the scorer's rule: every trial in simple-rt, choice-rt, flanker, stroop and the
  ANT; only targets in cpt-go-nogo and n-back (withholding on a non-target is correct); in generic
  tasks every trial except a response withheld and marked `correct: true`, and only when the task
  records reaction times at all. Never for trail-making, digit-span or PROs.
- ACCURACY_AT_CHANCE: the task's `accuracy` metric is at or below the module's `chance_accuracy`
  (with 1e-9 of slack so that 1/3 against 0.333... counts as "at").
- COARSE_TIMER: at least 5 response RTs (anticipations included) and their greatest common step,
  after rounding each RT to 1e-6 ms, is at least 8 ms. Same tasks as ANTICIPATIONS_HIGH. A
  60 Hz frame grid (16.67 ms steps) is not an exact grid and is therefore not detected.
- SUMMARY_MISMATCH: a metric that is a usable number in both the client's summary and the server's
  metrics differs by more than 1e-6 * max(1, |server value|). Booleans, NaN, ±inf and null on
  either side are not compared.
- FOCUS_LOST (session): device_info has `focus_lost: true`, `backgrounded: true`, a
  `visibility_changes` number above 0, or a non-empty `focus_events` list.
- CLOCK_SKEW (session): |clock_offset_seconds| is more than 300.
- DEVICE_ESTIMATE_DIFFERS (adaptive tests run offline): the θ or SE the device reported differs
  from the server's rescoring by more than `DEVICE_ESTIMATE_TOLERANCE` (docs/item-banks.md).

Data-quality flags, one per field, for the fields a scorer's metrics need (its `TrialFormat`):

- MISSING_FIELD: scored trials where the field is absent, null or holds a value the scorer cannot
  use (a label field's unknown values are UNRECOGNISED_CONDITION instead).
- UNRECOGNISED_CONDITION: scored trials whose label field (`condition`, `cue`, `flanker`,
  `direction`, `part`) holds a value the scorer does not recognise; the evidence names the 10
  most frequent such values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final

from app.scoring.base import TaskScore
from app.scoring.common import (
    ANTICIPATION_LIMIT_MS,
    ExpectedResponses,
    Metrics,
    Trial,
    as_number,
    response_rt,
    scored_trials,
)
from app.scoring.registry import canonical_task_id, scorer_for
from app.scoring.trial_format import TrialFormat

ANTICIPATION_SHARE_LIMIT: Final = Fraction(1, 10)
TIMEOUT_SHARE_LIMIT: Final = Fraction(1, 5)
CHANCE_SLACK: Final = 1e-9
COARSE_TIMER_MIN_RTS: Final = 5
COARSE_TIMER_MIN_STEP_MS: Final = 8
SUMMARY_RELATIVE_TOLERANCE: Final = 1e-6
CLOCK_SKEW_LIMIT_SECONDS: Final = 300.0
# Absolute, on θ and on its SE: far above the rounding of a faithful implementation of the
# estimator (about 1e-12), far below a difference that matters (0.001 of a T-score point).
DEVICE_ESTIMATE_TOLERANCE: Final = 1e-4
_TICKS_PER_MS: Final = 1_000_000
MAX_EVIDENCE_LABELS: Final = 10


class FlagCode(StrEnum):
    ANTICIPATIONS_HIGH = "ANTICIPATIONS_HIGH"
    TIMEOUTS_HIGH = "TIMEOUTS_HIGH"
    ACCURACY_AT_CHANCE = "ACCURACY_AT_CHANCE"
    FOCUS_LOST = "FOCUS_LOST"
    COARSE_TIMER = "COARSE_TIMER"
    CLOCK_SKEW = "CLOCK_SKEW"
    SUMMARY_MISMATCH = "SUMMARY_MISMATCH"
    MISSING_FIELD = "MISSING_FIELD"
    UNRECOGNISED_CONDITION = "UNRECOGNISED_CONDITION"
    DEVICE_ESTIMATE_DIFFERS = "DEVICE_ESTIMATE_DIFFERS"


@dataclass(frozen=True, slots=True)
class Flag:
    code: str
    task: str | None
    """None for session-level flags."""
    evidence: dict[str, Any]
    """JSON-serialisable numbers and strings that justify the flag."""


def task_flags(
    task: str,
    trials: Sequence[Trial],
    score: TaskScore,
    *,
    chance_accuracy: float | None,
    client_summary: Mapping[str, Any] | None,
) -> list[Flag]:
    task_id = canonical_task_id(task)
    scorer = scorer_for(task_id)
    scored = scored_trials(trials)
    measures_reaction_time = scorer.measures_reaction_time
    count_timeouts = scorer.count_timeouts
    # The response times, read once for the two flags that look at them.
    rts = [rt for trial in scored if (rt := response_rt(trial)) is not None]
    evidence_by_code: dict[FlagCode, dict[str, Any] | None] = {
        FlagCode.ANTICIPATIONS_HIGH: (
            _anticipations_evidence(rts) if measures_reaction_time else None
        ),
        FlagCode.TIMEOUTS_HIGH: (
            _timeouts_evidence(count_timeouts(scored)) if count_timeouts is not None else None
        ),
        FlagCode.ACCURACY_AT_CHANCE: _chance_evidence(score.metrics, chance_accuracy),
        FlagCode.COARSE_TIMER: _coarse_timer_evidence(rts) if measures_reaction_time else None,
        FlagCode.SUMMARY_MISMATCH: _mismatch_evidence(score.metrics, client_summary),
    }
    return _data_quality_flags(task_id, scorer.trial_format, scored) + [
        Flag(code=code.value, task=task_id, evidence=evidence)
        for code, evidence in evidence_by_code.items()
        if evidence is not None
    ]


def session_flags(
    *, device_info: Mapping[str, Any] | None, clock_offset_seconds: float | None
) -> list[Flag]:
    flags: list[Flag] = []
    focus_evidence = _focus_evidence(device_info)
    if focus_evidence is not None:
        flags.append(Flag(code=FlagCode.FOCUS_LOST.value, task=None, evidence=focus_evidence))
    offset = as_number(clock_offset_seconds)
    if offset is not None and abs(offset) > CLOCK_SKEW_LIMIT_SECONDS:
        evidence = {"clock_offset_seconds": offset, "limit_seconds": CLOCK_SKEW_LIMIT_SECONDS}
        flags.append(Flag(code=FlagCode.CLOCK_SKEW.value, task=None, evidence=evidence))
    return flags


def _data_quality_flags(
    task_id: str, trial_format: TrialFormat, scored: Sequence[Trial]
) -> list[Flag]:
    flags: list[Flag] = []
    for report in trial_format.field_reports(scored):
        field = report.field.name
        if report.missing:
            evidence = {"field": field, "count": report.missing, "trials": len(scored)}
            flags.append(Flag(code=FlagCode.MISSING_FIELD.value, task=task_id, evidence=evidence))
        if report.unrecognised:
            evidence = {
                "field": field,
                "labels": [
                    label for label, _ in report.unrecognised.most_common(MAX_EVIDENCE_LABELS)
                ],
                "count": report.unrecognised.total(),
                "trials": len(scored),
                "allowed": list(report.field.labels),
            }
            flags.append(
                Flag(code=FlagCode.UNRECOGNISED_CONDITION.value, task=task_id, evidence=evidence)
            )
    return flags


def _anticipations_evidence(rts: Sequence[float]) -> dict[str, Any] | None:
    """`rts`: the response times of the scored trials (a response is a usable `rt`)."""
    responses = len(rts)
    anticipations = sum(1 for rt in rts if rt < ANTICIPATION_LIMIT_MS)
    # Exact fractions: 1 in 10 is at the limit, not over it because of float rounding.
    if not responses or Fraction(anticipations, responses) <= ANTICIPATION_SHARE_LIMIT:
        return None
    return {
        "anticipations": anticipations,
        "responses": responses,
        "share": anticipations / responses,
        "share_limit": float(ANTICIPATION_SHARE_LIMIT),
        "anticipation_limit_ms": ANTICIPATION_LIMIT_MS,
    }


def _timeouts_evidence(counts: ExpectedResponses | None) -> dict[str, Any] | None:
    if counts is None or not counts.expected:
        return None
    if Fraction(counts.missing, counts.expected) <= TIMEOUT_SHARE_LIMIT:
        return None
    return {
        "timeouts": counts.missing,
        "trials_expecting_response": counts.expected,
        "share": counts.missing / counts.expected,
        "share_limit": float(TIMEOUT_SHARE_LIMIT),
    }


def _chance_evidence(metrics: Metrics, chance_accuracy: float | None) -> dict[str, Any] | None:
    accuracy = as_number(metrics.get("accuracy"))
    chance = as_number(chance_accuracy)
    if accuracy is None or chance is None or accuracy > chance + CHANCE_SLACK:
        return None
    return {"accuracy": accuracy, "chance_accuracy": chance}


def _grid_step_ms(rts: Sequence[float]) -> float | None:
    """Greatest common step of `rts` after rounding to 1e-6 ms; None when it is not defined."""
    ticks = []
    for rt in rts:
        scaled = rt * _TICKS_PER_MS
        if not math.isfinite(scaled):
            return None
        ticks.append(abs(round(scaled)))
    step = math.gcd(*ticks)
    return step / _TICKS_PER_MS if step else None


def _coarse_timer_evidence(rts: Sequence[float]) -> dict[str, Any] | None:
    if len(rts) < COARSE_TIMER_MIN_RTS:
        return None
    step = _grid_step_ms(rts)
    if step is None or step < COARSE_TIMER_MIN_STEP_MS:
        return None
    return {"n_rts": len(rts), "grid_step_ms": step, "min_step_ms": COARSE_TIMER_MIN_STEP_MS}


def _mismatch_evidence(
    server_metrics: Metrics, client_summary: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    if not isinstance(client_summary, Mapping):
        return None
    client_values: dict[str, float] = {}
    server_values: dict[str, float] = {}
    for metric, raw_server_value in server_metrics.items():
        server_value = as_number(raw_server_value)
        client_value = as_number(client_summary.get(metric))
        if server_value is None or client_value is None:
            continue
        tolerance = SUMMARY_RELATIVE_TOLERANCE * max(1.0, abs(server_value))
        if abs(client_value - server_value) > tolerance:
            client_values[metric] = client_value
            server_values[metric] = server_value
    if not client_values:
        return None
    return {"metrics": sorted(client_values), "client": client_values, "server": server_values}


def _focus_evidence(device_info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(device_info, Mapping):
        return None
    evidence: dict[str, Any] = {}
    for key in ("focus_lost", "backgrounded"):
        if device_info.get(key) is True:
            evidence[key] = True
    visibility_changes = as_number(device_info.get("visibility_changes"))
    if visibility_changes is not None and visibility_changes > 0:
        evidence["visibility_changes"] = visibility_changes
    focus_events = device_info.get("focus_events")
    if isinstance(focus_events, list | tuple) and focus_events:
        evidence["focus_events"] = len(focus_events)
    return evidence or None


def device_estimate_flag(
    task: str,
    *,
    server_theta: float,
    server_se: float,
    device_theta: float,
    device_se: float,
    tolerance: float = DEVICE_ESTIMATE_TOLERANCE,
) -> Flag | None:
    """DEVICE_ESTIMATE_DIFFERS when the device's θ or SE is more than `tolerance` away from the
    server's; the evidence names both pairs of values and the differences."""
    theta_diff = abs(device_theta - server_theta)
    se_diff = abs(device_se - server_se)
    if not (theta_diff > tolerance or se_diff > tolerance):
        return None
    return Flag(
        code=FlagCode.DEVICE_ESTIMATE_DIFFERS.value,
        task=task,
        evidence={
            "device_theta": device_theta,
            "device_se": device_se,
            "server_theta": server_theta,
            "server_se": server_se,
            "theta_difference": theta_diff,
            "se_difference": se_diff,
            "tolerance": tolerance,
        },
    )
