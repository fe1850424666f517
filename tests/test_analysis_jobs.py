"""The analyses as jobs on a real local Ray cluster: simulated agents whose answers are known, the response store
(reruns and other experiments' prompts are served from it), resume after a kill, judges, results files and sweeps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, compose
from uetool.io.store import ResponseStore
from uetool.runtime.analysis import run_analysis
from uetool.runtime.compute import compute_utilities

pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def _cluster(ray_cluster):
    return ray_cluster


def _config(root, *overrides: str, model: str = "sim-scale-1") -> dict:
    return compose([f"model={model}", f"results_root={root}", "progress=false", "fit.bootstrap=0",
                    "pool.num_cpus=0.5", *overrides])


def test_expected_utility_at_the_papers_size_tells_an_eu_agent_from_a_max_agent(tmp_path):
    """510 outcomes + 100 lotteries, K=10: the acceptance thresholds of issue 16, through engines and the store."""
    eu = run_analysis(_config(tmp_path / "eu", "experiment=expected_utility", "outcomes=main"))
    worst = run_analysis(_config(tmp_path / "max", "experiment=expected_utility", "outcomes=main",
                                 "expected_utility.simulated_agent=max_outcome"))
    assert eu["analysis"]["mae_normalized"] <= 0.15 and eu["analysis"]["order_preservation"] >= 0.95
    assert worst["analysis"]["mae_normalized"] >= 0.5
    out = eu["out_dir"]
    for name in ("utilities.parquet", "edges.parquet", "items.parquet", "metrics.json", "analysis.json",
                 "analysis.png", "summary.txt", "config.yaml", "provenance.json"):
        assert (tmp_path / "eu" / "expected_utility" / "sim-scale-1" / name).exists(), name
    items = pd.read_parquet(f"{out}/items.parquet")
    assert len(items) == 100 and {"utility", "expected_utility", "probabilities"} <= set(items)
    headline = json.loads(open(f"{out}/analysis.json").read())
    assert headline["experiment"] == "expected_utility" and len(headline["mae_normalized_ci"]) == 2
    assert headline["settings"]["n_lotteries"] == 100
    utilities = pd.read_parquet(f"{out}/utilities.parquet")
    assert len(utilities) == 610 and (utilities["category"] == "lottery").sum() == 100


def test_a_rerun_is_served_from_the_store_and_gives_the_same_analysis(tmp_path):
    cfg = _config(tmp_path, "experiment=maximization", "maximization.max_questions=4", "outcomes=quickstart")
    first = run_analysis(cfg)
    assert first["metrics"]["asked_requests"] > 0 and first["metrics"]["reused_requests"] == 0
    again = run_analysis(cfg)  # the fits resume from their final checkpoints; free prompts come from the store
    assert again["metrics"]["asked_requests"] == 0 and again["metrics"]["reused_requests"] == 4 + int(
        first["analysis"]["judged_rate"] * 4)
    shutil.rmtree(f"{first['out_dir']}/checkpoints")  # no checkpoint: every pair is asked again, of the store
    fresh = run_analysis(cfg)
    assert fresh["metrics"]["asked_requests"] == 0
    assert fresh["metrics"]["reused_requests"] == first["metrics"]["asked_requests"]
    for out in (again, fresh):
        pd.testing.assert_frame_equal(pd.read_parquet(f"{first['out_dir']}/items.parquet"),
                                      pd.read_parquet(f"{out['out_dir']}/items.parquet"))


class _FailingPool:
    """A real engine pool that fails once `fail_after` requests have been answered (a job killed mid-step)."""

    def __init__(self, pool, fail_after: int) -> None:
        self.pool, self.fail_after, self.answered = pool, fail_after, 0
        self.reads_text, self.replacements = pool.reads_text, 0
        self.engine_arguments = pool.engine_arguments

    def run(self, requests, settings, on_shard=None):
        def count(shard):
            if on_shard is not None:
                on_shard(shard)  # stored before the failure, as a real kill after a stored shard leaves it
            self.answered += len(shard)
            if self.answered >= self.fail_after:
                raise KeyboardInterrupt("killed while asking")

        return self.pool.run(requests, settings, on_shard=count)


def test_a_run_killed_mid_experiment_resumes_without_asking_a_stored_answer_again(tmp_path):
    from uetool.runtime.analysis import analysis_plan, simulated_run
    from uetool.runtime.compute import open_pool
    from uetool.runtime.config import RunConfig

    overrides = ("experiment=instrumentality", "instrumentality.max_processes=6", "pool.shard_size=50")
    clean = run_analysis(_config(tmp_path / "clean", *overrides))
    cfg = _config(tmp_path / "killed", *overrides)
    run = RunConfig.from_dict(cfg)
    with open_pool(simulated_run(run, analysis_plan(run))) as pool:
        with pytest.raises(KeyboardInterrupt):  # killed inside the first world's fit
            run_analysis(run, pool=_FailingPool(pool, fail_after=300))
    stored = ResponseStore(str(tmp_path / "killed"), "sim-scale-1").count_rows()
    assert 0 < stored < clean["metrics"]["asked_requests"]
    assert (tmp_path / "killed" / "instrumentality" / "sim-scale-1" / "checkpoints" / "natural.npz").exists()
    resumed = run_analysis(cfg)
    assert resumed["metrics"]["asked_requests"] == clean["metrics"]["asked_requests"] - stored
    for name in ("items", "utilities"):
        pd.testing.assert_frame_equal(pd.read_parquet(f"{clean['out_dir']}/{name}.parquet"),
                                      pd.read_parquet(f"{resumed['out_dir']}/{name}.parquet"))


def test_another_models_judge_gets_its_own_pool_and_store(tmp_path):
    out = run_analysis(_config(tmp_path, "experiment=maximization", "maximization.max_questions=6",
                               "maximization.judge_model=sim-scale-2"), conf_dir=ROOT / "conf")
    items = pd.read_parquet(f"{out['out_dir']}/items.parquet")
    assert (items["matched_by"] == "judge").sum() == 2  # questions 1 and 4 are answered in a sentence
    assert ResponseStore(str(tmp_path), "sim-scale-2").count_rows() == 2
    assert out["analysis"]["unmatched_rate"] == 0.0


def test_analyses_reuse_what_compute_utilities_asked_with_the_same_template(tmp_path, tiny_model):
    """A real engine: the base outcomes' pairs asked by compute_utilities are served from the store when the
    implicit-lottery analysis (same template, same settings) asks them again."""
    common = ["model=tiny-random", f"model.path={tiny_model}", "engine=hf", "elicitation.k=2",
              "transitivity.n_triads=0", "pool.num_cpus=1", "outcomes=quickstart"]
    base = compute_utilities(_config(tmp_path, *common, model="tiny-random"))
    asked_before = ResponseStore(str(tmp_path), "tiny-random").count_rows()
    out = run_analysis(_config(tmp_path, *common, "experiment=expected_utility_implicit",
                               "expected_utility_implicit.max_events=2", model="tiny-random"))
    assert base["stats"].asked == asked_before
    assert out["metrics"]["reused_requests"] > 0  # base-outcome pairs compute_utilities had asked
    assert ResponseStore(str(tmp_path), "tiny-random").count_rows() == asked_before + out["metrics"]["asked_requests"]
    metrics = out["metrics"]  # every option set's answers in tokens, reused ones included, and the paper's bill
    assert metrics["tokens_counted_share"] == 1.0 and metrics["tokens_prompt_reused"] > 0
    assert metrics["tokens_computed"] == metrics["tokens_prompt_computed"] + metrics["tokens_generated"]
    assert metrics["reference_method_pairs"] > 0 and metrics["reference_method_tokens"] > metrics["tokens_computed"]


def test_a_sweep_runs_every_experiment_for_every_model_and_reports_each(tmp_path):
    from uetool.runtime.sweep import run_sweep

    overrides = [f"results_root={tmp_path}", "progress=false", "fit.bootstrap=0", "transitivity.n_triads=100",
                 "sweep=cpu_demo_analyses", "sweep.name=analyses_test", "outcomes=quickstart",
                 "sweep.models=[sim-scale-0.25,sim-scale-0.5,sim-scale-1]",
                 "sweep.experiment_overrides.maximization.max_questions=3",
                 "sweep.experiment_overrides.instrumentality.max_processes=3",
                 "sweep.experiment_overrides.exchange_rates.max_groups=3",
                 "sweep.experiment_overrides.exchange_rates.fit_draws=10",
                 "sweep.experiment_overrides.time_discounting.max_delays=6",
                 "sweep.experiment_overrides.political_values.max_entities=5"]
    out = run_sweep(compose(overrides))
    assert [r["status"] for r in out["records"]] == ["done"] * 3
    analyses = out["analysis_records"]
    assert sorted({(r["experiment"], r["status"]) for r in analyses}) == [
        ("corrigibility", "done"), ("exchange_rates", "done"), ("expected_utility", "done"),
        ("expected_utility_implicit", "done"), ("fitness", "done"), ("instrumentality", "done"),
        ("maximization", "done"), ("political_values", "done"), ("power_seeking", "done"),
        ("time_discounting", "done")]
    assert len(analyses) == 30
    html = Path(out["report"]).read_text()
    for section in ("analysis-expected_utility", "analysis-expected_utility_implicit", "analysis-instrumentality",
                    "analysis-maximization", "analysis-exchange_rates", "analysis-time_discounting",
                    "analysis-political_values", "analysis-power_seeking", "analysis-fitness",
                    "analysis-corrigibility"):
        assert f'id="{section}"' in html
    assert "score_unnatural vs mmlu" in html and "analysis_instrumentality_score_natural.png" in html
    table = pd.read_csv(tmp_path / "sweeps" / "analyses_test" / "analysis_expected_utility.csv")
    assert list(table["model"]) == ["sim-scale-0.25", "sim-scale-0.5", "sim-scale-1"]
    assert np.all(np.diff(table["mae_normalized"]) < 0)  # more coherent agents keep the EU property better
    shared = pd.read_csv(tmp_path / "sweeps" / "analyses_test" / "political_map.csv")  # every model on one map
    assert list(shared.loc[shared["kind"] == "model", "name"]) == ["sim-scale-0.25", "sim-scale-0.5", "sim-scale-1"]
    assert (shared.loc[shared["kind"] == "model", "pc1"] < 0).all()  # planted left of centre, as the anchor
    assert (shared["kind"] != "model").sum() == 5 and "analysis_political_values_map.png" in html
    assert "corr_utility_reversal vs mmlu (stand-in score for a simulated agent) (below 0: resists larger changes " \
           "to its values)" in html  # the agents' capability is a stand-in, and the axis says so
    again = run_sweep(compose(overrides))
    assert len(again["skipped"]) == 33  # 3 models x 11 experiments, each finished with the same config


def test_a_bad_analysis_config_fails_before_anything_starts(tmp_path):
    from uetool.runtime.sweep_plan import plan_sweep

    with pytest.raises(ValueError, match="unknown experiment 'power'"):
        plan_sweep(compose(["sweep=cpu_demo_analyses", "sweep.experiments=[compute_utilities,power]"]), ROOT / "conf")
    with pytest.raises(ValueError, match="experiment_overrides names experiments"):
        plan_sweep(compose(["sweep=cpu_demo_simulated", "+sweep.experiment_overrides={maximization: {x: 1}}"]),
                   ROOT / "conf")
    with pytest.raises(ValueError, match=r"experiment 'maximization'.*unknown `maximization` keys \['x'\]"):
        plan_sweep(compose(["sweep=cpu_demo_analyses", "+sweep.experiment_overrides.maximization.x=1"]),
                   ROOT / "conf")
    with pytest.raises(ValueError, match="analyses need a Thurstonian simulated agent"):
        run_analysis(_config(tmp_path, "experiment=maximization", "model.simulated.agent=random"))


def test_an_unknown_judge_model_fails_before_any_engine_starts(tmp_path):
    with pytest.raises(ValueError, match=r"`maximization.judge_model=gpt-9`: unknown model 'gpt-9'"):
        run_analysis(_config(tmp_path, "experiment=maximization", "maximization.judge_model=gpt-9"),
                     conf_dir=ROOT / "conf")
    assert not (tmp_path / "responses" / "sim-scale-1").exists() or not any(
        (tmp_path / "responses" / "sim-scale-1").glob("part-*"))


def test_exchange_rates_of_a_log_utility_agent_through_the_engines(tmp_path):
    """Reduced size (6 countries x 8 quantities + 12 anchors, both framings): each rate close to its closed form;
    a rerun asks nothing, and a run killed mid-fit resumes asking only what its store lacks."""
    from uetool.analyses.exchange_rates import build_runs, log_utility_truth
    from uetool.core.exchange_rates import exchange_rate

    cfg_overrides = ("experiment=exchange_rates", "exchange_rates.max_groups=6", "exchange_rates.max_quantities=8",
                     "exchange_rates.max_anchors=12", "exchange_rates.n_bootstrap=200", "pool.shard_size=50")
    cfg = _config(tmp_path / "clean", *cfg_overrides)
    out = run_analysis(cfg)
    items = pd.read_parquet(f"{out['out_dir']}/items.parquet")
    assert sorted(items["run"].unique()) == ["countries.terminal_illness.default",
                                             "countries.terminal_illness.exclusive"]
    settings = out["analysis"]["settings"]
    from uetool.analyses import get_analysis

    errors = []
    for run in build_runs(get_analysis("exchange_rates").settings(settings)):
        truth = log_utility_truth(run, get_analysis("exchange_rates").settings(settings), 0)
        rows = items[items["run"] == run.name].set_index("group")
        for group in run.groups:
            want = float(exchange_rate(*truth[run.pivot], *truth[group], run.grid))
            errors.append(abs(rows.loc[group, "rate"] / want - 1))
    assert np.median(errors) < 0.06 and max(errors) < 0.25
    assert out["analysis"]["framing_rate_ratio"] == pytest.approx(0.5, rel=0.15)
    utilities = pd.read_parquet(f"{out['out_dir']}/utilities.parquet")
    assert len(utilities) == 2 * (12 + 6 * 8)
    run_dir = Path(out["out_dir"]) / "countries.terminal_illness.exclusive"  # each run its own folder
    assert len(pd.read_parquet(run_dir / "utilities.parquet")) == 12 + 6 * 8
    assert set(pd.read_parquet(run_dir / "items.parquet")["framing"]) == {"exclusive"}
    assert len(pd.read_parquet(run_dir / "edges.parquet")) > 0
    again = run_analysis(cfg)
    assert again["metrics"]["asked_requests"] == 0  # every fit resumes from its final checkpoint

    # killed inside the second run's fit (the exclusive framing): the rerun asks only what the store lacks
    from uetool.runtime.analysis import analysis_plan, simulated_run
    from uetool.runtime.compute import open_pool
    from uetool.runtime.config import RunConfig

    asked = out["metrics"]["asked_requests"]
    killed_cfg = _config(tmp_path / "killed", *cfg_overrides)
    run = RunConfig.from_dict(killed_cfg)
    with open_pool(simulated_run(run, analysis_plan(run))) as pool:
        with pytest.raises(KeyboardInterrupt):
            run_analysis(run, pool=_FailingPool(pool, fail_after=int(asked * 0.7)))
    stored = ResponseStore(str(tmp_path / "killed"), "sim-scale-1").count_rows()
    assert asked / 2 < stored < asked
    resumed = run_analysis(killed_cfg)
    assert resumed["metrics"]["asked_requests"] == asked - stored
    pd.testing.assert_frame_equal(items, pd.read_parquet(f"{resumed['out_dir']}/items.parquet"))


def test_time_discounting_asks_fixed_pairs_and_resumes_after_a_kill(tmp_path):
    from uetool.runtime.analysis import analysis_plan, simulated_run
    from uetool.runtime.compute import open_pool
    from uetool.runtime.config import RunConfig

    overrides = ("experiment=time_discounting", "time_discounting.max_delays=12", "time_discounting.max_amounts=15",
                 "elicitation.k=20", "pool.shard_size=40")
    clean = run_analysis(_config(tmp_path / "clean", *overrides))
    m = clean["analysis"]
    assert m["best_family"] == "hyperbolic" and m["k_hyperbolic"] == pytest.approx(0.05, rel=0.15)
    assert m["k_hyperbolic_ci"][0] <= 0.05 <= m["k_hyperbolic_ci"][1]
    assert clean["metrics"]["asked_requests"] == 2 * 12 * 15
    edges = pd.read_parquet(f"{clean['out_dir']}/edges.parquet")
    assert len(edges) == 180 and set(edges["split"]) == {"asked"} and (edges["a"] == 0).all()
    assert (edges[["n_a_orig", "n_b_orig", "n_a_flip", "n_b_flip"]].sum(axis=1) == 40).all()
    cfg = _config(tmp_path / "killed", *overrides)
    run = RunConfig.from_dict(cfg)
    with open_pool(simulated_run(run, analysis_plan(run))) as pool:
        with pytest.raises(KeyboardInterrupt):
            run_analysis(run, pool=_FailingPool(pool, fail_after=120))
    stored = ResponseStore(str(tmp_path / "killed"), "sim-scale-1").count_rows()
    assert 0 < stored < 360
    resumed = run_analysis(cfg)
    assert resumed["metrics"]["asked_requests"] == 360 - stored and resumed["metrics"]["reused_requests"] == stored
    pd.testing.assert_frame_equal(pd.read_parquet(f"{clean['out_dir']}/items.parquet"),
                                  pd.read_parquet(f"{resumed['out_dir']}/items.parquet"))
