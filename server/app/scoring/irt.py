"""Item response theory for computerized adaptive testing (docs/item-banks.md).

Pure functions: no database, no settings, no clock and no global random state (a caller that
wants exposure control passes its own seeded `random.Random`).

Models, with θ the latent trait and `a` the discrimination:

- 2PL (dichotomous, responses 0/1): P(X=1 | θ) = 1 / (1 + exp(-a(θ - b))).
- Graded response model (Samejima; K ordered categories 0..K-1, thresholds b_1 < … < b_{K-1}):
  P*_k(θ) = 1 / (1 + exp(-a(θ - b_k))) is the chance of answering in category k or above,
  with P*_0 = 1 and P*_K = 0; P(X=k | θ) = P*_k(θ) - P*_{k+1}(θ). A GRM item with a single
  threshold is exactly the 2PL item.

Item Fisher information: I(θ) = Σ_k P'_k(θ)² / P_k(θ), with P*'_k = a P*_k (1 - P*_k); for the
2PL this is a² P (1 - P).

Ability: expected a posteriori (EAP) on a fixed quadrature grid (61 equally spaced nodes on
[-4, 4] by default) with a normal prior N(μ, σ²) evaluated at the nodes and normalized; the
standard error is the posterior standard deviation on the same grid.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

T_SCORE_MEAN: Final = 50.0
T_SCORE_SD: Final = 10.0
DEFAULT_NODES: Final = 61
DEFAULT_BOUND: Final = 4.0
# A category probability is never taken below this before its logarithm (a response that the
# model calls impossible still leaves a finite likelihood).
_TINY: Final = 1e-300

STOP_SE: Final = "se_reached"
STOP_MAX_ITEMS: Final = "max_items"
STOP_BANK_EXHAUSTED: Final = "bank_exhausted"


class IrtError(ValueError):
    """Parameters or responses the models cannot use (the message names the field)."""


def _logistic(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Item:
    """One calibrated item: discrimination `a` and one (2PL) or more (GRM) thresholds."""

    id: str
    a: float
    thresholds: tuple[float, ...]
    domain: str | None = None

    def __post_init__(self) -> None:
        check_parameters(self.a, self.thresholds)

    @property
    def n_categories(self) -> int:
        return len(self.thresholds) + 1

    @property
    def model(self) -> str:
        return "2pl" if len(self.thresholds) == 1 else "grm"


def check_parameters(a: float, thresholds: Sequence[float]) -> None:
    """Raise IrtError unless a > 0 (finite) and the thresholds are finite and strictly ordered."""
    if not isinstance(a, int | float) or isinstance(a, bool) or not math.isfinite(a) or a <= 0:
        raise IrtError("a: the discrimination must be a finite number greater than 0")
    if len(thresholds) < 1:
        raise IrtError("b: at least one threshold is required")
    for index, b in enumerate(thresholds):
        if not isinstance(b, int | float) or isinstance(b, bool) or not math.isfinite(b):
            raise IrtError(f"b[{index}]: thresholds must be finite numbers")
        if index and b <= thresholds[index - 1]:
            raise IrtError(f"b[{index}]: thresholds must be strictly increasing")


def _cumulative(item: Item, theta: float) -> list[float]:
    """P*_0 .. P*_K: the chance of a response in category k or above."""
    return [1.0, *(_logistic(item.a * (theta - b)) for b in item.thresholds), 0.0]


def category_probabilities(item: Item, theta: float) -> list[float]:
    """P(X = k | θ) for k = 0 .. K-1."""
    star = _cumulative(item, theta)
    return [star[k] - star[k + 1] for k in range(item.n_categories)]


def probability_correct(item: Item, theta: float) -> float:
    """The 2PL response function (the chance of category 1 or above for any item)."""
    return _logistic(item.a * (theta - item.thresholds[0]))


def item_information(item: Item, theta: float) -> float:
    """Fisher information of one item at θ."""
    star = _cumulative(item, theta)
    slope = [item.a * p * (1.0 - p) for p in star]
    total = 0.0
    for k in range(item.n_categories):
        p = star[k] - star[k + 1]
        if p > _TINY:
            total += (slope[k] - slope[k + 1]) ** 2 / p
    return total


def test_information(items: Iterable[Item], theta: float) -> float:
    return sum(item_information(item, theta) for item in items)


@dataclass(frozen=True)
class Quadrature:
    """Nodes and normalized prior weights for EAP."""

    nodes: tuple[float, ...]
    weights: tuple[float, ...]


def normal_quadrature(
    n_points: int = DEFAULT_NODES,
    bound: float = DEFAULT_BOUND,
    prior_mean: float = 0.0,
    prior_sd: float = 1.0,
) -> Quadrature:
    """Equally spaced nodes on [-bound, bound] weighted by the N(mean, sd²) density."""
    if n_points < 2:
        raise IrtError("n_points: at least 2 quadrature nodes are required")
    if not (math.isfinite(bound) and bound > 0):
        raise IrtError("bound: must be a finite number greater than 0")
    if not (math.isfinite(prior_sd) and prior_sd > 0) or not math.isfinite(prior_mean):
        raise IrtError("prior: the mean must be finite and the sd greater than 0")
    step = 2.0 * bound / (n_points - 1)
    nodes = tuple(-bound + i * step for i in range(n_points))
    dens = [math.exp(-0.5 * ((x - prior_mean) / prior_sd) ** 2) for x in nodes]
    total = math.fsum(dens)
    return Quadrature(nodes, tuple(d / total for d in dens))


DEFAULT_QUADRATURE: Final = normal_quadrature()


@dataclass(frozen=True)
class Estimate:
    theta: float
    se: float


def _check_response(item: Item, response: int) -> None:
    if isinstance(response, bool) or not isinstance(response, int):
        raise IrtError(f"response to {item.id}: must be an integer category")
    if not 0 <= response < item.n_categories:
        raise IrtError(f"response to {item.id}: must be between 0 and {item.n_categories - 1}")


def log_likelihood(responses: Sequence[tuple[Item, int]], theta: float) -> float:
    total = 0.0
    for item, response in responses:
        total += math.log(max(category_probabilities(item, theta)[response], _TINY))
    return total


def eap(
    responses: Sequence[tuple[Item, int]], quadrature: Quadrature = DEFAULT_QUADRATURE
) -> Estimate:
    """EAP estimate of θ and its posterior standard deviation."""
    for item, response in responses:
        _check_response(item, response)
    logs = [
        math.log(w) + log_likelihood(responses, x)
        for x, w in zip(quadrature.nodes, quadrature.weights, strict=True)
    ]
    peak = max(logs)
    post = [math.exp(v - peak) for v in logs]
    norm = math.fsum(post)
    mean = math.fsum(p * x for p, x in zip(post, quadrature.nodes, strict=True)) / norm
    var = math.fsum(p * (x - mean) ** 2 for p, x in zip(post, quadrature.nodes, strict=True))
    return Estimate(theta=mean, se=math.sqrt(max(var / norm, 0.0)))


def eap_path(
    responses: Sequence[tuple[Item, int]], quadrature: Quadrature = DEFAULT_QUADRATURE
) -> list[Estimate]:
    """The EAP estimate after each response in turn: element k is `eap(responses[: k + 1])`,
    to the last bit (the same sums in the same order), in one pass instead of one per prefix."""
    for item, response in responses:
        _check_response(item, response)
    log_weights = [math.log(w) for w in quadrature.weights]
    likelihood = [0.0] * len(quadrature.nodes)
    path: list[Estimate] = []
    for item, response in responses:
        for index, x in enumerate(quadrature.nodes):
            likelihood[index] += math.log(max(category_probabilities(item, x)[response], _TINY))
        logs = [w + ll for w, ll in zip(log_weights, likelihood, strict=True)]
        peak = max(logs)
        post = [math.exp(v - peak) for v in logs]
        norm = math.fsum(post)
        mean = math.fsum(p * x for p, x in zip(post, quadrature.nodes, strict=True)) / norm
        var = math.fsum(p * (x - mean) ** 2 for p, x in zip(post, quadrature.nodes, strict=True))
        path.append(Estimate(theta=mean, se=math.sqrt(max(var / norm, 0.0))))
    return path


def t_score(theta: float) -> float:
    return T_SCORE_MEAN + T_SCORE_SD * theta


@dataclass(frozen=True)
class CatRules:
    """Stopping, exposure and content rules of one bank (docs/item-banks.md)."""

    target_se: float = 0.3
    min_items: int = 1
    max_items: int = 20
    # Randomesque exposure control: pick at random among the `randomesque` most informative.
    randomesque: int = 1
    # Target share of each domain; empty means equal shares over the domains the bank has.
    domain_targets: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_se) and self.target_se > 0):
            raise IrtError("target_se: must be a number greater than 0")
        if self.min_items < 0:
            raise IrtError("min_items: must be 0 or more")
        if self.max_items < 1 or self.max_items < self.min_items:
            raise IrtError("max_items: must be at least 1 and at least min_items")
        if self.randomesque < 1:
            raise IrtError("randomesque: must be at least 1")
        for domain, share in self.domain_targets.items():
            if not (math.isfinite(share) and share >= 0):
                raise IrtError(f"domain_targets.{domain}: must be a share of 0 or more")


def stop_reason(estimate: Estimate, n_items: int, rules: CatRules, items_left: int) -> str | None:
    """Why the test stops now, or None to go on. min_items wins over the SE target."""
    if n_items >= rules.max_items:
        return STOP_MAX_ITEMS
    if items_left <= 0:
        return STOP_BANK_EXHAUSTED
    if n_items >= rules.min_items and n_items > 0 and estimate.se <= rules.target_se:
        return STOP_SE
    return None


def _domain_to_fill(
    candidates: Sequence[Item], administered: Sequence[Item], rules: CatRules
) -> str | None:
    """Kingsbury-Zara: the available domain furthest below its target share."""
    available = sorted({item.domain for item in candidates if item.domain is not None})
    if not available:
        return None
    all_domains = sorted(
        {item.domain for item in (*candidates, *administered) if item.domain is not None}
    )
    targets = dict(rules.domain_targets) or dict.fromkeys(all_domains, 1.0)
    total_target = math.fsum(targets.get(d, 0.0) for d in all_domains) or 1.0
    n = len(administered)
    counts = dict.fromkeys(all_domains, 0)
    for item in administered:
        if item.domain is not None:
            counts[item.domain] += 1

    def deficit(domain: str) -> float:
        share = counts[domain] / n if n else 0.0
        return targets.get(domain, 0.0) / total_target - share

    # Highest deficit first; ties broken by the domain name so the choice is reproducible.
    return max(available, key=lambda d: (deficit(d), [-ord(c) for c in d]))


def select_next_item(
    bank: Sequence[Item],
    administered: Sequence[Item],
    theta: float,
    rules: CatRules,
    rng: random.Random,
) -> Item | None:
    """The next item: most informative at θ, within the domain content balancing asks for,
    drawn at random among the `rules.randomesque` best. None when the bank is used up."""
    used = {item.id for item in administered}
    candidates = [item for item in bank if item.id not in used]
    if not candidates:
        return None
    domain = _domain_to_fill(candidates, administered, rules)
    if domain is not None:
        candidates = [item for item in candidates if item.domain == domain]
    ranked = sorted(candidates, key=lambda item: (-item_information(item, theta), item.id))
    best = ranked[: rules.randomesque]
    return best[rng.randrange(len(best))] if len(best) > 1 else best[0]


@dataclass(frozen=True)
class CatStep:
    """The state after the responses so far: estimate, next item (None when finished)."""

    estimate: Estimate
    next_item: Item | None
    finished: bool
    reason: str | None


def cat_step(
    bank: Sequence[Item],
    responses: Sequence[tuple[Item, int]],
    rules: CatRules,
    rng: random.Random,
    quadrature: Quadrature = DEFAULT_QUADRATURE,
) -> CatStep:
    """Estimate from the responses, decide whether to stop, and if not pick the next item."""
    estimate = eap(responses, quadrature)
    administered = [item for item, _ in responses]
    used = {item.id for item in administered}
    left = sum(1 for item in bank if item.id not in used)
    reason = stop_reason(estimate, len(responses), rules, left)
    if reason is not None:
        return CatStep(estimate, None, True, reason)
    chosen = select_next_item(bank, administered, estimate.theta, rules, rng)
    if chosen is None:  # pragma: no cover - stop_reason already caught an empty bank
        return CatStep(estimate, None, True, STOP_BANK_EXHAUSTED)
    return CatStep(estimate, chosen, False, None)
