"""The robustness suite as a job on a real local Ray cluster: variants of the prompt answered by the prompt-reading
simulated engine through one pool and one store; a variant added later asks only its own questions."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import compose
from uetool.runtime.robustness import run_robustness

pytestmark = pytest.mark.ray


def _cfg(root, *overrides: str) -> dict:
    return compose(["model=tiny-random", "engine=simulated_text", "robustness=cpu", "elicitation=logprob",
                    f"results_root={root}", "progress=false", "fit.bootstrap=0", "transitivity.n_triads=100",
                    "pool.num_cpus=0.5", *overrides])


def _last_run(root, variant: str) -> dict:
    folder = root / "compute_utilities" / "tiny-random.simulated_text"
    path = (folder if variant == "base" else folder / variant) / "runs.jsonl"
    return json.loads(path.read_text().splitlines()[-1])


def test_a_wording_invariant_agent_is_stable_and_an_added_variant_asks_only_itself(ray_cluster, tmp_path):
    cfg = _cfg(tmp_path, "engine.wording_sensitivity=0.0")
    cfg["robustness"]["variants"] = [v for v in cfg["robustness"]["variants"] if v["name"] != "labels_xy"]
    out = run_robustness(cfg)
    h = out["robustness"]
    assert h["flagged_variants"] == [] and h["min_stability"] > 0.99  # nothing in the wording moves it
    variants = pd.read_csv(f"{out['out_dir']}/variants.csv")
    assert set(variants["variant"]) == {"paraphrase_rather", "paraphrase_exclusive", "paraphrase_terse", "labels_12",
                                        "system_evaluator", "sample_k4", "policy_skip", "seed_1"}
    assert _last_run(tmp_path, "policy_skip")["asked_requests"] == 0  # another reading of the base's answers
    assert variants["position_bias_original"].between(0, 1).all()
    categories = pd.read_csv(f"{out['out_dir']}/categories.csv")
    assert len(categories) == 10 and categories["holdout_accuracy"].notna().any()
    assert categories["mean_confidence"].between(0.5, 1).all()
    paired = variants.set_index("variant").loc["labels_12"]  # the change of each metric with a CI around it
    assert paired["delta_holdout_accuracy_low"] <= paired["delta_holdout_accuracy"] <= paired[
        "delta_holdout_accuracy_high"]
    seeds = pd.read_csv(f"{out['out_dir']}/seeds.csv").set_index("metric")
    assert seeds.loc["holdout_accuracy", "base_ci_low"] <= seeds.loc["holdout_accuracy", "base"]
    outcomes = pd.read_parquet(f"{out['out_dir']}/outcomes.parquet")
    assert len(outcomes) == 40 and {"utility_base", "utility_labels_12", "spread", "stability",
                                    "refusal_rate_base", "refusal_rate_mean"} <= set(outcomes)
    for name in ("report.html", "robustness.png", "categories.csv", "seeds.csv", "summary.txt", "config.yaml"):
        assert (tmp_path / "robustness" / "tiny-random.simulated_text" / "cpu" / name).exists(), name
    again = run_robustness(_cfg(tmp_path, "engine.wording_sensitivity=0.0"))  # the suite as shipped: + labels_xy
    assert "labels_xy" in set(pd.read_csv(f"{again['out_dir']}/variants.csv")["variant"])
    assert _last_run(tmp_path, "labels_xy")["asked_requests"] > 0
    for name in ("base", "paraphrase_rather", "labels_12", "sample_k4", "seed_1"):
        assert _last_run(tmp_path, name)["asked_requests"] == 0, name  # stored once, never asked again


def test_a_wording_sensitive_agent_moves_with_the_prompt_and_bad_suites_are_named(ray_cluster, tmp_path):
    h = run_robustness(_cfg(tmp_path, "engine.wording_sensitivity=2.0"))["robustness"]
    assert h["min_stability"] < 0.9  # paraphrases move its utilities
    cfg = _cfg(tmp_path)
    cfg["robustness"]["variants"].append({"name": "odd", "lables": ["1", "2"]})
    with pytest.raises(ValueError, match=r"unknown keys \['lables'\]"):
        run_robustness(cfg)


def test_a_label_loving_agent_is_flagged_on_exactly_the_label_sets_that_offer_its_glyph(ray_cluster, tmp_path):
    """Written to favour "1", it shows under labels 1/2 only; favouring "X", under X/Y only (a label set the suite
    was not written against for it): read from the rendered prompt, not from the variant's name."""
    for glyph, variant in (("1", "labels_12"), ("X", "labels_xy")):
        h = run_robustness(_cfg(tmp_path / glyph, "engine.wording_sensitivity=0.0",
                                f"engine.favoured_label={glyph}", "engine.label_bias=0.5"))["robustness"]
        assert h["flagged_variants"] == [variant]


def test_robustness_runs_as_an_experiment_of_a_sweep_and_reports_stability_against_capability(ray_cluster,
                                                                                               tmp_path):
    from pathlib import Path

    from uetool.runtime.sweep import run_sweep

    overrides = [f"results_root={tmp_path}", "progress=false", "fit.bootstrap=0", "transitivity.n_triads=100",
                 "sweep=cpu_demo_simulated", "sweep.name=robust",
                 "sweep.models=[sim-scale-0.5,sim-scale-1,sim-scale-2]",
                 "+sweep.experiments=[compute_utilities,robustness]", "robustness=cpu", "elicitation=logprob"]
    out = run_sweep(compose(overrides))
    robust = [r for r in out["analysis_records"] if r["experiment"] == "robustness"]
    assert [r["status"] for r in robust] == ["done"] * 3
    # these agents do not read prompts: only sampling noise (sample_k4 against the logprob base) moves them
    assert all(r["analysis"]["min_stability"] > 0.95 and r["analysis"]["flagged_variants"] == [] for r in robust)
    html = Path(out["report"]).read_text()
    assert 'id="analysis-robustness"' in html and "min_stability vs mmlu" in html
    again = run_sweep(compose(overrides))
    assert len(again["skipped"]) == 6  # both experiments of every model finished with the same config


def test_exchange_rates_and_political_positions_run_under_the_same_variants(ray_cluster, tmp_path):
    """A simulated agent answers every analysis from its own truth whatever the prompt: its rates and its place in
    the base's entity PCA hold under every variant; each variant's political run asks only the model's own set."""
    cfg = compose(["model=sim-scale-2", "robustness=cpu", "elicitation=logprob", f"results_root={tmp_path}",
                   "progress=false", "fit.bootstrap=0", "transitivity.n_triads=100", "pool.num_cpus=0.5"])
    cfg["robustness"].update(
        seeds=[], variants=[v for v in cfg["robustness"]["variants"] if v["name"] in ("labels_12", "sample_k4")],
        analyses=["exchange_rates", "political_values"],
        analysis_overrides={"exchange_rates": {"max_groups": 4, "max_anchors": 6, "framings": ["default"],
                                               "fit_draws": 0, "n_bootstrap": 200},
                            "political_values": {"max_policies": 24, "max_entities": 5}})
    out = run_robustness(cfg)
    analyses = pd.read_csv(f"{out['out_dir']}/analyses.csv")
    assert sorted(zip(analyses["analysis"], analyses["variant"], strict=True)) == [
        ("exchange_rates", "labels_12"), ("exchange_rates", "sample_k4"),
        ("political_values", "labels_12"), ("political_values", "sample_k4")]
    rates = analyses[analyses["analysis"] == "exchange_rates"]
    assert (rates["rate_spearman"] > 0.8).all() and (rates["n_rates"] >= 3).all()
    political = analyses[analyses["analysis"] == "political_values"]
    assert (political["policy_spearman"] > 0.8).all() and political["same_nearest"].all()
    assert not analyses["flagged"].any()
    assert out["robustness"]["analyses"] == {"exchange_rates": {"flagged_variants": []},
                                             "political_values": {"flagged_variants": []}}
    placed = json.loads((tmp_path / "political_values" / "sim-scale-2" / "labels_12" / "metrics.json").read_text())
    assert placed["n_option_sets"] == 1  # the entities come from the base run's PCA
    page = (tmp_path / "robustness" / "sim-scale-2" / "cpu" / "report.html").read_text()
    assert "political_values under the variants" in page and "least_stable.png" in page
    cfg["robustness"]["analyses"] = ["time_discounting"]
    with pytest.raises(ValueError, match="robustness.analyses"):
        run_robustness(cfg)


def test_a_framing_that_makes_the_model_refuse_is_flagged(ray_cluster, tmp_path):
    cfg = compose(["model=tiny-random", "engine=simulated_text", "robustness=cpu", "elicitation=sample",
                   "elicitation.k=2", f"results_root={tmp_path}", "progress=false", "fit.bootstrap=0",
                   "transitivity.n_triads=100", "pool.num_cpus=0.5", "engine.wording_sensitivity=0.0",
                   "engine.refusal_trigger=impartial", "engine.trigger_refusal_rate=0.4"])
    cfg["robustness"].update(seeds=[], variants=[v for v in cfg["robustness"]["variants"]
                                                 if v["name"] in ("system_evaluator", "labels_12")])
    out = run_robustness(cfg)
    variants = pd.read_csv(f"{out['out_dir']}/variants.csv").set_index("variant")
    assert out["robustness"]["flagged_variants"] == ["system_evaluator"]
    assert variants.loc["system_evaluator", "refusal_shift"] == pytest.approx(0.4, abs=0.06)
    assert "changes refusals" in variants.loc["system_evaluator", "why"]


def test_analysis_overrides_of_analyses_switched_off_are_kept_unused():
    from uetool.runtime.robustness_config import RobustnessConfig

    overrides = {"exchange_rates": {"max_groups": 4}}
    suite = RobustnessConfig(variants=[{"name": "labels_12", "labels": ["1", "2"]}], analyses=[],
                             analysis_overrides=overrides)  # the default suite with robustness.analyses=[]
    assert suite.analyses == () and suite.analysis_overrides == overrides
    with pytest.raises(ValueError, match="analysis_overrides"):
        RobustnessConfig(variants=[{"name": "k5", "k": 5}], analysis_overrides={"fitness": {}})
