"""Explicit lotteries (EXPERIMENTS.md s.6): the seeded generator and the expected-utility metrics, checked against
agents whose answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.lotteries import (
    Lottery,
    describe_lottery,
    expected_utilities,
    expected_utility_metrics,
    generate_lotteries,
)


def test_lotteries_are_seeded_whole_percent_and_split_evenly_by_size():
    lotteries = generate_lotteries(510, 100, max_size=3, seed=42)
    assert [len(lot.outcomes) for lot in lotteries].count(2) == 50 and len(lotteries) == 100
    for lot in lotteries:
        assert sum(lot.percents) == 100 and all(1 <= p <= 99 for p in lot.percents)
        assert len(set(lot.outcomes)) == len(lot.outcomes) and all(0 <= o < 510 for o in lot.outcomes)
    assert generate_lotteries(510, 100, seed=42) == lotteries
    assert generate_lotteries(510, 100, seed=43) != lotteries
    assert [len(lot.outcomes) for lot in generate_lotteries(20, 7, max_size=4, seed=1)] == [2, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="max_size"):
        generate_lotteries(2, 5, max_size=3)


def test_a_lottery_is_described_as_the_paper_words_it():
    text = describe_lottery(Lottery((1, 0), (29, 71)), ["A human is happy.", "You get a book."])
    assert text == "- You get a book. with probability 29.0%\n- A human is happy. with probability 71.0%"


def test_an_expected_utility_agent_scores_perfectly():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=200)
    lotteries = generate_lotteries(200, 100, seed=3)
    eu = expected_utilities(mu, lotteries)
    assert eu[0] == pytest.approx(sum(mu[o] * p / 100 for o, p in zip(lotteries[0].outcomes, lotteries[0].percents,
                                                                          strict=True)))
    # any positive affine map of EU is the same utility function (the fit standardises): still perfect
    metrics = expected_utility_metrics(mu, 3.0 * eu + 1.0, lotteries)
    assert metrics["mae_normalized"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["order_preservation"] == 1.0 and metrics["pearson_r"] == pytest.approx(1.0)
    assert metrics["n_pairs"] == 1000 and metrics["n_lotteries"] == 100


def test_a_max_outcome_agent_and_a_reversed_one_are_told_apart():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=200)
    lotteries = generate_lotteries(200, 100, seed=4)
    best = np.array([mu[list(lot.outcomes)].max() for lot in lotteries])
    eu = expected_utilities(mu, lotteries)
    metrics = expected_utility_metrics(mu, best, lotteries)
    # closed form on the same numbers: mean |z(max) - z(EU)|, and the share of all pairs ordered alike
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    assert metrics["mae_normalized"] == pytest.approx(np.mean(np.abs(z(best) - z(eu))))
    i, j = np.triu_indices(100, 1)
    alike = np.mean(np.sign(eu[i] - eu[j]) == np.sign(best[i] - best[j]))
    low, high = metrics["order_preservation_ci"]
    assert low <= alike <= high and 0.5 < metrics["order_preservation"] < 0.95
    reversed_ = expected_utility_metrics(mu, -eu, lotteries)
    # z(-EU) = -z(EU), so the error is 2 |z(EU)| on every lottery
    assert reversed_["order_preservation"] == 0.0
    assert reversed_["mae_normalized"] == pytest.approx(2 * np.mean(np.abs(z(eu))))
    assert reversed_["pearson_r"] == pytest.approx(-1.0)


def test_metrics_refuse_mismatched_utilities():
    lotteries = generate_lotteries(10, 4, seed=0)
    with pytest.raises(ValueError, match="one utility per lottery"):
        expected_utility_metrics(np.zeros(10), np.zeros(3), lotteries)


@pytest.mark.slow  # two active-learning runs at the paper's size (~2 s each)
@pytest.mark.parametrize("rule", ["eu", "max_outcome"])
def test_fitted_utilities_recover_each_agents_expected_utility_error(rule):
    """The paper's size: 510 outcomes and 100 lotteries fitted jointly by active learning from K=10 answers."""
    from uetool.core.active import ActiveLearningConfig, run_active_learning
    from uetool.core.agents import ThurstonianAgent
    from uetool.core.lotteries import lottery_agent

    base = ThurstonianAgent.random_truth(510, k=10, seed=0)
    lotteries = generate_lotteries(510, 100, seed=0)
    agent = lottery_agent(base, lotteries, rule, seed=0)
    assert agent.mean.size == 610
    fit = run_active_learning(610, agent, ActiveLearningConfig(seed=0)).fit
    measured = expected_utility_metrics(fit.mean[:510], fit.mean[510:], lotteries)
    truth = expected_utility_metrics(agent.mean[:510], agent.mean[510:], lotteries)  # the agent's own, noise-free
    if rule == "eu":  # measured at seeds 0-2: MAE 0.041-0.051, order preservation 0.977-0.980
        assert truth["mae_normalized"] == pytest.approx(0.0, abs=1e-12)
        assert measured["mae_normalized"] <= 0.15 and measured["order_preservation"] >= 0.95
    else:  # measured at seeds 0-2: MAE 0.46-0.58 (analytic 0.46-0.56), order preservation 0.73-0.79
        assert measured["mae_normalized"] >= 0.4
        assert measured["mae_normalized"] == pytest.approx(truth["mae_normalized"], abs=0.05)
        assert measured["order_preservation"] == pytest.approx(truth["order_preservation"], abs=0.05)


def test_implicit_lotteries_use_the_same_metrics_over_their_resolutions():
    from uetool.core.lotteries import UncertainEvent

    mu = np.array([0.0, 1.0, -1.0, 2.0, 0.5, -0.5])  # event 0 resolves to 1/2, event 3 to 4/5 (EU 0.4 and 0.2)
    events = [UncertainEvent(0, (1, 2), (0.7, 0.3)), UncertainEvent(3, (4, 5), (0.7, 0.3))]
    np.testing.assert_allclose(expected_utilities(mu, events), [0.4, 0.2])
    metrics = expected_utility_metrics(mu, mu[[0, 3]], events)
    assert metrics["mae_raw"] == pytest.approx((abs(0.0 - 0.4) + abs(2.0 - 0.2)) / 2)
    assert metrics["order_preservation"] == 0.0 and metrics["n_pairs"] == 1  # U says 3 > 0, EU says 0 > 3
    with pytest.raises(ValueError, match="sum to 1"):
        UncertainEvent(0, (1, 2), (0.5, 0.4))
    with pytest.raises(ValueError, match=">= 2 resolutions"):
        UncertainEvent(0, (1,), (1.0,))


def test_the_shipped_implicit_lotteries_parse_in_the_references_order():
    import json
    from importlib import resources

    from uetool.core.lotteries import events_from_json

    data = json.loads(resources.files("uetool.data").joinpath("analyses/implicit_lotteries.json").read_text())
    texts, events = events_from_json(data, start=10)
    assert len(events) == 20 and all(3 <= len(e.outcomes) <= 12 for e in events)
    assert len(texts) == 20 + sum(len(e.outcomes) for e in events) == len(set(texts))
    first = events[0]
    assert first.event == 10 and first.outcomes[0] == 11 and texts[0] == data["base_options"][0]["option"]
    assert events[1].event == first.outcomes[-1] + 1  # each event is followed by its resolutions
    with pytest.raises(ValueError, match="implicit lottery 'x'.*sum to 1"):
        events_from_json({"base_options": [{"option": "x", "sub_options": [{"option": "a", "probability": 0.2},
                                                                           {"option": "b", "probability": 0.2}]}]})
