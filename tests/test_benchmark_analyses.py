"""benchmarks/analyses.py keeps its JSON contract and separates each pair of agents (the numbers are the
benchmark's to print; these checks only guard the contract and the direction)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # benchmark processes at the paper's size


def _bench(experiment: str, agent: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "analyses.py"), "--experiment", experiment,
                           "--agent", agent, "--json"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize(("experiment", "agents", "keys"), [
    ("instrumentality", ("instrumental", "anti_instrumental"), ("score_natural", "score_unnatural")),
    ("maximization", ("maximiser", "random"), ("top1_rate", "top3_rate")),
    ("expected_utility", ("eu", "max_outcome"), ("mae_normalized", "order_preservation")),
    ("expected_utility_implicit", ("eu", "max_outcome"), ("mae_normalized", "order_preservation")),
])
def test_the_benchmark_prints_its_keys_and_tells_the_agents_apart(experiment, agents, keys):
    good, bad = (_bench(experiment, agent) for agent in agents)
    for out, agent in ((good, agents[0]), (bad, agents[1])):
        assert {"experiment", "agent", "seed", "wall_s", *keys} <= set(out) and out["agent"] == agent
    if experiment == "instrumentality":
        assert good["score_natural"] < good["score_unnatural"] and bad["score_unnatural"] < bad["score_natural"]
    elif experiment == "maximization":
        assert good["top1_rate"] >= 0.75 > 0.25 > bad["top1_rate"]
    else:
        assert good["mae_normalized"] <= 0.15 and good["order_preservation"] >= 0.95
        assert bad["mae_normalized"] >= 0.4


@pytest.mark.parametrize(("experiment", "agents", "key"), [
    ("power_seeking", ("power_seeking", "power_averse"), "corr_preference_power"),
    ("fitness", ("fitness_seeking", "indifferent"), "corr_fitness_utility"),
    ("corrigibility", ("indifferent", "incorrigible"), "corr_utility_reversal"),
])
def test_the_correlation_benchmarks_separate_their_agents_by_their_cis(experiment, agents, key):
    high, low = (_bench(experiment, agent) for agent in agents)
    assert high["agent"] == agents[0] and {key, f"{key}_ci", "wall_s"} <= set(high)
    assert high[f"{key}_ci"][0] > low[f"{key}_ci"][1]  # separated by their CIs
    assert (high[key] > 0) if experiment != "corrigibility" else (low[key] < 0)  # the right sign


def test_the_political_benchmark_recovers_the_planted_order():
    out = _bench("political_values", "planted_entities")
    assert out["pc1_spearman_planted"] >= 0.9 and out["n_entities"] == 47
