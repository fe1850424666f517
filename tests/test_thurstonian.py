import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.stats import pearsonr

from uetool.core.agents import ThurstonianAgent
from uetool.core.graph import sample_new_pairs
from uetool.core.thurstonian import bootstrap_intervals, fit_thurstonian, predict_proba, thurstonian_objective


def _data(n=60, m=900, seed=0, k=10):
    agent = ThurstonianAgent.random_truth(n, k=k, seed=seed)
    pairs = sample_new_pairs(n, m, np.random.default_rng(seed))
    counts = agent(pairs)
    p = (counts[:, 0] + counts[:, 2]) / counts[:, :4].sum(1)
    return agent, pairs, p, counts[:, :4].sum(1)


def test_gradient_matches_finite_differences():
    _, pairs, p, w = _data(n=12, m=40)
    rng = np.random.default_rng(1)
    theta = rng.normal(size=24) * 0.5
    args = (pairs[:, 0], pairs[:, 1], p, w, 12, 1.0, 0.1)
    err = check_grad(lambda t: thurstonian_objective(t, *args)[0], lambda t: thurstonian_objective(t, *args)[1],
                     theta)
    assert err < 1e-6


def test_recovers_ground_truth():
    agent, pairs, p, w = _data(n=60, m=1500)
    fit = fit_thurstonian(60, pairs[:, 0], pairs[:, 1], p, w)
    assert fit.converged
    assert pearsonr(fit.mean, agent.mean)[0] > 0.98
    assert fit.mean.mean() == pytest.approx(0, abs=1e-9) and fit.mean.std() == pytest.approx(1, abs=1e-9)


def test_stable_far_in_the_tails():
    # outcome 0 beats everything unanimously: z runs far past 5.5 where a float32 Phi saturates
    a = np.zeros(9, np.int64)
    b = np.arange(1, 10)
    fit = fit_thurstonian(10, a, b, np.ones(9), np.full(9, 20.0))
    assert np.all(np.isfinite(fit.mean)) and np.all(np.isfinite(fit.variance)) and np.isfinite(fit.loss)
    assert fit.mean[0] == fit.mean.max()


def test_deterministic_and_warm_start():
    _, pairs, p, w = _data()
    f1 = fit_thurstonian(60, pairs[:, 0], pairs[:, 1], p, w)
    f2 = fit_thurstonian(60, pairs[:, 0], pairs[:, 1], p, w)
    assert np.array_equal(f1.mean, f2.mean)
    warm = fit_thurstonian(60, pairs[:, 0], pairs[:, 1], p, w, init=f1.theta)
    assert warm.n_iter < f1.n_iter
    np.testing.assert_allclose(warm.mean, f1.mean, atol=1e-3)


def test_weights_matter():
    # the same soft label observed once vs 100 times must not pull equally against a conflicting edge
    a, b = np.array([0, 0]), np.array([1, 1])
    heavy_win = fit_thurstonian(2, a, b, np.array([1.0, 0.0]), np.array([100.0, 1.0]))
    assert heavy_win.mean[0] > heavy_win.mean[1]


def test_bootstrap_intervals_cover_truth():
    agent, pairs, p, w = _data(n=40, m=700, seed=3)
    fit = fit_thurstonian(40, pairs[:, 0], pairs[:, 1], p, w)
    low, high = bootstrap_intervals(fit, pairs[:, 0], pairs[:, 1], p, w, n_boot=60, seed=0)
    assert np.all(low <= high)
    truth = (agent.mean - agent.mean.mean()) / agent.mean.std()
    coverage = np.mean((truth >= low - 0.05) & (truth <= high + 0.05))
    assert coverage > 0.75
    again = bootstrap_intervals(fit, pairs[:, 0], pairs[:, 1], p, w, n_boot=60, seed=0)
    assert np.array_equal(low, again[0])


def test_predict_proba_symmetry():
    mean, var = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    assert predict_proba(mean, var, np.array([0]), np.array([1]))[0] == pytest.approx(
        1 - predict_proba(mean, var, np.array([1]), np.array([0]))[0])


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        fit_thurstonian(2, np.array([0]), np.array([5]), np.array([1.0]))
