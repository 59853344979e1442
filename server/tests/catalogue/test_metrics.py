import pytest

from app.catalogue import (
    MODULE_IDS,
    TaskConfigError,
    chance_accuracy_for,
    get_module,
    list_modules,
)

# Metric names exactly as docs/scoring.md (metrics) defines them for the first-wave tasks.
FIRST_WAVE_METRICS: dict[str, list[str]] = {
    "simple-rt": [
        "n_trials",
        "n_responses",
        "n_timeouts",
        "n_anticipations",
        "mean_rt",
        "median_rt",
        "sd_rt",
        "n_lapses",
    ],
    "choice-rt": ["n_trials", "accuracy", "mean_rt", "median_rt", "sd_rt", "n_anticipations"],
    "cpt-go-nogo": [
        "n_targets",
        "n_nontargets",
        "hits",
        "omissions",
        "commissions",
        "correct_rejections",
        "hit_rate",
        "false_alarm_rate",
        "accuracy",
        "mean_rt_hits",
        "sd_rt_hits",
        "d_prime",
        "criterion",
    ],
    "n-back": [
        "hits_1",
        "false_alarms_1",
        "accuracy_1",
        "d_prime_1",
        "mean_rt_hits_1",
        "hits_2",
        "false_alarms_2",
        "accuracy_2",
        "d_prime_2",
        "mean_rt_hits_2",
        "hits_3",
        "false_alarms_3",
        "accuracy_3",
        "d_prime_3",
        "mean_rt_hits_3",
        "accuracy",
        "d_prime",
    ],
    "digit-span": [
        "max_span_forward",
        "max_span_backward",
        "total_correct_forward",
        "total_correct_backward",
        "total_correct",
    ],
    "trail-making": ["time_a", "time_b", "errors_a", "errors_b", "b_minus_a", "b_over_a"],
    "flanker": [
        "accuracy",
        "accuracy_congruent",
        "accuracy_incongruent",
        "mean_rt_congruent",
        "mean_rt_incongruent",
        "interference_rt",
        "interference_accuracy",
    ],
    "stroop": [
        "accuracy",
        "accuracy_congruent",
        "accuracy_incongruent",
        "mean_rt_congruent",
        "mean_rt_incongruent",
        "interference_rt",
        "interference_accuracy",
    ],
    "attention-network-test": ["alerting", "orienting", "executive", "accuracy", "mean_rt"],
}
PRO_METRICS = ["n_items", "n_answered", "raw_score", "mean_score"]
GENERIC_METRICS = [
    "n_trials",
    "n_responses",
    "n_anticipations",
    "accuracy",
    "mean_rt",
    "median_rt",
    "sd_rt",
]


@pytest.mark.parametrize(("module_id", "expected"), FIRST_WAVE_METRICS.items())
def test_first_wave_metrics_match_scoring(module_id: str, expected: list[str]) -> None:
    assert get_module(module_id).summary_metrics == expected


def test_cpt_alias_reports_cpt_metrics() -> None:
    assert get_module("cpt").summary_metrics == FIRST_WAVE_METRICS["cpt-go-nogo"]


def test_pros_report_pro_metrics() -> None:
    for module in list_modules(kind="pro"):
        assert module.summary_metrics == PRO_METRICS


def test_other_cognitive_tasks_report_generic_metrics() -> None:
    others = [m for m in list_modules(kind="cognitive") if m.id not in FIRST_WAVE_METRICS]
    assert len(others) == 36 - 5 - len(FIRST_WAVE_METRICS)
    for module in others:
        assert module.summary_metrics == GENERIC_METRICS, module.id


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_metric_names_are_unique(module_id: str) -> None:
    metrics = get_module(module_id).summary_metrics
    assert len(metrics) == len(set(metrics))


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_chance_accuracy_is_none_or_strictly_between_0_and_1(module_id: str) -> None:
    chance = get_module(module_id).chance_accuracy
    assert chance is None or 0 < chance < 1


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_declared_chance_is_the_chance_of_the_default_config(module_id: str) -> None:
    assert chance_accuracy_for(module_id, {}) == get_module(module_id).chance_accuracy


@pytest.mark.parametrize(
    ("module_id", "expected"),
    [
        ("choice-rt", 1 / 3),
        ("flanker", 0.5),
        ("stroop", 0.5),
        ("attention-network-test", 0.5),
        ("cpt-go-nogo", 0.7),
        ("n-back", 0.7),
        ("wcst", 0.25),
        ("digit-symbol-coding", 1 / 9),
        ("multiple-object-tracking", 1 / 56),
        ("simple-rt", None),
        ("digit-span", None),
        ("trail-making", None),
        ("delay-discounting", None),
    ],
)
def test_declared_chance_levels(module_id: str, expected: float | None) -> None:
    chance = get_module(module_id).chance_accuracy
    if expected is None:
        assert chance is None
    else:
        assert chance == pytest.approx(expected)


def test_pros_have_no_chance_level() -> None:
    assert all(module.chance_accuracy is None for module in list_modules(kind="pro"))


@pytest.mark.parametrize(
    ("module_id", "config", "expected"),
    [
        ("choice-rt", {"n_choices": 4}, 0.25),
        ("stroop", {"n_colors": 4}, 0.25),
        ("cpt", {"target_frequency": 0.6}, 0.6),
        ("cpt", {"target_frequency": 0.2}, 0.8),
        ("source-memory", {"n_sources": 3}, 0.25),
        ("emotion-recognition", {"emotions": ["happiness", "sadness"]}, 0.5),
        ("multiple-object-tracking", {"n_objects": 4, "n_targets": 1}, 0.25),
        ("verbal-paired-associates", {"response_mode": "typed_recall"}, None),
    ],
)
def test_chance_follows_the_configuration(
    module_id: str, config: dict[str, object], expected: float | None
) -> None:
    chance = chance_accuracy_for(module_id, config)
    if expected is None:
        assert chance is None
    else:
        assert chance == pytest.approx(expected)


def test_chance_of_an_invalid_configuration_is_refused() -> None:
    with pytest.raises(TaskConfigError):
        chance_accuracy_for("choice-rt", {"n_choices": 1})
