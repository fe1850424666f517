"""benchmarks/robustness.py keeps its --json keys (a public contract) and tells its agents apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _bench(agent: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "robustness.py"), "--agent", agent, "--suite",
                           "cpu", "--outcomes", "main", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_benchmark_prints_its_keys_and_flags_only_the_label_biased_agent():
    biased = _bench("label_biased")
    assert set(biased) == {"agent", "suite", "outcomes", "seed", "flagged_variants", "min_stability",
                           "monotonicity_rate", "wall_s"}
    assert biased["flagged_variants"] == ["labels_12"]
    monotone = _bench("monotone")
    assert monotone["flagged_variants"] == [] and monotone["monotonicity_rate"] == 1.0
    assert monotone["min_stability"] > 0.99
