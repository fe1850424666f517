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
