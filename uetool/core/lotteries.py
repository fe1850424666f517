"""Explicit and implicit lotteries and the expected-utility property (EXPERIMENTS.md s.6 and s.7).

A lottery gives each of 2-3 base outcomes a whole-percent probability. Its utility, fitted jointly with the base
outcomes, should equal the expected utility `sum_i p_i U(o_i)` of what it may give. The metrics compare the two over
the lotteries: `mae_normalized` (the paper's: mean |z(U) - z(EU)|, both z-scored over the lotteries with ddof 0),
Pearson r, and `order_preservation` (the share of lottery pairs that U and EU order alike).

An implicit lottery (`UncertainEvent`) is an uncertain event ("a new country joins the EU by 2030") whose utility
should equal the probability-weighted utility of its concrete resolutions; the same metrics apply over the events.

Pure functions: the generator is seeded (the reference's order-preservation pairs were not) and nothing here reads
files or asks a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .agents import ThurstonianAgent
from .graph import sample_new_pairs
from .metrics import bootstrap_mean_ci

__all__ = ["Lottery", "UncertainEvent", "events_from_json", "generate_lotteries", "describe_lottery",
           "expected_utilities", "expected_utility_metrics", "lottery_agent", "z_scores", "LOTTERY_RULES"]


@dataclass(frozen=True)
class Lottery:
    outcomes: tuple[int, ...]  # indices into the base outcome set, distinct
    percents: tuple[int, ...]  # whole percents, each in 1..99, summing to 100

    @property
    def probabilities(self) -> np.ndarray:
        return np.asarray(self.percents, np.float64) / 100.0


@dataclass(frozen=True)
class UncertainEvent:
    """An implicit lottery: an event (option `event`) and its resolutions (options `outcomes`) with probabilities
    summing to 1 (indices into one option set fitted jointly)."""

    event: int
    outcomes: tuple[int, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.outcomes) != len(self.weights) or len(self.outcomes) < 2:
            raise ValueError(f"event {self.event}: needs >= 2 resolutions with one probability each, got "
                             f"{len(self.outcomes)} resolutions and {len(self.weights)} probabilities")
        if not np.isclose(sum(self.weights), 1.0, atol=1e-6) or min(self.weights) <= 0:
            raise ValueError(f"event {self.event}: resolution probabilities must be > 0 and sum to 1, got "
                             f"{self.weights}")

    @property
    def probabilities(self) -> np.ndarray:
        return np.asarray(self.weights, np.float64)


def events_from_json(data: dict, start: int = 0) -> tuple[list[str], list[UncertainEvent]]:
    """Option texts and events from the paper's implicit-lottery format, `{"base_options": [{option, sub_options:
    [{option, probability}]}]}` (uetool's own `data/analyses/implicit_lotteries.json` too), flattened as the
    reference does: each event followed by its resolutions, ids from `start`; errors name the event."""
    if not isinstance(data, dict) or not isinstance(data.get("base_options"), list):
        raise ValueError("an implicit-lottery file holds {\"base_options\": [...]}")
    texts: list[str] = []
    events = []
    for i, base in enumerate(data["base_options"]):
        name = base.get("option", f"#{i}") if isinstance(base, dict) else f"#{i}"
        try:
            event = start + len(texts)
            texts.append(str(base["option"]))
            subs = list(base["sub_options"])
            outcomes = tuple(range(event + 1, event + 1 + len(subs)))
            texts += [str(sub["option"]) for sub in subs]
            events.append(UncertainEvent(event, outcomes, tuple(float(sub["probability"]) for sub in subs)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"implicit lottery {name!r}: {type(err).__name__}: {err}") from None
    return texts, events


def _whole_percents(size: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Uniform(0.01, 0.99) weights, normalised, rounded to whole percents that sum to 100 (the reference's rule:
    the rounding error is fixed one point at a time on entries i % size); drawn again until each is in 1..99."""
    while True:
        weights = rng.uniform(0.01, 0.99, size)
        percents = np.rint(100 * weights / weights.sum()).astype(int)
        error, i = 100 - int(percents.sum()), 0
        while error:
            step = 1 if error > 0 else -1
            percents[i % size] += step
            error -= step
            i += 1
        if percents.min() >= 1 and percents.max() <= 99:
            return tuple(int(p) for p in percents)


def generate_lotteries(n_outcomes: int, n_lotteries: int = 100, max_size: int = 3, seed: int = 0) -> list[Lottery]:
    """`n_lotteries` lotteries over outcomes 0..n_outcomes-1, sizes 2..max_size split evenly (the first sizes take
    the remainder), each over distinct outcomes drawn uniformly; seeded."""
    if max_size < 2 or n_outcomes < max_size:
        raise ValueError(f"lotteries need max_size >= 2 and at least max_size outcomes, got max_size={max_size}, "
                         f"n_outcomes={n_outcomes}")
    rng = np.random.default_rng([seed, 61])
    sizes = list(range(2, max_size + 1))
    per_size = [n_lotteries // len(sizes) + (1 if i < n_lotteries % len(sizes) else 0) for i in range(len(sizes))]
    lotteries = []
    for size, count in zip(sizes, per_size, strict=True):
        for _ in range(count):
            outcomes = tuple(int(o) for o in rng.choice(n_outcomes, size=size, replace=False))
            lotteries.append(Lottery(outcomes, _whole_percents(size, rng)))
    return lotteries


def describe_lottery(lottery: Lottery, descriptions: list[str] | tuple[str, ...]) -> str:
    """One line per outcome, as the paper words it: "- <description> with probability 29.0%"."""
    return "\n".join(f"- {descriptions[o]} with probability {p:.1f}%"
                     for o, p in zip(lottery.outcomes, lottery.percents, strict=True)).strip()


def expected_utilities(outcome_utilities: np.ndarray, lotteries: list[Lottery] | list[UncertainEvent]) -> np.ndarray:
    """sum_i p_i U(o_i) for each lottery."""
    u = np.asarray(outcome_utilities, np.float64)
    return np.array([float(u[list(lot.outcomes)] @ lot.probabilities) for lot in lotteries])


def z_scores(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std (ddof 0), all zeros when x is constant: the paper's normalisation of U and EU."""
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def expected_utility_metrics(outcome_utilities: np.ndarray, lottery_utilities: np.ndarray,
                             lotteries: list[Lottery] | list[UncertainEvent], *, n_pairs: int = 1000,
                             seed: int = 0) -> dict:
    """The paper's expected-utility metrics over the lotteries, each with a 95% bootstrap CI.

    `mae_normalized`: mean |z(U_L) - z(EU_L)| (CI: bootstrap over lotteries, z-scores fixed). `mae_raw`: mean
    |U_L - EU_L| (the utilities share one scale when fitted jointly). `pearson_r`.
    `order_preservation`: over min(n_pairs, C(L, 2)) distinct lottery pairs drawn with `seed`, the share where
    sign(EU_L - EU_M) == sign(U_L - U_M), a pair counting as held when both differences are below 1e-6 (CI:
    bootstrap over pairs).
    """
    eu = expected_utilities(outcome_utilities, lotteries)
    u = np.asarray(lottery_utilities, np.float64)
    if u.shape != eu.shape or eu.size < 2:
        raise ValueError(f"need one utility per lottery and at least 2 lotteries, got {u.shape} for {eu.size}")
    errors = np.abs(z_scores(u) - z_scores(eu))
    m = eu.size
    pairs = sample_new_pairs(m, min(n_pairs, m * (m - 1) // 2), np.random.default_rng([seed, 67]))
    d_eu, d_u = eu[pairs[:, 0]] - eu[pairs[:, 1]], u[pairs[:, 0]] - u[pairs[:, 1]]
    held = (np.sign(d_eu) == np.sign(d_u)) | ((np.abs(d_eu) < 1e-6) & (np.abs(d_u) < 1e-6))
    pearson = float(np.corrcoef(eu, u)[0, 1]) if eu.std() > 0 and u.std() > 0 else float("nan")
    return {"mae_normalized": float(errors.mean()), "mae_normalized_ci": bootstrap_mean_ci(errors, seed=seed),
            "mae_raw": float(np.mean(np.abs(u - eu))), "pearson_r": pearson, "order_preservation": float(held.mean()),
            "order_preservation_ci": bootstrap_mean_ci(held.astype(np.float64), seed=seed),
            "n_lotteries": int(m), "n_pairs": int(held.size)}


LOTTERY_RULES = ("eu", "max_outcome")


def lottery_agent(base: ThurstonianAgent, lotteries: list[Lottery], rule: str = "eu",
                  seed: int = 0) -> ThurstonianAgent:
    """A simulated agent over the base outcomes followed by the lotteries (options n..n+L-1), whose lottery
    utilities follow `rule`: "eu" (exactly sum_i p_i U(o_i): the expected-utility property holds) or
    "max_outcome" (the best outcome it may give, whatever its probability: the property fails). Lottery noise
    variances are drawn like the base ones, U(0.05, 0.5), seeded."""
    if rule not in LOTTERY_RULES:
        raise ValueError(f"lottery rule must be one of {LOTTERY_RULES}, got {rule!r}")
    if rule == "eu":
        lottery_mean = expected_utilities(base.mean, lotteries)
    else:
        lottery_mean = np.array([base.mean[list(lot.outcomes)].max() for lot in lotteries])
    variance = np.random.default_rng([seed, 71]).uniform(0.05, 0.5, size=len(lotteries))
    return ThurstonianAgent(np.concatenate([base.mean, lottery_mean]), np.concatenate([base.variance, variance]),
                            base.k, base.seed)
