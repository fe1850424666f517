import numpy as np
import pandas as pd
import pytest

from uetool.core.agents import PositionBiasedAgent, RandomAgent, RefusingAgent, ThurstonianAgent, hash_uniforms
from uetool.core.edges import position_bias, response_rates
from uetool.core.metrics import average_confidence, cosine_similarity


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
