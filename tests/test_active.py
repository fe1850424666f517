import numpy as np
import pytest
from scipy.stats import pearsonr

from uetool.core.active import (
    ActiveLearningConfig,
    ActiveLearningState,
    initial_regular_graph,
    plan_holdout,
    run_active_learning,
    select_pairs,
)
from uetool.core.agents import RandomAgent, ThurstonianAgent
from uetool.core.graph import HOLDOUT, TRAIN, contains, pair_keys
from uetool.core.metrics import accuracy


@pytest.fixture(scope="module")
def run200():
    agent = ThurstonianAgent.random_truth(200, seed=0)
    config = ActiveLearningConfig(seed=0, pairs_per_round=200)
    return agent, config, run_active_learning(200, agent, config)


def test_recovers_truth_and_respects_budget(run200):
    agent, config, result = run200
    assert pearsonr(result.fit.mean, agent.mean)[0] > 0.99
    train = result.graph.select(TRAIN)
    assert len(train) == config.budget(200)
    assert len(np.unique(result.graph.keys)) == len(result.graph)  # no pair asked twice


def test_holdout_accuracy_is_calibrated_against_bayes(run200):
    agent, config, result = run200
    hold = result.graph.select(HOLDOUT)
    p_obs, _ = hold.probabilities()
    bayes = accuracy(agent.true_probability(hold.a, hold.b), p_obs)
    assert result.metrics["holdout_accuracy"] >= bayes - 0.03
    assert result.metrics["holdout_accuracy"] <= bayes + 0.03


def test_holdout_disjoint_from_training(run200):
    _, _, result = run200
    hold_keys = np.sort(result.graph.select(HOLDOUT).keys)
    assert len(hold_keys) == 995  # min(5% of 19,900 pairs, 1000)
    assert not contains(hold_keys, result.graph.select(TRAIN).keys).any()


def test_random_agent_baseline():
    results = [run_active_learning(300, RandomAgent(k=10, seed=s), ActiveLearningConfig(seed=s)) for s in (2, 3, 4)]
    # E[max(X, 20 - X)] / 20 for X ~ Bin(20, 1/2) = 0.5881 (the paper's 58.7%)
    assert np.mean([r.metrics["average_confidence"] for r in results]) == pytest.approx(0.588, abs=0.005)
    # per run the held-out accuracy has SD ~0.016 (1,000 pairs); the mean of three must sit at chance
    assert np.mean([r.metrics["holdout_accuracy"] for r in results]) == pytest.approx(0.5, abs=0.03)


def test_deterministic_for_a_seed():
    agent = ThurstonianAgent.random_truth(80, seed=2)
    config = ActiveLearningConfig(seed=5, pairs_per_round=100)
    r1, r2 = run_active_learning(80, agent, config), run_active_learning(80, agent, config)
    assert np.array_equal(r1.graph.keys, r2.graph.keys) and np.array_equal(r1.fit.mean, r2.fit.mean)
    r3 = run_active_learning(80, agent, ActiveLearningConfig(seed=6, pairs_per_round=100))
    assert not np.array_equal(np.sort(r1.graph.keys), np.sort(r3.graph.keys))


def test_resume_from_checkpoint_is_identical():
    agent = ThurstonianAgent.random_truth(80, seed=2)
    config = ActiveLearningConfig(seed=5, pairs_per_round=100)
    full = run_active_learning(80, agent, config)
    saved = []

    class Killed(Exception):
        pass

    def checkpoint(state):
        saved.append(state.to_bytes())
        if state.next_round == 3:
            raise Killed

    with pytest.raises(Killed):
        run_active_learning(80, agent, config, on_round=checkpoint)
    state = ActiveLearningState.from_bytes(saved[-1])
    already_asked = len(state.graph)
    assert already_asked < len(full.graph)
    asked = []

    def counting_agent(pairs):
        asked.append(len(pairs))
        return agent(pairs)

    resumed = run_active_learning(80, counting_agent, config, state=state)
    assert np.array_equal(resumed.graph.keys, full.graph.keys)
    assert np.array_equal(resumed.fit.mean, full.fit.mean)
    assert sum(asked) == len(full.graph) - already_asked  # nothing asked twice


def test_initial_graph_is_two_regular():
    pairs = initial_regular_graph(50, 2, np.random.default_rng(0))
    degree = np.bincount(pairs.ravel(), minlength=50)
    assert len(pairs) == 50 and np.all(degree == 2)


def test_selection_prefers_close_low_degree_pairs_without_enumeration():
    n = 200_000  # 2e10 possible pairs: any enumeration would run out of memory
    rng = np.random.default_rng(0)
    mu = rng.normal(size=n)
    degree = rng.integers(2, 10, n)
    config = ActiveLearningConfig(seed=0)
    pairs = select_pairs(mu, degree, np.empty(0, np.int64), 5_000, rng, config)
    assert len(np.unique(pair_keys(pairs[:, 0], pairs[:, 1], n))) == 5_000
    gaps = np.abs(mu[pairs[:, 0]] - mu[pairs[:, 1]])
    random_gaps = np.abs(mu[rng.integers(0, n, 5000)] - mu[rng.integers(0, n, 5000)])
    assert np.median(gaps) < np.quantile(random_gaps, 0.10)
    assert np.mean(degree[pairs[:, 0]] + degree[pairs[:, 1]]) < np.mean(degree) * 2


def test_plan_holdout_fixed_by_seed():
    c = ActiveLearningConfig(seed=9)
    assert np.array_equal(plan_holdout(1000, c), plan_holdout(1000, c))
    assert not np.array_equal(plan_holdout(1000, c), plan_holdout(1000, ActiveLearningConfig(seed=10)))


def test_pseudolabels_do_not_leak_into_metrics():
    agent = ThurstonianAgent.random_truth(60, seed=4)
    config = ActiveLearningConfig(seed=4, pairs_per_round=100, use_pseudolabels=True)
    result = run_active_learning(60, agent, config)
    assert result.state.pseudo_a.size > 0 and result.state.pseudo_label.dtype == np.int8
    assert result.metrics["n_edges"] == len(result.graph.select(TRAIN))
    restored = ActiveLearningState.from_bytes(result.state.to_bytes())
    assert np.array_equal(restored.pseudo_a, result.state.pseudo_a)


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match="p_percent"):
        ActiveLearningConfig(p_percent=0)
    with pytest.raises(ValueError, match="ask\\(\\) must return"):
        run_active_learning(10, lambda pairs: np.zeros((len(pairs), 5)), ActiveLearningConfig())


# --- the reference's schedule (conf/fit/paper.yaml) and the uniform-random baseline -------------------------------

PAPER_SCHEDULE = dict(use_pseudolabels=True, pseudolabel_candidates=None, max_widen=4, quantile_pool="remaining",
                      top_up_initial=True)


def _first_round_pairs(n: int, config: ActiveLearningConfig) -> np.ndarray:
    agent = ThurstonianAgent.random_truth(n, seed=1)
    result = run_active_learning(n, agent, config)
    train = result.graph.select(TRAIN)
    return np.stack([train.a, train.b], 1)[train.round == 0]


def test_top_up_restores_the_initial_graph_lost_to_the_holdout():
    # n=30: 435 pairs, a holdout of 21 takes ~3 of the 30 cycle edges on average; over 5 seeds some must be taken
    lost = 0
    for seed in range(5):
        plain = _first_round_pairs(30, ActiveLearningConfig(seed=seed, edge_multiplier=0.25, top_up_initial=False))
        topped = _first_round_pairs(30, ActiveLearningConfig(seed=seed, edge_multiplier=0.25))
        assert len(topped) == 30  # n * degree / 2, as networkx.random_regular_graph(2, n) has
        assert set(map(tuple, plain)) <= set(map(tuple, topped))  # the cycle's surviving edges are kept
        lost += 30 - len(plain)
    assert lost > 0


def test_remaining_pool_takes_percentiles_over_unasked_pairs_only():
    n, m = 40, 10
    mu = np.arange(n, dtype=float)  # |mu_a - mu_b| = b - a
    degree = np.zeros(n, np.int64)  # every degree sum is 0: only the utility gap decides
    a, b = np.triu_indices(n, k=1)
    asked = np.sort(pair_keys(a, b, n)[(b - a) <= 3])  # every pair with a gap up to 3 is already asked
    gaps_left = (b - a)[(b - a) > 3]
    threshold = np.quantile(gaps_left, 0.10)  # the reference's np.percentile over the remaining pool
    config = ActiveLearningConfig(max_widen=0)  # quantile_pool="remaining", the default
    picked = select_pairs(mu, degree, asked, m, np.random.default_rng(0), config)
    assert np.all(picked[:, 1] - picked[:, 0] <= threshold) and np.all(picked[:, 1] - picked[:, 0] > 3)
    # over all pairs the 10th percentile is a gap <= 3, all asked: no candidate, so max_widen=0 fills at random
    uniform = select_pairs(mu, degree, asked, m, np.random.default_rng(0),
                           ActiveLearningConfig(max_widen=0, quantile_pool="all"))
    assert np.max(uniform[:, 1] - uniform[:, 0]) > threshold


def test_max_widen_counts_the_widenings_after_the_first_try():
    n, m = 40, 10
    mu, degree = np.arange(n, dtype=float), np.zeros(n, np.int64)
    a, b = np.triu_indices(n, k=1)
    asked = np.sort(pair_keys(a, b, n)[(b - a) <= 3])
    first, widened = np.quantile(b - a, 0.10), np.quantile(b - a, 0.15)
    assert first <= 3 < widened  # the first try finds only asked pairs, one 1.5x widening finds new ones
    picked = {w: select_pairs(mu, degree, asked, m, np.random.default_rng(0),
                              ActiveLearningConfig(max_widen=w, quantile_pool="all")) for w in (0, 1)}
    assert np.max(picked[1][:, 1] - picked[1][:, 0]) <= widened
    assert np.max(picked[0][:, 1] - picked[0][:, 0]) > widened  # no widening allowed: filled at random


def test_random_pair_selection_is_uniform_over_unasked_pairs():
    n, m = 60, 400
    mu = np.arange(n, dtype=float)
    degree = np.zeros(n, np.int64)
    asked = np.sort(pair_keys(np.arange(n - 1), np.arange(1, n), n))
    picked = select_pairs(mu, degree, asked, m, np.random.default_rng(0), ActiveLearningConfig(pair_selection="random"))
    keys = pair_keys(picked[:, 0], picked[:, 1], n)
    assert len(np.unique(keys)) == m and not contains(asked, keys).any()
    a, b = np.triu_indices(n, k=1)
    left = (b - a)[(b - a) > 1]
    # the mean gap of 400 uniform unasked pairs: within 4 standard errors of the pool's mean (active picks ~1-3)
    assert abs(np.mean(picked[:, 1] - picked[:, 0]) - left.mean()) < 4 * left.std() / np.sqrt(m)


def test_paper_pseudolabels_score_every_unasked_pair():
    n = 40
    agent = ThurstonianAgent.random_truth(n, seed=3)
    plain = run_active_learning(n, agent, ActiveLearningConfig(seed=3, pairs_per_round=50, **{
        **PAPER_SCHEDULE, "use_pseudolabels": False}))
    paper = run_active_learning(n, agent, ActiveLearningConfig(seed=3, pairs_per_round=50, **PAPER_SCHEDULE))
    assert np.array_equal(plain.graph.keys, paper.graph.keys)  # pseudolabels come after the last question
    a, b = np.triu_indices(n, k=1)
    unasked = ~contains(np.sort(plain.graph.keys), pair_keys(a, b, n))
    pred = plain.fit.predict(a[unasked], b[unasked])  # the fit the pseudolabels are drawn from
    sure = (pred >= 0.95) | (pred <= 0.05)
    expected = set(zip(a[unasked][sure], b[unasked][sure], (pred[sure] >= 0.5).astype(int), strict=True))
    got = set(zip(paper.state.pseudo_a, paper.state.pseudo_b, paper.state.pseudo_label.astype(int), strict=True))
    assert got == expected and len(got) > 100


def test_all_pair_pseudolabels_refuse_a_pair_space_too_big(monkeypatch):
    import uetool.core.active as active

    monkeypatch.setattr(active, "_ALL_PSEUDOLABEL_LIMIT", 100)
    agent = ThurstonianAgent.random_truth(30, seed=0)
    with pytest.raises(ValueError, match="pseudolabel_candidates=null"):
        run_active_learning(30, agent, ActiveLearningConfig(pairs_per_round=50, **PAPER_SCHEDULE))


def test_schedule_options_are_validated():
    for key, value in (("quantile_pool", "some"), ("pair_selection", "greedy"), ("max_widen", -1),
                       ("pseudolabel_candidates", 0)):
        with pytest.raises(ValueError, match=key):
            ActiveLearningConfig(**{key: value})
