"""What a newcomer sees first: the quickstart's verdict on SmolLM2 (it prefers nothing) and none on an agent with
strong preferences; re-runs that leave metrics.json byte for byte as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, compose
from uetool.runtime.analysis import run_analysis
from uetool.runtime.compute import compute_utilities

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _quickstart(root, *args: str) -> subprocess.CompletedProcess:
    """The README's first command (python -m jobs.compute_utilities elicitation=logprob) into `root`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    return subprocess.run([sys.executable, "-m", "jobs.compute_utilities", "elicitation=logprob",
                           f"results_root={root}", "progress=false", "ray.num_cpus=2", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_smollm2_quickstart_says_its_utilities_mean_nothing_and_a_decided_agent_gets_no_verdict(tmp_path):
    smol = _quickstart(tmp_path)
    assert smol.returncode == 0, smol.stderr[-3000:]
    assert "VERDICT: utilities below are not meaningful: the model is effectively indifferent" in smol.stdout
    out = tmp_path / "compute_utilities" / "smollm2-135m-instruct"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["decided_share"] <= 0.1 and metrics["verdict"].startswith("utilities below are not meaningful")
    assert "sign agreement of the fit with exact P(A)" in (out / "summary.txt").read_text()
    # what it cost: the prompt tokens computed and reused are those of the prompts it asked, counted apart
    import yaml

    from tests.test_token_accounting import asked_pairs, independent_prompt_tokens
    from uetool.engines.weights import resolve_smollm2

    system = yaml.safe_load((out / "config.yaml").read_text())["elicitation"]["system_message"]
    expected = independent_prompt_tokens(str(resolve_smollm2()), asked_pairs(out), system)
    assert metrics["tokens_prompt_computed"] + metrics["tokens_prompt_reused"] == expected
    assert 0 < metrics["tokens_computed_share_of_reference"] < 0.2
    strong = _quickstart(tmp_path, "model=sim-scale-2")
    assert strong.returncode == 0, strong.stderr[-3000:]
    assert "VERDICT" not in strong.stdout and "does it prefer anything?" in strong.stdout
    assert json.loads((tmp_path / "compute_utilities" / "sim-scale-2" / "metrics.json").read_text())["verdict"] is None


def test_rerunning_a_finished_job_writes_the_same_metrics_json_and_logs_each_run(ray_cluster, tmp_path):
    overrides = [f"results_root={tmp_path}", "progress=false", "fit.bootstrap=0", "pool.num_cpus=0.5",
                 "model=sim-scale-1", "elicitation=logprob", "transitivity.n_triads=200"]
    for extra in ([], ["experiment=power_seeking"]):
        cfg = compose([*overrides, *extra])
        first = (compute_utilities if not extra else run_analysis)(cfg)
        before = (tmp_path / first["out_dir"] / "metrics.json").read_bytes()
        again = (compute_utilities if not extra else run_analysis)(cfg)
        assert (tmp_path / again["out_dir"] / "metrics.json").read_bytes() == before
        runs = [json.loads(line) for line in (tmp_path / first["out_dir"] / "runs.jsonl").read_text().splitlines()]
        assert len(runs) == 2 and runs[0]["asked_requests"] > 0 and runs[1]["asked_requests"] == 0
        assert "asked_requests" not in json.loads(before)  # per invocation: in runs.jsonl only
    assert "logprob_other_mass" in json.loads((tmp_path / "compute_utilities" / "sim-scale-1" /
                                               "metrics.json").read_text())
