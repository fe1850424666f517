import numpy as np
import pandas as pd
import pytest

from uetool.core.agents import PositionBiasedAgent, RandomAgent, RefusingAgent, ThurstonianAgent, hash_uniforms
from uetool.core.edges import position_bias, response_rates
from uetool.core.metrics import average_confidence, cosine_similarity, cycle_statistics


def test_cycle_formula_on_a_known_triangle():
    # a > b (0.9), b > c (0.8), and c > a (P_ac = 0.3): a fairly cyclic triad
    stats = cycle_statistics(np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.9, 0.8, 0.3]), 3, n_triads=50)
    expected = 0.9 * 0.8 * 0.7 + 0.1 * 0.2 * 0.3
    assert stats["log10_cycle_probability"] == pytest.approx(np.log10(expected))
    assert stats["hard_cycle_rate"] == 1.0


def test_cycle_probability_of_fair_coins_is_a_quarter():
    a, b = np.triu_indices(30, k=1)
    stats = cycle_statistics(a, b, np.full(a.size, 0.5), 30, n_triads=200, seed=1)
    assert stats["log10_cycle_probability"] == pytest.approx(np.log10(0.25))
    assert stats["hard_cycle_rate"] == 0.0  # ties are not cycles


def test_transitive_preferences_have_no_hard_cycles():
    a, b = np.triu_indices(20, k=1)
    stats = cycle_statistics(a, b, np.full(a.size, 0.95), 20, n_triads=300)
    assert stats["hard_cycle_rate"] == 0.0 and stats["log10_cycle_probability"] < -1


def test_cosine_similarity_over_shared_outcomes():
    u = pd.Series([1.0, -1.0, 0.5], index=["x", "y", "z"])
    v = pd.Series([2.0, -2.0, 9.0], index=["x", "y", "w"])
    assert cosine_similarity(u, v) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="share no outcomes"):
        cosine_similarity(u, pd.Series([1.0], index=["q"]))


def test_average_confidence():
    assert average_confidence(np.array([0.9, 0.2, 0.5])) == pytest.approx((0.9 + 0.8 + 0.5) / 3)


def test_hash_uniforms_are_uniform_and_order_independent():
    a, b = np.arange(2000), np.arange(2000) + 1
    u = hash_uniforms(3, a, b, 0, 10, 1)
    assert abs(u.mean() - 0.5) < 0.01 and 0 <= u.min() and u.max() < 1
    assert np.array_equal(hash_uniforms(3, a[::-1], b[::-1], 0, 10, 1), u[::-1])
    assert not np.array_equal(hash_uniforms(4, a, b, 0, 10, 1), u)


def test_agents_answer_like_models():
    pairs = np.stack([np.arange(0, 4000, 2), np.arange(1, 4000, 2)], 1)
    truth = ThurstonianAgent.random_truth(4000, seed=1)
    counts = truth(pairs)
    assert counts.shape == (2000, 6) and np.all(counts[:, :4].sum(1) == 20)
    assert np.array_equal(truth(pairs[::-1]), counts[::-1])  # batching does not change answers
    biased = PositionBiasedAgent(RandomAgent(seed=1), bias=0.4)
    assert position_bias(biased(pairs))["p_first"] == pytest.approx(0.7, abs=0.01)
    refusing = RefusingAgent(truth, rate=0.25)
    assert response_rates(refusing(pairs))["refusal_rate"] == pytest.approx(0.25, abs=0.01)
