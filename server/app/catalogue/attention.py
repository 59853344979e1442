"""Attention: ANT, choice RT, CPT/go-no-go, divided attention, flanker, MOT, vigilance CPT."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.catalogue import params as p
from app.catalogue.builder import define_module
from app.catalogue.chance import fixed, majority_response, one_in
from app.catalogue.checks import at_most, at_most_sum, below, multiple_of, numeric
from app.catalogue.errors import FieldError
from app.catalogue.metrics import CONFLICT_METRICS, GENERIC_METRICS, GENERIC_SCORER
from app.catalogue.model import CatalogueEntry, Domain

ANT_METRICS = ("alerting", "orienting", "executive", "accuracy", "mean_rt")
CHOICE_RT_METRICS = ("n_trials", "accuracy", "mean_rt", "median_rt", "sd_rt", "n_anticipations")
CPT_METRICS = (
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
)

# ANT design: 4 cues x flanker congruency (2, or 3 with neutral) x 2 target directions
# x 2 target locations; a block must hold whole replications of the design to stay balanced.
_ANT_CELLS_WITHOUT_NEUTRAL = 4 * 2 * 2 * 2
_ANT_CELLS_WITH_NEUTRAL = 4 * 3 * 2 * 2


def _ant_balanced_blocks(config: Mapping[str, Any]) -> list[FieldError]:
    per_block = numeric(config, "trials_per_block")
    with_neutral = config.get("include_neutral_flankers")
    if per_block is None or not isinstance(with_neutral, bool):
        return []
    cells = _ANT_CELLS_WITH_NEUTRAL if with_neutral else _ANT_CELLS_WITHOUT_NEUTRAL
    if per_block % cells == 0:
        return []
    design = "with" if with_neutral else "without"
    message = (
        f"must be a multiple of {cells} (one full replication of the cue x flanker x direction"
        f" x location design {design} neutral flankers)"
    )
    return [FieldError(field="trials_per_block", message=message)]


def _all_targets_by_guessing(config: Mapping[str, Any]) -> float:
    # A MOT trial is correct only when every target is selected; guessing picks the right set of
    # n_targets among n_objects with probability 1 / C(n_objects, n_targets).
    return 1.0 / math.comb(int(config["n_objects"]), int(config["n_targets"]))


ATTENTION_NETWORK_TEST = define_module(
    module_id="attention-network-test",
    name="Attention Network Test (ANT)",
    domain=Domain.ATTENTION,
    description="""
        Cued flanker task after Fan et al. (2002): the participant reports the direction of a
        central arrow flanked by congruent or incongruent arrows, preceded by no cue, a central,
        a double or a spatial cue. Response-time contrasts between cue and flanker conditions
        estimate the efficiency of the alerting, orienting and executive-control networks.
    """,
    parameters={
        "practice_trials": p.practice_trials(12, maximum=48),
        "n_blocks": p.integer(3, minimum=1, maximum=6, description="Number of test blocks."),
        "trials_per_block": p.integer(
            32,
            minimum=32,
            maximum=192,
            description=(
                "Scored trials per block; a multiple of the design size (32, or 48 with neutral"
                " flankers)."
            ),
        ),
        "include_neutral_flankers": p.boolean(
            False,
            description="Add neutral-flanker trials (dashes) to congruent and incongruent ones.",
        ),
        "fixation_min_ms": p.integer(
            400, minimum=200, maximum=3000, description="Shortest pre-cue fixation, in ms."
        ),
        "fixation_max_ms": p.integer(
            1600, minimum=200, maximum=3000, description="Longest pre-cue fixation, in ms."
        ),
        "cue_duration_ms": p.integer(
            100, minimum=50, maximum=500, description="Cue display time, in ms."
        ),
        "cue_target_interval_ms": p.integer(
            400,
            minimum=0,
            maximum=2000,
            description="Fixation between cue offset and target onset, in ms.",
        ),
        "timeout_ms": p.timeout_ms(1700, minimum=500, maximum=5000),
    },
    summary_metrics=ANT_METRICS,
    scorer="attention-network-test",
    # Two response alternatives (left/right direction of the central arrow).
    chance=fixed(0.5),
    checks=(at_most("fixation_min_ms", "fixation_max_ms"), _ant_balanced_blocks),
)

CHOICE_RT = define_module(
    module_id="choice-rt",
    name="Choice Reaction Time",
    domain=Domain.ATTENTION,
    description="""
        Pop-out visual search: coloured squares appear (three by default) and the participant taps
        the one whose colour differs from the others as quickly as possible. Response time on
        correct trials indexes perceptual processing speed and visual attention; accuracy guards
        against fast guessing.
    """,
    parameters={
        "n_trials": p.n_trials(30, minimum=10, maximum=200),
        "practice_trials": p.practice_trials(5),
        "n_choices": p.integer(
            3,
            minimum=3,
            maximum=6,
            description="Squares shown on each trial, one of them the odd one out.",
        ),
        "timeout_ms": p.timeout_ms(3000, minimum=500, maximum=10_000),
        "isi_min_ms": p.integer(
            500, minimum=0, maximum=5000, description="Shortest interval before a display, in ms."
        ),
        "isi_max_ms": p.integer(
            1500, minimum=0, maximum=5000, description="Longest interval before a display, in ms."
        ),
    },
    summary_metrics=CHOICE_RT_METRICS,
    scorer="choice-rt",
    # Forced choice of one square among n_choices: 1/3 with the default three squares.
    chance=one_in("n_choices"),
    checks=(at_most("isi_min_ms", "isi_max_ms"),),
)

CPT_GO_NOGO = define_module(
    module_id="cpt-go-nogo",
    name="Continuous Performance Test (CPT) / Go–No-Go",
    domain=Domain.ATTENTION,
    description="""
        Sustained attention and response inhibition: a rapid stream of stimuli is shown and the
        participant taps for targets and withholds the response to non-targets. Omissions index
        lapses of attention, commissions index failures of inhibition, and signal-detection
        indices (d′, criterion) separate sensitivity from response bias.
    """,
    parameters={
        "n_trials": p.n_trials(100, minimum=20, maximum=1000),
        "practice_trials": p.practice_trials(10, maximum=40),
        "target_frequency": p.proportion(
            0.3, low=0.05, high=0.95, description="Proportion of trials that are targets."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(500, maximum=5000),
        "isi_ms": p.isi_ms(1000, minimum=100),
        "timeout_ms": p.timeout_ms(
            1500,
            minimum=100,
            maximum=15_000,
            description=(
                "Response window from stimulus onset, in ms; it must end before the next"
                " stimulus (at most stimulus_duration_ms + isi_ms)."
            ),
        ),
    },
    summary_metrics=CPT_METRICS,
    scorer="cpt-go-nogo",
    # Detection, not forced choice: never responding already scores 1 - target_frequency (0.7),
    # so accuracy at or below max(p, 1 - p) shows no discrimination of targets.
    chance=majority_response("target_frequency"),
    checks=(at_most_sum("timeout_ms", "stimulus_duration_ms", "isi_ms"),),
)

DIVIDED_ATTENTION = define_module(
    module_id="divided-attention",
    name="Divided Attention (Dual Task)",
    domain=Domain.ATTENTION,
    description="""
        Dual-task monitoring: the participant watches a central and a peripheral stimulus stream
        at the same time and taps whenever a target appears in either. Performance under dual
        monitoring, compared with single-stream blocks, indexes the capacity to divide attention
        (the dual-task cost).
    """,
    parameters={
        "n_trials": p.n_trials(80, minimum=20, maximum=400),
        "practice_trials": p.practice_trials(8),
        "target_frequency": p.proportion(
            0.3, low=0.05, high=0.5, description="Proportion of trials carrying a target."
        ),
        "include_single_task_blocks": p.boolean(
            True,
            description="Run single-stream baseline blocks so the dual-task cost can be derived.",
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(500, maximum=5000),
        "isi_ms": p.isi_ms(1500, minimum=100),
        "timeout_ms": p.timeout_ms(
            2000,
            minimum=100,
            maximum=15_000,
            description="Response window from stimulus onset, in ms (at most stimulus + ISI).",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Detection (respond on targets, withhold otherwise): as for the CPT, max(p, 1 - p).
    chance=majority_response("target_frequency"),
    checks=(at_most_sum("timeout_ms", "stimulus_duration_ms", "isi_ms"),),
)

FLANKER = define_module(
    module_id="flanker",
    name="Eriksen Flanker Task",
    domain=Domain.ATTENTION,
    description="""
        Arrow version of the Eriksen flanker task: the participant reports the direction of a
        central arrow surrounded by arrows pointing the same way (congruent) or the opposite way
        (incongruent). The slowing and loss of accuracy on incongruent trials (flanker
        interference) index selective attention and inhibitory control.
    """,
    parameters={
        "n_trials": p.n_trials(40, minimum=16, maximum=400),
        "practice_trials": p.practice_trials(8),
        "congruent_proportion": p.proportion(
            0.5,
            low=0.1,
            high=0.9,
            description="Proportion of congruent among congruent and incongruent trials.",
        ),
        "include_neutral": p.boolean(
            False, description="Add neutral trials (central arrow flanked by dashes)."
        ),
        "fixation_duration_ms": p.integer(
            500, minimum=0, maximum=3000, description="Fixation cross before each trial, in ms."
        ),
        "timeout_ms": p.timeout_ms(2000, minimum=500, maximum=10_000),
        "isi_ms": p.isi_ms(1000),
    },
    summary_metrics=CONFLICT_METRICS,
    scorer="flanker",
    # Two response keys (left/right).
    chance=fixed(0.5),
)

MULTIPLE_OBJECT_TRACKING = define_module(
    module_id="multiple-object-tracking",
    name="Multiple Object Tracking (MOT)",
    domain=Domain.ATTENTION,
    description="""
        After Pylyshyn and Storm (1988): some of a set of identical objects are briefly
        highlighted, all objects then move about at random, and when they stop the participant
        selects the highlighted ones. The proportion of trials with every target found indexes
        sustained, spatially distributed attention and its capacity.
    """,
    parameters={
        "n_trials": p.n_trials(16, minimum=4, maximum=100),
        "practice_trials": p.practice_trials(2, maximum=10),
        "n_objects": p.integer(8, minimum=4, maximum=16, description="Objects on screen."),
        "n_targets": p.integer(3, minimum=1, maximum=8, description="Objects to track."),
        "cue_duration_ms": p.integer(
            2000, minimum=500, maximum=5000, description="Time the targets are highlighted, in ms."
        ),
        "tracking_duration_ms": p.integer(
            6000, minimum=1000, maximum=20_000, description="Duration of motion, in ms."
        ),
        "speed_arena_widths_per_s": p.number(
            0.25,
            minimum=0.05,
            maximum=1.0,
            description="Object speed in display widths per second (device-independent).",
        ),
        "timeout_ms": p.timeout_ms(
            15_000,
            minimum=2000,
            maximum=60_000,
            description="Time allowed to select the targets once motion stops, in ms.",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # A trial is correct when all targets are selected: 1 / C(8, 3) = 1/56 by default.
    chance=_all_targets_by_guessing,
    checks=(below("n_targets", "n_objects"),),
)

VIGILANCE_CPT = define_module(
    module_id="vigilance-cpt",
    name="Vigilance Continuous Performance Test",
    domain=Domain.ATTENTION,
    description="""
        Long, low-target-rate continuous performance test: rare targets must be detected in a
        stimulus stream lasting several minutes. The fall in hit rate and the slowing of responses
        across blocks (the vigilance decrement) index the ability to sustain attention over time.
    """,
    parameters={
        "n_trials": p.n_trials(360, minimum=60, maximum=1200),
        "practice_trials": p.practice_trials(10, maximum=40),
        "n_blocks": p.integer(
            3,
            minimum=1,
            maximum=12,
            description="Equal time-on-task blocks for the vigilance decrement.",
        ),
        "target_frequency": p.proportion(
            0.1, low=0.02, high=0.5, description="Proportion of trials that are targets."
        ),
        "stimulus_duration_ms": p.stimulus_duration_ms(250, maximum=5000),
        "isi_ms": p.isi_ms(1000, minimum=100),
        "timeout_ms": p.timeout_ms(
            1250,
            minimum=100,
            maximum=15_000,
            description="Response window from stimulus onset, in ms (at most stimulus + ISI).",
        ),
    },
    summary_metrics=GENERIC_METRICS,
    scorer=GENERIC_SCORER,
    # Detection with rare targets: never responding scores 1 - p (0.9); chance is max(p, 1 - p).
    chance=majority_response("target_frequency"),
    checks=(
        multiple_of("n_trials", "n_blocks"),
        at_most_sum("timeout_ms", "stimulus_duration_ms", "isi_ms"),
    ),
)

MODULES: tuple[CatalogueEntry, ...] = (
    ATTENTION_NETWORK_TEST,
    CHOICE_RT,
    CPT_GO_NOGO,
    DIVIDED_ATTENTION,
    FLANKER,
    MULTIPLE_OBJECT_TRACKING,
    VIGILANCE_CPT,
)
