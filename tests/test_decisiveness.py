"""Decisiveness and the verdict (uetool.core.decisiveness) against agents whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.agents import ThurstonianAgent
from uetool.core.decisiveness import THRESHOLDS, decisiveness_metrics, format_verdict, verdict_flags, verdict_reasons
from uetool.core.edges import position_bias


def _logprob_counts(p_a_orig, p_a_flip, other=0.0, k=1):
    """K x (P(A), P(B)) per order with `other` of the mass on neither label (the elicitor's logprob counts)."""
    p_a_orig, p_a_flip = np.asarray(p_a_orig, float), np.asarray(p_a_flip, float)
    on = 1.0 - other
    counts = np.zeros((len(p_a_orig), 6))
    counts[:, 0], counts[:, 1] = k * on * p_a_orig, k * on * (1 - p_a_orig)
    counts[:, 2], counts[:, 3] = k * on * p_a_flip, k * on * (1 - p_a_flip)
    counts[:, 4] = 2 * k * other
    return counts


def _metrics(counts, mode):
    m = decisiveness_metrics(counts, mode=mode)
    m["position_bias"] = position_bias(counts)["p_first"]
    return m


def test_an_indifferent_off_label_model_gets_the_verdict_and_a_decided_one_none():
    rng = np.random.default_rng(0)
    near_half = 0.5 + rng.uniform(-0.032, 0.032, 300)  # SmolLM2 on the quickstart: every P(A) in 0.468-0.532
    smol = _metrics(_logprob_counts(near_half, near_half, other=0.55), "logprob")
    assert smol["decided_share"] == 0 and smol["decided_share_chance"] == 0
    assert smol["preference_strength"] == pytest.approx(np.mean(np.abs(near_half - 0.5)))
    assert smol["off_label_share"] == pytest.approx(0.55)
    reasons = verdict_reasons(smol, mode="logprob")
    assert len(reasons) == 2 and "indifferent" in reasons[0] and "off-label (55%" in reasons[1]
    assert verdict_flags(reasons) == ["indifferent", "off-label"]
    assert format_verdict(reasons).startswith("utilities below are not meaningful: the model is effectively")
    agent = ThurstonianAgent.random_truth(40, seed=1, scale=2.0)  # strong preferences: P(A) far from 0.5
    pairs = np.array([(a, b) for a in range(40) for b in range(a + 1, 40)])
    p = agent.true_probability(pairs[:, 0], pairs[:, 1])
    strong = _metrics(_logprob_counts(p, p), "logprob")
    assert strong["decided_share"] > 0.6 and verdict_reasons(strong, mode="logprob") == []
    assert format_verdict([]) is None


def test_the_indifference_threshold_sits_at_chance_plus_the_margin():
    beyond, margin = THRESHOLDS["decided_beyond"], THRESHOLDS["indifferent_margin"]
    for share, indifferent in ((margin, True), (margin + 0.02, False)):
        n = 100
        decided = int(round(share * n))
        p = np.r_[np.full(decided, 0.5 + beyond + 0.05), np.full(n - decided, 0.5)]
        m = _metrics(_logprob_counts(p, p), "logprob")
        assert m["decided_share"] == pytest.approx(decided / n)
        assert any("indifferent" in r for r in verdict_reasons(m, mode="logprob")) is indifferent


def test_fair_coins_sampled_k10_are_indifferent_by_the_chance_correction():
    """Sampled at K=10 per order, a fair coin decides an edge beyond 0.6/0.4 about half the time: exactly
    P(X <= 8) + P(X >= 12) = 0.5034 for X ~ Bin(20, 1/2). The chance share cancels it."""
    rng = np.random.default_rng(3)
    n = 4000
    a_orig, a_flip = rng.binomial(10, 0.5, n), rng.binomial(10, 0.5, n)
    counts = np.stack([a_orig, 10 - a_orig, a_flip, 10 - a_flip, np.zeros(n), np.zeros(n)], 1).astype(float)
    m = _metrics(counts, "sample")
    assert m["decided_share_chance"] == pytest.approx(0.50344, abs=1e-4)
    assert abs(m["decided_share"] - m["decided_share_chance"]) < 0.03
    assert any("indifferent" in r for r in verdict_reasons(m, mode="sample"))
    decided = rng.binomial(10, 0.9, (n, 2))  # a model that prefers a 9 times in 10
    counts = np.stack([decided[:, 0], 10 - decided[:, 0], decided[:, 1], 10 - decided[:, 1], np.zeros(n),
                       np.zeros(n)], 1).astype(float)
    assert verdict_reasons(_metrics(counts, "sample"), mode="sample") == []


def test_answering_by_position_and_unparseable_replies_are_named():
    n = 200
    always_first = np.zeros((n, 6))
    always_first[:, 0] = 10  # "A" in the original order: a chosen
    always_first[:, 3] = 10  # "A" when flipped: b chosen
    m = _metrics(always_first, "sample")
    assert m["position_bias"] == 1.0 and m["preference_strength"] == 0  # both orders cancel: P(a) = 0.5
    reasons = verdict_reasons(m, mode="sample")
    assert any("by position (picks the first-shown option 100%" in r for r in reasons)
    assert any("indifferent" in r for r in reasons)
    garbled = np.zeros((n, 6))
    garbled[:, 0], garbled[:, 2], garbled[:, 4] = 3, 3, 14  # a chosen when parseable, 70% unparseable
    m = _metrics(garbled, "sample")
    assert m["off_label_share"] == pytest.approx(0.7)
    assert any("off-label (70% of the replies are unparseable or refusals)" in r
               for r in verdict_reasons(m, mode="sample"))
