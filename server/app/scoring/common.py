"""Rules shared by every scorer: reading untrusted trial fields, RT statistics and d'.

The submit endpoint refuses values of the wrong JSON type in the fields it types (`rt`,
`trial_index`, `correct`, `is_practice` and each scorer's numeric fields), but scoring is also
run on stored documents and on anything a caller passes, so every field is read defensively and
a value that cannot be used is treated exactly as if it were missing:

- Numbers (`rt`, PRO `response`, `min`, `max`, `visibility_changes`): JSON numbers only, that is
  `int` or `float`, finite and within float range. Booleans, strings (even "350"), NaN, ±inf and
  anything else are missing. A missing `rt` means "no response".
- Any usable `rt` is a response, zero and negative values included; below 100 ms it is an
  anticipation (a negative rt is a key already down at stimulus onset, not an absent response).
- Counts (`level`, `span_length`, `errors`): non-negative integers; an integral float such as
  `2.0` counts, `2.5` does not.
- `correct`, `is_practice`, `reverse`: only JSON `true`/`false`. A missing `correct` is not
  correct; a missing `is_practice` means the trial is scored.
- Labels (`condition`, `cue`, `flanker`, `direction`, `part`): strings compared after trimming,
  case-folding and dropping `-`, `_` and spaces, so "Non-Target" and "NO_GO" are recognised.
  An unknown label is missing.
- An entry of the trial list that is not a mapping is ignored.
- A statistic that would leave float range (only absurd inputs get there) is null.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Trial = Mapping[str, Any]
MetricValue = float | int | None
Metrics = dict[str, MetricValue]
MetricsFunction = Callable[[Sequence[Trial]], Metrics]

ANTICIPATION_LIMIT_MS: Final = 100.0
TARGET: Final = "target"
NONTARGET: Final = "nontarget"
_TARGET_LABELS: Final = {"target": TARGET, "go": TARGET, "nontarget": NONTARGET, "nogo": NONTARGET}
TARGET_LABELS: Final = tuple(_TARGET_LABELS)
"""`condition` labels of respond-to-targets tasks, canonical spelling."""
_STANDARD_NORMAL: Final = statistics.NormalDist()
# Integers up to 2**53 convert to float exactly and never overflow: the fast path of `as_number`.
_EXACT_INT_LIMIT: Final = 2**53


# --- reading fields -------------------------------------------------------------------------


def as_number(value: object) -> float | None:
    # The common cases first (exact types, no subclass checks): scoring reads every trial's rt
    # several times.
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int and -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return number if math.isfinite(number) else None


def as_count(value: object) -> int | None:
    number = as_number(value)
    if number is None or number < 0 or not number.is_integer():
        return None
    return int(number)


def as_flag(value: object) -> bool | None:
    return value if value is True or value is False else None


def as_label(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    label = _LABELS.get(value)
    if label is None:
        label = _normalised_label(value)
        if len(_LABELS) < _LABELS_REMEMBERED:
            _LABELS[value] = label
    return label or None


# A task's labels are a handful of strings repeated over hundreds of trials: each is normalised
# once per process. Bounded, since the strings come from clients.
_LABELS: dict[str, str] = {}
_LABELS_REMEMBERED: Final = 4096


def _normalised_label(value: str) -> str:
    label = value.strip().casefold()
    for separator in ("-", "_", " "):
        label = label.replace(separator, "")
    return label


def scored_trials(trials: Iterable[object]) -> list[Trial]:
    """The trials that count: mappings not marked `is_practice: true`."""
    return [
        trial
        for trial in trials
        # `type(...) is dict` first: the ABC check is slow and almost every trial is a dict.
        if (type(trial) is dict or isinstance(trial, Mapping))
        and trial.get("is_practice") is not True
    ]


def response_rt(trial: Trial) -> float | None:
    return as_number(trial.get("rt"))


def has_response(trial: Trial) -> bool:
    return response_rt(trial) is not None


def is_correct(trial: Trial) -> bool:
    return trial.get("correct") is True


def is_anticipation(trial: Trial) -> bool:
    rt = response_rt(trial)
    return rt is not None and rt < ANTICIPATION_LIMIT_MS


def target_kind(trial: Trial) -> str | None:
    """`TARGET` or `NONTARGET` from `condition`, where `go`/`nogo` mean the same."""
    label = as_label(trial.get("condition"))
    return _TARGET_LABELS.get(label) if label is not None else None


# --- counting and statistics ----------------------------------------------------------------


def count_responses(trials: Iterable[Trial]) -> int:
    return sum(1 for trial in trials if has_response(trial))


def count_anticipations(trials: Iterable[Trial]) -> int:
    return sum(1 for trial in trials if is_anticipation(trial))


def has_correctness(trials: Iterable[Trial]) -> bool:
    """Whether the task reports correctness at all: some trial carries a boolean `correct`."""
    return any(as_flag(trial.get("correct")) is not None for trial in trials)


def statistic_rts(trials: Iterable[Trial], *, correct_only: bool) -> list[float]:
    """RTs that enter RT statistics: responses of at least 100 ms, correct ones if asked."""
    return [
        rt
        for trial in trials
        if (rt := response_rt(trial)) is not None
        and rt >= ANTICIPATION_LIMIT_MS
        and (not correct_only or is_correct(trial))
    ]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _finite_statistic(
    values: Sequence[float], statistic: Callable[[Sequence[float]], float], *, minimum: int = 1
) -> float | None:
    """`statistic(values)`, or None with fewer than `minimum` values or a result that is not a
    finite number (huge values overflow)."""
    if len(values) < minimum:
        return None
    try:
        return finite_or_none(float(statistic(values)))
    except OverflowError:
        return None


def mean_or_none(values: Sequence[float]) -> float | None:
    return _finite_statistic(values, statistics.fmean)


def median_or_none(values: Sequence[float]) -> float | None:
    return _finite_statistic(values, statistics.median)


def sample_sd_or_none(values: Sequence[float]) -> float | None:
    return _finite_statistic(values, statistics.stdev, minimum=2)


def sum_or_none(values: Sequence[float]) -> float | None:
    return _finite_statistic(values, math.fsum)


def rt_statistics(trials: Iterable[Trial], *, correct_only: bool, suffix: str = "") -> Metrics:
    """`mean_rt`, `median_rt` and `sd_rt` (names end with `suffix`) over `statistic_rts`."""
    rts = statistic_rts(trials, correct_only=correct_only)
    return {
        f"mean_rt{suffix}": mean_or_none(rts),
        f"median_rt{suffix}": median_or_none(rts),
        f"sd_rt{suffix}": sample_sd_or_none(rts),
    }


def proportion(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def accuracy(trials: Sequence[Trial]) -> float | None:
    """Correct trials over all given trials; a trial without a usable `correct` is not correct."""
    return proportion(sum(1 for trial in trials if is_correct(trial)), len(trials))


def difference(minuend: float | None, subtrahend: float | None) -> float | None:
    if minuend is None or subtrahend is None:
        return None
    return finite_or_none(minuend - subtrahend)


# --- signal detection -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoNoGoCounts:
    """Outcome counts of a respond-to-targets task, where a response is any usable `rt`."""

    targets: int
    hits: int
    nontargets: int
    false_alarms: int

    @property
    def omissions(self) -> int:
        return self.targets - self.hits

    @property
    def correct_rejections(self) -> int:
        return self.nontargets - self.false_alarms

    @property
    def accuracy(self) -> float | None:
        return proportion(self.hits + self.correct_rejections, self.targets + self.nontargets)

    @property
    def hit_rate(self) -> float | None:
        return proportion(self.hits, self.targets)

    @property
    def false_alarm_rate(self) -> float | None:
        return proportion(self.false_alarms, self.nontargets)

    def _z_scores(self) -> tuple[float, float] | None:
        # Sensitivity needs both signal and noise trials; the log-linear correction handles
        # extreme rates, not an empty denominator, so d' is null without targets or non-targets.
        if not self.targets or not self.nontargets:
            return None
        corrected_hit_rate = (self.hits + 0.5) / (self.targets + 1)
        corrected_false_alarm_rate = (self.false_alarms + 0.5) / (self.nontargets + 1)
        return (
            _STANDARD_NORMAL.inv_cdf(corrected_hit_rate),
            _STANDARD_NORMAL.inv_cdf(corrected_false_alarm_rate),
        )

    @property
    def d_prime(self) -> float | None:
        z_scores = self._z_scores()
        return None if z_scores is None else z_scores[0] - z_scores[1]

    @property
    def criterion(self) -> float | None:
        z_scores = self._z_scores()
        if z_scores is None:
            return None
        # Adding 0.0 turns the -0.0 of a perfectly neutral criterion into 0.0.
        return -(z_scores[0] + z_scores[1]) / 2 + 0.0


def count_go_nogo(trials: Iterable[Trial]) -> GoNoGoCounts:
    """Counts over trials whose `condition` says target or non-target; others are unscorable."""
    targets = hits = nontargets = false_alarms = 0
    for trial in trials:
        kind = target_kind(trial)
        if kind == TARGET:
            targets += 1
            if has_response(trial):
                hits += 1
        elif kind == NONTARGET:
            nontargets += 1
            if has_response(trial):
                false_alarms += 1
    return GoNoGoCounts(
        targets=targets, hits=hits, nontargets=nontargets, false_alarms=false_alarms
    )


def hit_rts(trials: Iterable[Trial]) -> list[float]:
    """RTs of hits (targets with a response) that enter RT statistics (rt ≥ 100)."""
    return statistic_rts((t for t in trials if target_kind(t) == TARGET), correct_only=False)


# --- which missing responses are timeouts ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpectedResponses:
    """Trials on which a response was expected, and how many of them got none."""

    expected: int
    missing: int


def every_trial_expects_response(trials: Sequence[Trial]) -> ExpectedResponses | None:
    scored = scored_trials(trials)
    return ExpectedResponses(expected=len(scored), missing=len(scored) - count_responses(scored))


def targets_expect_response(trials: Sequence[Trial]) -> ExpectedResponses | None:
    """Only targets expect a response: withholding on a non-target is the correct answer."""
    counts = count_go_nogo(scored_trials(trials))
    return ExpectedResponses(expected=counts.targets, missing=counts.omissions)
