"""IRT and CAT maths against closed forms and an independent implementation.

The independent implementation below is written from the textbook formulas, without using
app.scoring.irt: category probabilities from the boundary curves written with tanh, the
posterior mean and sd summed over the 61 nodes that define the estimator (to 1e-6), and, to
show what the grid costs, integrated continuously by composite Simpson's rule; and item
information as the expected squared score, with a central finite difference of the log category
probabilities.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence

import pytest

from app.scoring.irt import (
    STOP_BANK_EXHAUSTED,
    STOP_MAX_ITEMS,
    STOP_SE,
    CatRules,
    Estimate,
    IrtError,
    Item,
    cat_step,
    category_probabilities,
    eap,
    item_information,
    normal_quadrature,
    select_next_item,
    stop_reason,
    t_score,
)

TOL = 1e-6


# --- independent reference --------------------------------------------------------------------


def ref_boundary(a: float, b: float, theta: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * a * (theta - b)))


def ref_probs(a: float, bs: Sequence[float], theta: float) -> list[float]:
    upper = [1.0] + [ref_boundary(a, b, theta) for b in bs] + [0.0]
    return [upper[k] - upper[k + 1] for k in range(len(bs) + 1)]


def ref_information(a: float, bs: Sequence[float], theta: float) -> float:
    h = 1e-5
    probs = ref_probs(a, bs, theta)
    up = ref_probs(a, bs, theta + h)
    down = ref_probs(a, bs, theta - h)
    return sum(
        p * ((math.log(u) - math.log(d)) / (2 * h)) ** 2
        for p, u, d in zip(probs, up, down, strict=True)
    )


def simpson(f: Callable[[float], float], lo: float, hi: float, panels: int = 4000) -> float:
    h = (hi - lo) / panels
    total = f(lo) + f(hi)
    for i in range(1, panels):
        total += (4 if i % 2 else 2) * f(lo + i * h)
    return total * h / 3


def _moments(
    responses: Sequence[tuple[float, Sequence[float], int]],
    mean: float,
    sd: float,
    integrate: Callable[[Callable[[float], float]], float],
) -> tuple[float, float]:
    def posterior(theta: float) -> float:
        value = math.exp(-0.5 * ((theta - mean) / sd) ** 2)
        for a, bs, x in responses:
            value *= ref_probs(a, bs, theta)[x]
        return value

    z = integrate(posterior)
    m = integrate(lambda t: t * posterior(t)) / z
    v = integrate(lambda t: (t - m) ** 2 * posterior(t)) / z
    return m, math.sqrt(v)


def ref_eap(
    responses: Sequence[tuple[float, Sequence[float], int]],
    mean: float = 0.0,
    sd: float = 1.0,
    bound: float = 4.0,
    points: int = 61,
) -> tuple[float, float]:
    """The estimator's definition: a plain sum over equally spaced nodes on [-bound, bound]."""
    nodes = [bound * (2 * i - (points - 1)) / (points - 1) for i in range(points)]
    return _moments(responses, mean, sd, lambda f: sum(f(x) for x in nodes))


def integral_eap(
    responses: Sequence[tuple[float, Sequence[float], int]], bound: float = 4.0
) -> tuple[float, float]:
    """The continuous posterior mean and sd on [-bound, bound] (Simpson, 4,000 panels)."""
    return _moments(responses, 0.0, 1.0, lambda f: simpson(f, -bound, bound))


# --- fixtures ---------------------------------------------------------------------------------

TWO_PL = [Item(f"d{i}", 0.7 + 0.15 * i, (-2.0 + 0.5 * i,)) for i in range(9)]
GRM = [
    Item("g1", 1.9, (-1.8, -0.6, 0.4, 1.5)),
    Item("g2", 2.6, (-0.9, 0.0, 0.8, 2.1)),
    Item("g3", 1.1, (-2.5, -1.0)),
]


# --- closed forms -----------------------------------------------------------------------------


def test_two_pl_probability_and_information_closed_form() -> None:
    item = Item("x", 1.7, (0.4,))
    assert category_probabilities(item, 0.4) == pytest.approx([0.5, 0.5], abs=1e-15)
    # At θ = b the 2PL information is a²/4.
    assert item_information(item, 0.4) == pytest.approx(1.7**2 / 4, abs=1e-12)
    for theta in (-3.0, -0.2, 1.1, 3.5):
        p = 1 / (1 + math.exp(-1.7 * (theta - 0.4)))
        assert category_probabilities(item, theta)[1] == pytest.approx(p, abs=1e-15)
        assert item_information(item, theta) == pytest.approx(1.7**2 * p * (1 - p), abs=1e-12)


def test_grm_probabilities_sum_to_one_and_follow_boundaries() -> None:
    item = GRM[0]
    for theta in (-4.0, -1.0, 0.0, 0.7, 4.0):
        probs = category_probabilities(item, theta)
        assert math.fsum(probs) == pytest.approx(1.0, abs=1e-15)
        assert all(p > 0 for p in probs)
        # P(X >= 2) is the second boundary curve.
        star = 1 / (1 + math.exp(-1.9 * (theta + 0.6)))
        assert math.fsum(probs[2:]) == pytest.approx(star, abs=1e-15)


def test_no_responses_gives_the_prior_on_the_grid() -> None:
    estimate = eap([])
    assert estimate.theta == pytest.approx(0.0, abs=1e-15)
    grid = normal_quadrature()
    expected = math.sqrt(
        math.fsum(w * x * x for x, w in zip(grid.nodes, grid.weights, strict=True))
    )
    assert estimate.se == pytest.approx(expected, abs=1e-15)
    # …close to the closed-form sd of N(0, 1) truncated to [-4, 4] (0.999465): the plain sum
    # gives the two end nodes full weight, which costs 1.2e-4 here.
    phi4 = math.exp(-8.0) / math.sqrt(2 * math.pi)
    truncated_sd = math.sqrt(1 - 8 * phi4 / math.erf(4 / math.sqrt(2)))
    assert estimate.se == pytest.approx(truncated_sd, abs=2e-4)


def test_symmetric_responses_give_theta_zero() -> None:
    # One right and one wrong answer to mirror-image items: the posterior is symmetric about 0.
    items = [Item("p", 1.3, (0.8,)), Item("m", 1.3, (-0.8,))]
    assert eap([(items[0], 1), (items[1], 0)]).theta == pytest.approx(0.0, abs=1e-12)


def test_t_score() -> None:
    assert t_score(0.0) == 50.0
    assert t_score(-1.25) == pytest.approx(37.5)
    assert t_score(2.0) == pytest.approx(70.0)


# --- against the independent implementation ---------------------------------------------------


@pytest.mark.parametrize("theta", [-3.5, -1.7, -0.3, 0.0, 0.9, 2.2, 3.9])
def test_information_matches_reference(theta: float) -> None:
    for item in [*TWO_PL, *GRM]:
        assert item_information(item, theta) == pytest.approx(
            ref_information(item.a, item.thresholds, theta), abs=TOL
        )


@pytest.mark.parametrize("seed", range(12))
def test_eap_and_se_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    bank = [*TWO_PL, *GRM]
    chosen = rng.sample(bank, rng.randint(1, len(bank)))
    responses = [(item, rng.randrange(item.n_categories)) for item in chosen]
    estimate = eap(responses)
    theta, se = ref_eap([(item.a, item.thresholds, x) for item, x in responses])
    assert estimate.theta == pytest.approx(theta, abs=TOL)
    assert estimate.se == pytest.approx(se, abs=TOL)
    # The 61-node grid against the continuous integral on the same support: the grid's own error
    # grows as the posterior narrows (these banks reach an SE near 0.25) and stays below 1e-3.
    theta_c, se_c = integral_eap([(item.a, item.thresholds, x) for item, x in responses])
    assert estimate.theta == pytest.approx(theta_c, abs=1e-3)
    assert estimate.se == pytest.approx(se_c, abs=1e-3)


def test_eap_near_the_centre_matches_the_whole_line_integral() -> None:
    # Far from ±4 the truncation costs less than 1e-6.
    responses = [(GRM[0], 2), (TWO_PL[4], 1), (TWO_PL[2], 0), (GRM[2], 1)]
    estimate = eap(responses)
    theta, se = integral_eap([(i.a, i.thresholds, x) for i, x in responses], bound=10.0)
    assert abs(estimate.theta) < 1.5
    assert estimate.theta == pytest.approx(theta, abs=TOL)
    assert estimate.se == pytest.approx(se, abs=TOL)


def test_eap_with_another_prior_matches_reference() -> None:
    responses = [(GRM[1], 4), (TWO_PL[3], 1), (TWO_PL[7], 0)]
    grid = normal_quadrature(n_points=81, bound=5.0, prior_mean=0.5, prior_sd=1.2)
    estimate = eap(responses, grid)
    theta, se = ref_eap(
        [(i.a, i.thresholds, x) for i, x in responses], mean=0.5, sd=1.2, bound=5.0, points=81
    )
    assert estimate.theta == pytest.approx(theta, abs=TOL)
    assert estimate.se == pytest.approx(se, abs=TOL)


# --- checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "bs", "field"),
    [
        (0.0, (0.1,), "a"),
        (-1.0, (0.1,), "a"),
        (float("nan"), (0.1,), "a"),
        (1.0, (), "b"),
        (1.0, (0.5, 0.5), "b[1]"),
        (1.0, (0.5, -0.2), "b[1]"),
        (1.0, (float("inf"),), "b[0]"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(
    a: float, bs: tuple[float, ...], field: str
) -> None:
    with pytest.raises(IrtError, match=rf"^{re.escape(field)}:"):
        Item("bad", a, bs)


def test_response_out_of_range_is_refused() -> None:
    with pytest.raises(IrtError, match="between 0 and 4"):
        eap([(GRM[0], 5)])
    with pytest.raises(IrtError, match="integer"):
        eap([(TWO_PL[0], True)])


# --- selection and stopping -------------------------------------------------------------------


def test_max_information_selection_without_exposure_control() -> None:
    rules = CatRules(randomesque=1)
    chosen = select_next_item(TWO_PL, [], 0.0, rules, random.Random(1))
    best = max(TWO_PL, key=lambda item: item_information(item, 0.0))
    assert chosen == best
    # Administered items are never chosen again.
    again = select_next_item(TWO_PL, [best], 0.0, rules, random.Random(1))
    assert again is not None and again != best


def test_randomesque_draws_among_the_best_k_with_the_given_rng() -> None:
    rules = CatRules(randomesque=3)
    top3 = sorted(TWO_PL, key=lambda item: -item_information(item, 0.0))[:3]
    seen = {select_next_item(TWO_PL, [], 0.0, rules, random.Random(seed)) for seed in range(60)}
    assert seen == set(top3)
    first = [select_next_item(TWO_PL, [], 0.0, rules, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1  # the same seed gives the same choice


def test_content_balancing_fills_the_domain_furthest_below_target() -> None:
    bank = [
        Item("m1", 2.5, (0.0,), "mood"),
        Item("m2", 2.4, (0.1,), "mood"),
        Item("f1", 0.6, (0.0,), "fatigue"),
        Item("f2", 0.5, (0.2,), "fatigue"),
    ]
    rules = CatRules()
    first = select_next_item(bank, [], 0.0, rules, random.Random(0))
    # Both domains are at their target; the tie goes to the name ("fatigue").
    assert first is not None and first.domain == "fatigue"
    second = select_next_item(bank, [bank[2]], 0.0, rules, random.Random(0))
    assert second == bank[0]
    weighted = CatRules(domain_targets={"mood": 3.0, "fatigue": 1.0})
    picks = [bank[0], bank[2]]
    third = select_next_item(bank, picks, 0.0, weighted, random.Random(0))
    assert third == bank[1]  # mood is at 1/2 of a 3/4 target


def test_stopping_rules() -> None:
    rules = CatRules(target_se=0.4, min_items=3, max_items=5)
    assert stop_reason(Estimate(0.0, 0.3), 2, rules, 10) is None  # below min_items
    assert stop_reason(Estimate(0.0, 0.3), 3, rules, 10) == STOP_SE
    assert stop_reason(Estimate(0.0, 0.5), 4, rules, 10) is None
    assert stop_reason(Estimate(0.0, 0.5), 5, rules, 10) == STOP_MAX_ITEMS
    assert stop_reason(Estimate(0.0, 0.5), 4, rules, 0) == STOP_BANK_EXHAUSTED


def test_bad_rules_are_refused() -> None:
    with pytest.raises(IrtError, match=r"^max_items"):
        CatRules(min_items=5, max_items=3)
    with pytest.raises(IrtError, match=r"^target_se"):
        CatRules(target_se=0.0)
    with pytest.raises(IrtError, match=r"^randomesque"):
        CatRules(randomesque=0)


def test_a_whole_cat_run_stops_on_se_and_recovers_theta() -> None:
    bank = [Item(f"i{i}", 2.2, (-3.0 + 0.1 * i,)) for i in range(61)]
    rules = CatRules(target_se=0.35, max_items=30)
    true_theta = 0.8
    rng = random.Random(3)
    responses: list[tuple[Item, int]] = []
    step = cat_step(bank, responses, rules, rng)
    while not step.finished:
        assert step.next_item is not None
        p = category_probabilities(step.next_item, true_theta)[1]
        responses.append((step.next_item, 1 if rng.random() < p else 0))
        step = cat_step(bank, responses, rules, rng)
    assert step.reason == STOP_SE
    assert step.estimate.se <= 0.35
    assert len(responses) < 30
    assert abs(step.estimate.theta - true_theta) < 3 * step.estimate.se
