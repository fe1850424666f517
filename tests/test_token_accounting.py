"""Token accounting through a real compute_utilities run (hf engine, tiny random model, local Ray cluster): the
prompt tokens the run reports are exactly the token ids of the prompts it asked, counted apart from the engine."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import compose
from uetool.core.cost import paper_pairs
from uetool.core.outcomes import load_outcomes
from uetool.core.prompts import get_template
from uetool.runtime.compute import compute_utilities

pytestmark = pytest.mark.ray


def independent_prompt_tokens(model_path: str, pairs: np.ndarray, system: str) -> int:
    """Both orders of every quickstart pair rendered with the paper template and tokenised by the model's own chat
    template, apart from the engine's code."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    outcomes, template = load_outcomes("quickstart").descriptions, get_template("paper")
    total = 0
    for a, b in pairs.tolist():
        for x, y in ((a, b), (b, a)):
            messages = [{"role": "system", "content": system},
                        {"role": "user", "content": template.render(outcomes[x], outcomes[y])}]
            total += len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                       return_dict=False))
    return total


def asked_pairs(out_dir) -> np.ndarray:
    """The distinct pairs a compute_utilities run asked: its edges (training and held out) and its triads'."""
    edges = pd.read_parquet(f"{out_dir}/edges.parquet")
    triads = pd.read_parquet(f"{out_dir}/triads.parquet")
    triad_pairs = np.concatenate([triads[["a", "b"]].to_numpy(), triads[["b", "c"]].to_numpy(),
                                  triads[["a", "c"]].to_numpy()])
    return np.unique(np.concatenate([edges[["a", "b"]].to_numpy(), triad_pairs]), axis=0)


@pytest.mark.parametrize("mode", ["logprob", "sample"])
def test_a_runs_prompt_tokens_are_the_token_ids_of_the_prompts_it_asked(ray_cluster, tiny_model, tmp_path, mode):
    cfg = compose(["model=tiny-random", "engine=hf", f"model.path={tiny_model}", "outcomes=quickstart",
                   f"elicitation={mode}", "elicitation.k=2", f"results_root={tmp_path}", "fit.bootstrap=0",
                   "progress=false", "transitivity.n_triads=50", "pool.num_cpus=1"])
    out = compute_utilities(cfg)
    metrics = out["metrics"]
    pairs = asked_pairs(out["out_dir"])
    expected = independent_prompt_tokens(tiny_model, pairs, cfg["elicitation"]["system_message"])
    assert metrics["tokens_prompt_computed"] + metrics["tokens_prompt_reused"] == expected
    assert 0 < metrics["tokens_prompt_reused"] < expected  # the shared prefix was reused, not recomputed
    assert metrics["tokens_counted_share"] == 1.0
    if mode == "logprob":
        assert metrics["tokens_generated"] == 0 and metrics["tokens_computed"] == metrics["tokens_prompt_computed"]
    else:
        assert 2 * 2 * len(pairs) <= metrics["tokens_generated"] <= 2 * 2 * len(pairs) * cfg["elicitation"][
            "max_tokens"]  # k=2 samples per order, 1 to max_tokens each
    mean_prompt = expected / (2 * len(pairs))
    assert metrics["reference_method_pairs"] == paper_pairs(40)
    assert metrics["reference_method_tokens"] == pytest.approx(2 * paper_pairs(40) * 10 * (mean_prompt + 10), abs=1)
    assert metrics["tokens_computed_share_of_reference"] == pytest.approx(
        metrics["tokens_computed"] / metrics["reference_method_tokens"])
    if mode == "logprob":  # the planner, from the config alone, predicts what the run computed
        from uetool.runtime.plan import plan_table

        planned, _ = plan_table({**cfg, "sweep": {"name": "t", "models": ["tiny-random"]}})
        row = planned.iloc[0]
        assert row["tokenizer"] == "exact" and row["requests"] == pytest.approx(2 * len(pairs), rel=0.05)
        assert row["tokens_prompt_computed"] == pytest.approx(metrics["tokens_prompt_computed"], rel=0.05)
        assert row["prompt_tokens"] == pytest.approx(expected, rel=0.05)
    again = compute_utilities(cfg)  # served from the store: the same totals, asked by nobody this time
    assert again["metrics"]["asked_requests"] == 0
    assert {k: v for k, v in again["metrics"].items() if k.startswith(("tokens_", "reference_"))} == {
        k: v for k, v in metrics.items() if k.startswith(("tokens_", "reference_"))}
    on_disk = json.loads((tmp_path / "compute_utilities" / "tiny-random" / "metrics.json").read_text())
    assert on_disk["tokens_computed"] == metrics["tokens_computed"]


def test_an_engine_that_counts_no_tokens_reports_none_instead_of_zero(ray_cluster, tmp_path):
    cfg = compose(["model=tiny-random", "engine=simulated", "outcomes=quickstart", f"results_root={tmp_path}",
                   "fit.bootstrap=0", "progress=false", "transitivity.n_triads=50"])
    metrics = compute_utilities(cfg)["metrics"]
    assert metrics["tokens_computed"] is None and metrics["tokens_counted_share"] == 0.0
    assert metrics["reference_method_tokens"] is None and metrics["reference_method_pairs"] == paper_pairs(40)


def test_the_sweep_report_sets_the_planners_prediction_against_each_run(ray_cluster, tiny_model, tmp_path):
    from uetool.runtime.sweep import run_sweep

    cfg = compose([f"results_root={tmp_path}", "progress=false", "fit.bootstrap=0", "transitivity.n_triads=50",
                   "sweep=custom", "sweep.name=costs", "sweep.models=[tiny-random,sim-scale-1]",
                   "outcomes=quickstart", "elicitation=logprob", "pool.num_cpus=1"])
    out = run_sweep(cfg)
    assert [r["status"] for r in out["records"]] == ["done", "done"]
    tiny = next(r for r in out["records"] if r["model"] == "tiny-random")
    assert tiny["predicted"]["tokens_computed"] == pytest.approx(tiny["metrics"]["tokens_computed"], rel=0.1)
    assert tiny["predicted"]["wall_s"] > 0
    cost = pd.read_csv(tmp_path / "sweeps" / "costs" / "cost.csv").set_index("model")
    assert cost.loc["tiny-random", "tokens_vs_predicted"] == pytest.approx(1.0, abs=0.1)
    assert cost.loc["tiny-random", "measured_wall_s"] > 0 and pd.isna(cost.loc["sim-scale-1", "tokens_computed"])
    html = (tmp_path / "sweeps" / "costs" / "report.html").read_text()
    assert 'id="cost"' in html and "cost_predicted_vs_measured.png" in html
