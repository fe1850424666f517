"""The Ray Train Thurstonian fit, the fit backend switch, and bootstrap replicates as parallel Ray tasks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from tests.conftest import compose
from uetool.core.active import ActiveLearningConfig, run_active_learning
from uetool.core.agents import ThurstonianAgent
from uetool.core.graph import sample_new_pairs
from uetool.core.thurstonian import bootstrap_intervals, fit_thurstonian
from uetool.fit.bootstrap import BootstrapProblem, bootstrap_intervals_many, bootstrap_intervals_ray
from uetool.fit.ray_train import fit_function_for, fit_thurstonian_ray_train
from uetool.runtime.config import validate_config


def _edges(n: int, seed: int, per_outcome: float = 2.0):
    """Simulated edges with known true utilities: m ~ per_outcome * n * log2(n) random pairs, 10 samples each."""
    agent = ThurstonianAgent.random_truth(n, k=10, seed=seed)
    pairs = sample_new_pairs(n, int(per_outcome * n * np.log2(n)), np.random.default_rng(seed))
    counts = agent(pairs)
    w = counts[:, :4].sum(1)
    return agent, pairs[:, 0], pairs[:, 1], (counts[:, 0] + counts[:, 2]) / w, w


@pytest.mark.slow
def test_ray_train_fit_equals_local_fit(ray_cluster):
    agent, a, b, p, w = _edges(150, seed=3)
    local = fit_thurstonian(150, a, b, p, w)
    # 2 workers x 1 CPU fit the 2-CPU test cluster exactly (the V2 controller itself takes no CPU)
    dist = fit_thurstonian_ray_train(150, a, b, p, w, num_workers=2, use_gpu=False)
    assert dist.converged and dist.n_edges == a.size == local.n_edges
    assert pearsonr(dist.mean, local.mean)[0] > 0.999
    np.testing.assert_allclose(dist.mean, local.mean, atol=5e-3)
    np.testing.assert_allclose(dist.variance, local.variance, rtol=2e-2, atol=2e-3)
    assert dist.loss == pytest.approx(local.loss, rel=1e-6)
    assert dist.mean.mean() == pytest.approx(0, abs=1e-9) and dist.mean.std() == pytest.approx(1, abs=1e-9)
    assert pearsonr(dist.mean, agent.mean)[0] > 0.99  # and both recover the ground truth
    assert dist.train_accuracy == pytest.approx(local.train_accuracy, abs=2e-3)


def test_ray_train_fit_fails_fast_when_no_worker_fits(ray_cluster):
    _, a, b, p, w = _edges(20, seed=0)
    with pytest.raises(ValueError, match="autoscale=true"):
        fit_thurstonian_ray_train(20, a, b, p, w, num_workers=2, cpus_per_worker=64)


def test_fit_backend_is_validated():
    with pytest.raises(ValueError, match=r"`fit.backend` must be one of \('local', 'ray_train'\), got 'spark'"):
        validate_config(compose(["fit.backend=spark"]))
    with pytest.raises(ValueError, match="num_workers` must be an integer >= 1"):
        validate_config(compose(["fit.backend=ray_train", "fit.ray_train.num_workers=0"]))
    with pytest.raises(ValueError, match=r"unknown `fit.ray_train` keys \['gpus'\]"):
        validate_config(compose(["+fit.ray_train.gpus=1"]))
    with pytest.raises(ValueError, match="`fit.bootstrap_tasks` must be >= 1"):
        validate_config(compose(["fit.bootstrap_tasks=0"]))
    cfg = compose(["fit.backend=ray_train", "fit.ray_train.num_workers=4"])
    fit_fn = fit_function_for(validate_config(cfg).fit.ray_train)
    assert fit_fn.func is fit_thurstonian_ray_train and fit_fn.keywords["num_workers"] == 4
    assert fit_fn.keywords["use_gpu"] is False


def test_active_learning_uses_the_given_fit_function():
    agent = ThurstonianAgent.random_truth(30, seed=1)
    config = ActiveLearningConfig(seed=1, pairs_per_round=40)
    calls = []

    def counting_fit(*args, **kwargs):
        calls.append(args[1].size)
        return fit_thurstonian(*args, **kwargs)

    default = run_active_learning(30, agent, config)
    routed = run_active_learning(30, agent, config, fit_fn=counting_fit)
    assert len(calls) >= 2 and calls == sorted(calls)  # one fit per round on a growing graph, plus the final one
    np.testing.assert_array_equal(routed.fit.mean, default.fit.mean)


def test_bootstrap_tasks_equal_sequential(ray_cluster):
    _, a, b, p, w = _edges(40, seed=5)
    fit = fit_thurstonian(40, a, b, p, w)
    low, high = bootstrap_intervals_ray(fit, a, b, p, w, n_boot=12, seed=7, num_tasks=3)
    seq_low, seq_high = bootstrap_intervals(fit, a, b, p, w, n_boot=12, seed=7, replicates_per_chunk=4)
    np.testing.assert_array_equal(low, seq_low)
    np.testing.assert_array_equal(high, seq_high)
    assert np.all(low < fit.mean) and np.all(fit.mean < high)
    other_low, _ = bootstrap_intervals(fit, a, b, p, w, n_boot=12, seed=8, replicates_per_chunk=4)
    assert not np.array_equal(other_low, low)  # the seed matters


def test_bootstrap_many_models_in_parallel_equals_each_sequential(ray_cluster):
    problems = []
    for seed, n in ((0, 25), (1, 35)):
        _, a, b, p, w = _edges(n, seed=seed)
        problems.append(BootstrapProblem(fit_thurstonian(n, a, b, p, w), a, b, p, w, seed=seed))
    results = bootstrap_intervals_many(problems, n_boot=10, replicates_per_chunk=5)
    for problem, (low, high) in zip(problems, results, strict=True):
        seq = bootstrap_intervals(problem.fit, problem.a, problem.b, problem.p, problem.weight, n_boot=10,
                                  seed=problem.seed, replicates_per_chunk=5)
        np.testing.assert_array_equal(low, seq[0])
        np.testing.assert_array_equal(high, seq[1])
        assert low.shape == (problem.fit.mean.size,)


@pytest.mark.slow
def test_compute_utilities_with_ray_train_backend_and_parallel_bootstrap(ray_cluster, tmp_path):
    """The job dispatches on fit.backend / fit.bootstrap_tasks. Its engine replica holds both CPUs of the 2-CPU
    cluster (the default pool.num_cpus) and stays up meanwhile: the Train workers share the idle replica's CPUs
    instead of failing for want of free ones."""
    import pandas as pd

    from uetool.core.graph import TRAIN, PreferenceGraph
    from uetool.runtime.compute import compute_utilities

    # edge_multiplier 0.1: the whole budget (22 pairs for 40 outcomes) fits in the first round, so two fits in all
    cfg = compose(["model=tiny-random", "engine=simulated", "outcomes=quickstart", "progress=false",
                   "fit.edge_multiplier=0.1", "fit.bootstrap=8", f"results_root={tmp_path}",
                   "fit.backend=ray_train", "fit.bootstrap_tasks=2"])
    assert cfg["pool"]["num_cpus"] == 2 and cfg["fit"]["ray_train"]["cpus_per_worker"] == 1
    out = compute_utilities(cfg)
    utilities = pd.read_parquet(f"{out['out_dir']}/utilities.parquet")
    train = PreferenceGraph.from_frame(pd.read_parquet(f"{out['out_dir']}/edges.parquet"), 40).select(TRAIN)
    assert out["metrics"]["n_edges"] == len(train) == 22
    p, w = train.probabilities("distribution", np.random.default_rng([0, 11]))
    local = fit_thurstonian(40, train.a, train.b, p, w)  # the same edges fitted by the local backend
    assert pearsonr(utilities["mean"], local.mean)[0] > 0.999
    np.testing.assert_allclose(utilities["mean"], local.mean, atol=1e-2)
    low, high = bootstrap_intervals(local, train.a, train.b, p, w, n_boot=8, seed=0, replicates_per_chunk=4)
    assert utilities["ci_low"].notna().all() and (utilities["ci_low"] <= utilities["ci_high"]).all()
    # same replicates (seeded per replicate) from a slightly different warm start: nearly the same intervals
    np.testing.assert_allclose(utilities["ci_low"], low, atol=0.05)
    np.testing.assert_allclose(utilities["ci_high"], high, atol=0.05)
