"""Shared rules: reading untrusted fields, RT statistics and the log-linear d'."""

from __future__ import annotations

import math
from statistics import NormalDist
from types import MappingProxyType
from typing import Any

import pytest

from app.scoring import common
from app.scoring.common import (
    GoNoGoCounts,
    as_count,
    as_label,
    as_number,
    mean_or_none,
    median_or_none,
    rt_statistics,
    sample_sd_or_none,
    scored_trials,
)

z = NormalDist().inv_cdf


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (350, 350.0),
        (350.5, 350.5),
        (-20, -20.0),
        (0, 0.0),
        (True, None),
        (False, None),
        ("350", None),
        (None, None),
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        (10**400, None),
        # Either side of the exact-integer fast path (2**53) gives what float() gives.
        (2**53, float(2**53)),
        (-(2**53), -float(2**53)),
        (2**53 + 1, float(2**53 + 1)),
        (10**300, 1e300),
        ([350], None),
        ({"rt": 350}, None),
    ],
)
def test_only_finite_json_numbers_are_numbers(value: object, expected: float | None) -> None:
    assert as_number(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (3.0, 3), (0, 0), (3.5, None), (-1, None), (True, None), ("3", None)],
)
def test_counts_are_non_negative_integers(value: object, expected: int | None) -> None:
    assert as_count(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Target", "target"),
        (" NoGo ", "nogo"),
        ("NO_GO", "nogo"),
        ("non-target", "nontarget"),
        ("", None),
        (1, None),
        (None, None),
    ],
)
def test_labels_ignore_case_spacing_and_separators(value: object, expected: str | None) -> None:
    assert as_label(value) == expected


def test_a_label_read_again_is_read_the_same_and_the_remembered_set_is_bounded() -> None:
    for _ in range(2):
        assert as_label(" Non_Target ") == "nontarget"
        assert as_label(" - ") is None
    many = [f"Label-{index}" for index in range(common._LABELS_REMEMBERED + 10)]
    assert [as_label(value) for value in many] == [f"label{index}" for index in range(len(many))]
    assert len(common._LABELS) <= common._LABELS_REMEMBERED


def test_a_mapping_that_is_not_a_dict_is_a_trial_too() -> None:
    trials: list[Any] = [MappingProxyType({"rt": 1}), MappingProxyType({"is_practice": True})]
    assert scored_trials(trials) == trials[:1]


def test_practice_trials_and_non_mappings_are_not_scored() -> None:
    kept: list[Any] = [{"rt": 1}, {"rt": 2, "is_practice": False}, {"rt": 3, "is_practice": "true"}]
    dropped: list[Any] = [{"rt": 4, "is_practice": True}, "not a trial", None, 5]
    assert scored_trials(kept + dropped) == kept


def test_rt_statistics_exclude_anticipations_missing_and_incorrect() -> None:
    trials: list[dict[str, Any]] = [
        {"rt": 99.999, "correct": True},
        {"rt": 100, "correct": True},
        {"rt": 300, "correct": True},
        {"rt": 500, "correct": True},
        {"rt": 800, "correct": False},
        {"rt": None, "correct": True},
        {"rt": 700},
    ]
    # Correct trials with rt >= 100: 100, 300, 500.
    assert rt_statistics(trials, correct_only=True) == pytest.approx(
        {"mean_rt": 300.0, "median_rt": 300.0, "sd_rt": 200.0}, abs=1e-6
    )
    # Any response with rt >= 100: 100, 300, 500, 800, 700; squared deviations from 480 sum
    # to 144400 + 32400 + 400 + 102400 + 48400 = 328000.
    assert rt_statistics(trials, correct_only=False, suffix="_all") == pytest.approx(
        {"mean_rt_all": 480.0, "median_rt_all": 500.0, "sd_rt_all": math.sqrt(328000 / 4)},
        abs=1e-6,
    )


def test_statistics_over_too_few_values_are_null() -> None:
    assert mean_or_none([]) is None
    assert median_or_none([]) is None
    assert sample_sd_or_none([]) is None
    assert sample_sd_or_none([420.0]) is None
    assert median_or_none([420.0]) == 420.0


def test_statistics_out_of_float_range_are_null_not_errors() -> None:
    assert mean_or_none([1.7e308, 1.7e308]) is None
    assert median_or_none([1.7e308, 1.7e308]) is None
    assert sample_sd_or_none([1.7e308, -1.7e308]) is None


def test_d_prime_uses_the_log_linear_correction() -> None:
    counts = GoNoGoCounts(targets=20, hits=18, nontargets=80, false_alarms=8)
    hit_z, false_alarm_z = z(18.5 / 21), z(8.5 / 81)
    assert counts.d_prime == pytest.approx(hit_z - false_alarm_z, abs=1e-6)
    assert counts.criterion == pytest.approx(-(hit_z + false_alarm_z) / 2, abs=1e-6)
    assert counts.hit_rate == pytest.approx(0.9, abs=1e-6)
    assert counts.false_alarm_rate == pytest.approx(0.1, abs=1e-6)
    # Written out: z(0.880952) = 1.180. z(0.104938) = -1.254.
    assert counts.d_prime == pytest.approx(2.4336, abs=1e-3)


def test_perfect_and_null_performance_stay_finite() -> None:
    perfect = GoNoGoCounts(targets=10, hits=10, nontargets=10, false_alarms=0)
    assert perfect.d_prime == pytest.approx(z(10.5 / 11) - z(0.5 / 11), abs=1e-6)
    neutral = GoNoGoCounts(targets=10, hits=5, nontargets=10, false_alarms=5)
    assert neutral.d_prime == 0.0
    assert neutral.criterion == 0.0
    assert math.copysign(1.0, neutral.criterion) == 1.0


def test_d_prime_needs_targets_and_nontargets() -> None:
    no_targets = GoNoGoCounts(targets=0, hits=0, nontargets=10, false_alarms=2)
    assert no_targets.d_prime is None
    assert no_targets.criterion is None
    assert no_targets.hit_rate is None
    assert no_targets.false_alarm_rate == pytest.approx(0.2)
    no_nontargets = GoNoGoCounts(targets=10, hits=2, nontargets=0, false_alarms=0)
    assert no_nontargets.d_prime is None
    assert no_nontargets.false_alarm_rate is None
