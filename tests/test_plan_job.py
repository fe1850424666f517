"""jobs.plan: a sweep priced offline in seconds, without an engine or a Ray cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import compose
from uetool.core.cost import ModelShape, Throughput, accelerator_seconds, paper_pairs
from uetool.runtime.plan import CostConfig, plan_table

ROOT = Path(__file__).resolve().parent.parent


def test_a_gpu_model_an_api_model_and_a_cpu_model_are_priced_by_the_cost_model():
    cfg = compose(["sweep=custom", "sweep.models=[qwen25-72b-instruct,gpt-4o,tiny-random]", "elicitation=logprob",
                   "cost.accelerator=H200"])
    table, totals = plan_table(cfg)
    rows = table.set_index("model")
    cost = CostConfig.from_section(cfg["cost"])
    gpu = rows.loc["qwen25-72b-instruct"]
    assert (gpu["device"], gpu["engine"], gpu["tensor_parallel_size"]) == ("H200", "vllm", 4)
    assert gpu["tokens_generated"] == 0  # logprob: one prefill per request
    shape, rates = ModelShape.from_params(72.0e9), Throughput(**cost.throughput["vllm"]["default"])
    # the row's hours are the cost model's seconds over the tensor-parallel efficiency
    seconds = gpu["device_hours"] * 3600 * cost.tensor_parallel_efficiency
    alone = accelerator_seconds(shape, 989.4e12, rates, prompt_tokens=gpu["tokens_prompt_computed"],
                                prompt_context=40)["total_s"]
    assert seconds == pytest.approx(alone, rel=0.1)
    assert gpu["wall_h"] * 3600 == pytest.approx(cost.job_start_s + cost.engine_start_s["vllm"] + gpu["device_hours"]
                                                 * 3600 / 4, rel=1e-6)  # four GPUs at once
    api = rows.loc["gpt-4o"]
    price = cost.api_prices["gpt-4o"]
    assert api["device"] == "api" and api["dollars"] == pytest.approx(api["tokens_prompt_computed"] * price["input"]
                                                                      / 1e6, rel=1e-4)
    assert api["tokenizer"] == "chars" and api["reference_dollars"] > 5 * api["dollars"]
    tiny = rows.loc["tiny-random"]
    assert tiny["device"] == "cpu" and tiny["tokenizer"] == "exact"
    assert tiny["reference_requests"] == 2 * paper_pairs(40) * 10  # both orders, K=10 requests per order
    assert totals["gpu_hours"] == pytest.approx(gpu["device_hours"]) and totals["dollars"] == pytest.approx(
        api["dollars"])
    with pytest.raises(ValueError, match="cost.accelerator"):
        plan_table({**cfg, "cost": {**cfg["cost"], "accelerator": "B200"}})


def test_the_plan_job_prints_the_table_and_writes_it_without_starting_anything(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs.plan", "sweep=paper", f"results_root={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "total: 23 models" in done.stdout and "GPU-hours on H100" in done.stdout
    table = pd.read_csv(tmp_path / "sweeps" / "paper" / "plan.csv")
    assert len(table) == 23 and set(table["device"]) == {"H100", "api"}
    assert json.loads((tmp_path / "sweeps" / "paper" / "plan.json").read_text())["models"] == 23
    bad = subprocess.run([sys.executable, "-m", "jobs.plan", "sweep=paper", "cost.accelerator=B200",
                          f"results_root={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "B200" in bad.stderr and "Traceback" not in bad.stderr


def test_a_robustness_suite_is_planned_run_by_run_before_its_base_exists():
    cfg = compose(["sweep=custom", "sweep.models=[tiny-random]", "+sweep.experiments=[compute_utilities,robustness]",
                   "robustness=default", "elicitation=logprob"])
    table, _ = plan_table(cfg)
    rows = table.set_index("experiment")
    base = rows.loc["compute_utilities", "requests"]
    suite = cfg["robustness"]
    asking = [v for v in suite["variants"] if set(v) - {"name", "about", "parser", "unparseable_policy"}]
    assert len(asking) == len(suite["variants"]) - 1  # policy_skip re-reads the base's answers: it asks nothing
    compute_runs = 1 + len(asking) + len(suite["seeds"])
    # every other variant and seed asks the base's pairs anew, and the analyses (exchange rates, political values
    # placed in a base that does not exist yet) come on top
    assert rows.loc["robustness", "requests"] > compute_runs * base * 0.95
    cfg["robustness"]["variants"] = [v for v in suite["variants"] if v["name"] in ("policy_skip", "labels_12")]
    cfg["robustness"]["analyses"], cfg["robustness"]["seeds"] = [], []
    two, _ = plan_table(cfg)
    assert two.set_index("experiment").loc["robustness", "requests"] == 2 * base  # the base and labels_12
    assert rows.loc["robustness", "tokens_generated"] > 0  # the sampled and reasoning variants generate
