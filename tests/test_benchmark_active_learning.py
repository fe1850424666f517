"""benchmarks/active_learning.py --tokenizer: the loop's questions counted in a model's tokens against the paper's
method, with its --json keys (a public contract)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from uetool.core.cost import paper_pairs


def _bench(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "active_learning.py"), *args, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tokens_of_the_asked_prompts_against_the_papers_budget():
    out = _bench("--n", "40", "--mode", "logprob", "--tokenizer", "tiny-random")
    assert {"tokens_computed", "reference_method_tokens", "tokens_share_of_reference", "queried_pairs",
            "holdout_accuracy"} <= set(out)
    requests = 2 * (out["queried_pairs"] + out["holdout_pairs"])
    assert out["asked_requests"] == requests
    mean, prefix = out["mean_prompt_tokens"], out["prefix_tokens"]
    # logprob: each prompt computed once after the shared prefix, which is computed once
    assert out["tokens_computed"] == pytest.approx(requests * (mean - prefix) + prefix, abs=1)
    assert out["reference_method_tokens"] == pytest.approx(2 * paper_pairs(40) * 10 * (mean + 10), abs=1)
    assert out["tokens_share_of_reference"] == pytest.approx(out["tokens_computed"] / out["reference_method_tokens"])
    sampled = _bench("--n", "40", "--mode", "sample", "--tokenizer", "tiny-random")
    asked, mean, prefix = sampled["asked_requests"], sampled["mean_prompt_tokens"], sampled["prefix_tokens"]
    # sample mode: K=10 samples of up to 10 tokens each on top, from one prefill per request
    assert sampled["tokens_computed"] == pytest.approx(asked * (mean - prefix) + prefix + asked * 10 * 10, abs=1)
    missing = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "active_learning.py"), "--n", "40",
                              "--tokenizer", "gpt-4o"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode != 0 and "not available offline" in missing.stderr
