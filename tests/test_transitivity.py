"""Transitivity on asked triads: uniform triads, the paper's cycle formula, and the agents' closed forms."""

from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np
import pytest

from uetool.core.agents import RandomAgent, ThurstonianAgent
from uetool.core.graph import pair_keys
from uetool.core.transitivity import (
    TransitivityResult,
    confidence_metrics,
    cycle_metrics,
    measure_transitivity,
    pair_probabilities,
    sample_triads,
    triad_pairs,
)


def test_triads_are_distinct_sorted_seeded_and_capped():
    triads = sample_triads(510, 1000, seed=0)
    assert triads.shape == (1000, 3) and len({tuple(t) for t in triads.tolist()}) == 1000
    assert (triads[:, 0] < triads[:, 1]).all() and (triads[:, 1] < triads[:, 2]).all() and triads.max() < 510
    np.testing.assert_array_equal(triads, sample_triads(510, 1000, seed=0))
    assert not np.array_equal(triads, sample_triads(510, 1000, seed=1))
    assert sample_triads(6, 1000, seed=0).shape == (comb(6, 3), 3) and sample_triads(2, 5, seed=0).shape == (0, 3)


def test_triads_are_uniform_over_all_triples():
    """Every one of the C(9, 3) = 84 triples is equally likely: 3,000 seeds x 5 triads, each ~179 times."""
    counts = Counter(tuple(t) for seed in range(3000) for t in sample_triads(9, 5, seed).tolist())
    assert len(counts) == 84
    expected = 3000 * 5 / 84
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 130  # chi-square, 83 degrees of freedom: P(> 130) ~ 0.001


def test_triad_pairs_index_each_triads_three_pairs():
    triads = np.array([[0, 1, 2], [1, 2, 5], [0, 2, 5]])
    pairs, index = triad_pairs(triads, 6)
    assert len(pairs) == len({tuple(p) for p in pairs.tolist()}) == 6  # (1, 2) and (0, 2) shared
    for (a, b, c), rows in zip(triads.tolist(), index.tolist(), strict=True):
        assert [tuple(pairs[r]) for r in rows] == [(a, b), (b, c), (a, c)]


def test_cycle_formula_on_known_triads():
    # a > b (0.9), b > c (0.8), c > a (P_ac = 0.3): a fairly cyclic triad
    one = cycle_metrics([0.9], [0.8], [0.3])
    assert one["log10_cycle_probability"] == pytest.approx(np.log10(0.9 * 0.8 * 0.7 + 0.1 * 0.2 * 0.3))
    assert one["hard_cycle_rate"] == 1.0 and one["n_triads"] == 1
    coins = cycle_metrics(np.full(50, 0.5), np.full(50, 0.5), np.full(50, 0.5))
    assert coins["log10_cycle_probability"] == pytest.approx(np.log10(0.25)) and coins["hard_cycle_rate"] == 0.0
    transitive = cycle_metrics([0.95, 0.9], [0.95, 0.8], [0.97, 0.99])
    assert transitive["hard_cycle_rate"] == 0.0 and transitive["log10_cycle_probability"] < -1
    undefined = cycle_metrics([0.9, np.nan], [0.8, 0.5], [0.3, 0.5])
    assert undefined["n_triads"] == 1 and undefined["hard_cycle_rate"] == 1.0


def _exact(agent, k: int = 10):
    """ask() with expected counts (what logprob mode reports): K * P in each order, no sampling noise."""
    def ask(pairs: np.ndarray) -> np.ndarray:
        a, b = pairs[:, 0], pairs[:, 1]
        p_orig, p_flip = agent.first_option_probability(a, b), agent.first_option_probability(b, a)
        return np.stack([k * p_orig, k * (1 - p_orig), k * (1 - p_flip), k * p_flip, 0 * a, 0 * a], 1)
    return ask


def _analytic(agent, triads: np.ndarray) -> float:
    p = [agent.true_probability(triads[:, i], triads[:, j]) for i, j in ((0, 1), (1, 2), (0, 2))]
    return cycle_metrics(*p)["log10_cycle_probability"]


def test_exact_answers_give_the_agents_analytic_cycle_probability():
    agent = ThurstonianAgent.random_truth(510, seed=3)
    result = measure_transitivity(510, _exact(agent), n_triads=1000, seed=3)
    assert result.metrics["n_triads"] == 1000
    assert result.metrics["log10_cycle_probability"] == pytest.approx(_analytic(agent, result.triads), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_answers_are_within_0_05_of_the_analytic_value(seed):
    agent = ThurstonianAgent.random_truth(510, seed=seed)  # K=10 samples per order, as the paper asks
    result = measure_transitivity(510, agent, n_triads=1000, seed=seed)
    assert abs(result.metrics["log10_cycle_probability"] - _analytic(agent, result.triads)) < 0.05


@pytest.mark.parametrize("k", [1, 4, 10])
def test_a_random_agent_reads_as_independent_fair_coins(k):
    """E[P_cycle] = 1/4 for independent fair edges whatever K: log10 -0.602, not the paper's -0.484."""
    values = [measure_transitivity(200, RandomAgent(k=k, seed=s), n_triads=1000, seed=s)
              .metrics["log10_cycle_probability"] for s in range(3)]
    assert np.mean(values) == pytest.approx(np.log10(0.25), abs=0.015)


def test_undefined_pairs_are_left_out_not_guessed():
    counts = np.array([[0, 0, 0, 0, 20, 0], [10, 0, 10, 0, 0, 0], [0, 0, 0, 0, 0, 0]], float)
    skip = pair_probabilities(counts, "skip", 0)
    assert np.isnan(skip[0]) and skip[1] == 1.0 and np.isnan(skip[2])
    assert pair_probabilities(counts, "distribution", 0)[0] == 0.5  # half a vote each way, as the paper counts


def test_confidence_over_all_edges_and_over_uniform_pairs_alone():
    n = 10
    triads = TransitivityResult(np.array([[0, 1, 2]]), np.array([[0, 1], [1, 2], [0, 2]]), np.zeros((3, 6)),
                                np.array([0.9, 0.6, np.nan]), np.array([[0, 1, 2]]), {})
    train_pairs, train_p = np.array([[0, 1], [3, 4]]), np.array([0.9, 0.5])
    holdout = (np.array([[5, 6]]), np.array([0.2]))
    got = confidence_metrics(train_p, holdout, triads, n, train_pairs)
    # all: (0,1) once, (3,4), (5,6), (1,2); (0,2) undefined
    assert got["average_confidence"] == pytest.approx(np.mean([0.9, 0.5, 0.8, 0.6]))
    assert got["n_confidence_edges"] == 4
    # uniform pairs: holdout and triad pairs, including (0,1) although training also asked it
    assert got["average_confidence_random_pairs"] == pytest.approx(np.mean([0.8, 0.9, 0.6]))
    assert got["n_random_pairs"] == 3
    assert len(np.unique(pair_keys(triads.pairs[:, 0], triads.pairs[:, 1], n))) == 3


def test_random_agent_confidence_on_random_pairs():
    """Sample mode: E[max(p, 1-p)] for p = Binomial(20, 1/2) / 20 is 0.5881; logprob mode reads exactly 0.5."""
    agent = RandomAgent(k=10, seed=0)
    result = measure_transitivity(300, agent, n_triads=1000, seed=0)
    empty = (np.empty((0, 2), np.int64), np.empty(0))
    sampled = confidence_metrics(np.empty(0), empty, result, 300, np.empty((0, 2), np.int64))
    assert sampled["average_confidence_random_pairs"] == pytest.approx(0.5881, abs=0.007)
    exact = measure_transitivity(300, _exact(agent), n_triads=1000, seed=0)
    logprob = confidence_metrics(np.empty(0), empty, exact, 300, np.empty((0, 2), np.int64))
    assert logprob["average_confidence_random_pairs"] == pytest.approx(0.5, abs=1e-12)


def test_cis_cover_the_truth_and_shrink_with_more_items():
    from uetool.core.metrics import bootstrap_mean_ci

    rng = np.random.default_rng(0)
    values = rng.binomial(1, 0.3, 2000).astype(float)
    low, high = bootstrap_mean_ci(values, seed=1)
    assert low < 0.3 < high and high - low == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 2000), rel=0.15)
    wide = bootstrap_mean_ci(values[:200], seed=1)
    assert wide[1] - wide[0] > 2.5 * (high - low)
    assert bootstrap_mean_ci(values, seed=1) == [low, high]  # seeded
    assert np.isnan(bootstrap_mean_ci(np.array([np.nan]), seed=0)).all()


def test_cycle_cis_bracket_the_estimate_and_cover_fair_coins():
    result = measure_transitivity(200, RandomAgent(k=10, seed=4), n_triads=1000, seed=4)
    low, high = result.metrics["log10_cycle_probability_ci"]
    assert low < result.metrics["log10_cycle_probability"] < high and low < np.log10(0.25) < high
    h_low, h_high = result.metrics["hard_cycle_rate_ci"]
    assert h_low < result.metrics["hard_cycle_rate"] < h_high
