"""Likert patient-reported outcomes: each trial is an item with a numeric `response`.

Scale bounds come from the item's own `min`/`max` when usable, else from the instrument's
defaults below. A response outside its bounds is unusable and leaves the item unanswered. An item
with `reverse: true` scores as (min + max - response); without known bounds it cannot be reversed
and stays unanswered, while a plain item without bounds scores as given. `raw_score` (sum) and
`mean_score` are null when no item is answered. Item-bank scoring (theta, se, t_score) is not done
here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from app.scoring.base import Scorer
from app.scoring.common import (
    Metrics,
    Trial,
    as_flag,
    as_number,
    finite_or_none,
    scored_trials,
    sum_or_none,
)
from app.scoring.trial_format import TrialField, TrialFormat, boolean_field, number_field


@dataclass(frozen=True, slots=True)
class ScaleBounds:
    low: float
    high: float


_ZERO_TO_FOUR: Final = ScaleBounds(low=0, high=4)

DEFAULT_SCALE_BOUNDS: Final[Mapping[str, ScaleBounds | None]] = MappingProxyType(
    {
        "brain-fog-scale": _ZERO_TO_FOUR,
        # Item ranges differ within COMPASS-31 (0-1 up to 0-10): its items must carry min/max.
        "compass-31": None,
        "facs": _ZERO_TO_FOUR,
        "mfis": _ZERO_TO_FOUR,
        # Five-point PROMIS items; the 0-10 pain-intensity item must carry its own min/max.
        "promis-pediatric-profile-25": _ZERO_TO_FOUR,
    }
)

SCORER_NAME: Final = "likert-pro"
SCORER_VERSION: Final = "likert-pro/1.0.0"


def _item_bounds(item: Trial, default: ScaleBounds | None) -> ScaleBounds | None:
    low = as_number(item.get("min"))
    high = as_number(item.get("max"))
    if low is None and default is not None:
        low = default.low
    if high is None and default is not None:
        high = default.high
    if low is None or high is None or low >= high:
        return None
    return ScaleBounds(low=low, high=high)


def _item_score(item: Trial, default: ScaleBounds | None) -> float | None:
    response = as_number(item.get("response"))
    if response is None:
        return None
    reverse = as_flag(item.get("reverse")) is True
    bounds = _item_bounds(item, default)
    if bounds is None:
        return None if reverse else response
    if not bounds.low <= response <= bounds.high:
        return None
    return finite_or_none(bounds.low + bounds.high - response) if reverse else response


def likert_metrics(trials: Sequence[Trial], default: ScaleBounds | None) -> Metrics:
    items = scored_trials(trials)
    item_scores = [score for item in items if (score := _item_score(item, default)) is not None]
    raw_score = sum_or_none(item_scores)
    return {
        "n_items": len(items),
        "n_answered": len(item_scores),
        "raw_score": raw_score,
        "mean_score": None if raw_score is None else raw_score / len(item_scores),
    }


_RESPONSE: Final = number_field(
    "response",
    description="The answer's position on the item's scale; null or absent: unanswered.",
    required=True,
)
_REVERSE: Final = boolean_field(
    "reverse", description="A reverse-keyed item, scored as min + max - response."
)


def _bound_field(name: str, *, required: bool) -> TrialField[float]:
    which = "Lowest" if name == "min" else "Highest"
    return number_field(
        name,
        description=f"{which} answer of the item's scale; overrides the instrument's default.",
        required=required,
    )


def _trial_format(default: ScaleBounds | None) -> TrialFormat:
    if default is None:
        description = (
            "One questionnaire item per trial. The items' ranges differ, so each item carries its"
            " own `min` and `max`."
        )
        example: tuple[Trial, ...] = (
            {"response": 1, "min": 0, "max": 1},
            {"response": 0, "min": 0, "max": 1},
            {"response": 2, "min": 0, "max": 3},
            {"response": 4, "min": 0, "max": 10},
            {"response": 7, "min": 0, "max": 10, "reverse": True},
        )
    else:
        description = (
            f"One questionnaire item per trial, answered from {default.low:g} to"
            f" {default.high:g} unless the item carries its own `min` and `max`."
        )
        example = (
            {"response": 1},
            {"response": 3},
            {"response": 0},
            {"response": 2, "reverse": True},
            {"response": 4},
        )
    return TrialFormat(
        description=description,
        fields=(
            _RESPONSE,
            _REVERSE,
            _bound_field("min", required=default is None),
            _bound_field("max", required=default is None),
        ),
        example=example,
    )


def scorer_for_instrument(instrument: str) -> Scorer:
    default = DEFAULT_SCALE_BOUNDS[instrument]

    def instrument_metrics(trials: Sequence[Trial]) -> Metrics:
        return likert_metrics(trials, default)

    return Scorer(
        name=SCORER_NAME,
        version=SCORER_VERSION,
        compute_metrics=instrument_metrics,
        # An item's answer time is no reaction time, and an unanswered item is no timeout.
        measures_reaction_time=False,
        count_timeouts=None,
        trial_format=_trial_format(default),
    )


SCORERS: Final[Mapping[str, Scorer]] = MappingProxyType(
    {instrument: scorer_for_instrument(instrument) for instrument in DEFAULT_SCALE_BOUNDS}
)
