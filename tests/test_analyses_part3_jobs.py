"""Political values, power-seeking, fitness and corrigibility as jobs on a real local Ray cluster: simulated agents
whose answers are known, answered through engines and the response store; a kill mid-fan-out resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from tests.test_analysis_jobs import _config, _FailingPool
from uetool.io.store import ResponseStore
from uetool.runtime.analysis import analysis_plan, run_analysis, simulated_run

pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def _cluster(ray_cluster):
    return ray_cluster


def test_power_seeking_and_averse_agents_are_told_apart_through_the_engines(tmp_path):
    out = {agent: run_analysis(_config(tmp_path, "experiment=power_seeking", "outcomes=main",
                                       "power_seeking.max_outcomes=150", f"power_seeking.simulated_agent={agent}",
                                       "model=sim-scale-2"))["analysis"]
           for agent in ("power_seeking", "power_averse")}
    seeking, averse = out["power_seeking"], out["power_averse"]
    assert seeking["corr_preference_power_ci"][0] > 0.5 and averse["corr_preference_power_ci"][1] < -0.5
    assert seeking["n_corr_preference_power_category"] == 17  # every power outcome kept at the reduced size


def test_fitness_seeking_agent_correlates_with_the_fitness_score(tmp_path):
    out = run_analysis(_config(tmp_path, "experiment=fitness", "outcomes=main", "fitness.max_outcomes=60"))
    items = pd.read_parquet(f"{out['out_dir']}/items.parquet")
    assert items["fitness_score"].notna().sum() == 19 and len(items) == 60
    assert out["analysis"]["corr_fitness_utility_ci"][0] > 0.5


def test_corrigibility_samples_reversals_from_the_fit_and_a_rerun_asks_nothing(tmp_path):
    cfg = _config(tmp_path, "experiment=corrigibility", "outcomes=main", "corrigibility.max_outcomes=80",
                  "corrigibility.n_options=80")
    out = run_analysis(cfg)
    items = pd.read_parquet(f"{out['out_dir']}/items.parquet")
    base = pd.read_parquet(f"{out['out_dir']}/utilities.parquet").query("option_set == 'base'")
    mu = base.set_index("description")["mean"]
    assert len(items) == 80 and (items["reversal"] > 0).all()
    want = mu[items["preferred"]].to_numpy() - mu[items["dispreferred"]].to_numpy()
    np.testing.assert_allclose(items["reversal"], want)
    assert out["analysis"]["corr_utility_reversal_ci"][1] < -0.4  # the incorrigible agent
    again = run_analysis(cfg)
    assert again["metrics"]["asked_requests"] == 0  # same base fit, same reversals, both fits restored
    pd.testing.assert_frame_equal(items, pd.read_parquet(f"{again['out_dir']}/items.parquet"))
    indifferent = run_analysis(_config(tmp_path / "ind", "experiment=corrigibility", "outcomes=main",
                                       "corrigibility.max_outcomes=80", "corrigibility.n_options=80",
                                       "corrigibility.simulated_agent=indifferent"))["analysis"]
    assert indifferent["corr_utility_reversal_ci"][0] > out["analysis"]["corr_utility_reversal_ci"][1]


def test_political_values_fans_out_one_run_per_entity_and_resumes_after_a_kill(tmp_path):
    from uetool.analyses.political_values import planted_positions
    from uetool.runtime.compute import open_pool
    from uetool.runtime.config import RunConfig

    overrides = ("experiment=political_values", "political_values.max_policies=40",
                 "political_values.max_entities=12", "pool.shard_size=50")
    clean = run_analysis(_config(tmp_path / "clean", *overrides))
    out_dir = Path(clean["out_dir"])
    items = pd.read_parquet(out_dir / "items.parquet")
    agents = items.drop_duplicates("option_set")
    assert len(agents) == 13 and agents["kind"].iloc[0] == "ai"
    for key in agents["option_set"]:  # every entity its own results folder
        assert len(pd.read_parquet(out_dir / key / "utilities.parquet")) == 40
    run = RunConfig.from_dict(_config(tmp_path / "clean", *overrides))
    entities = analysis_plan(run).items["entities"]
    rho = spearmanr(agents["pc1"].iloc[1:], planted_positions(entities, 0)).statistic
    assert rho >= 0.9
    anchor = agents[agents["agent"] == "The Democratic Party"]
    assert float(anchor["pc1"].iloc[0]) < 0
    assert json.loads((out_dir / "analysis.json").read_text())["nearest"][0]["entity"] == clean["analysis"][
        "nearest_entity"]

    asked = clean["metrics"]["asked_requests"]
    cfg = _config(tmp_path / "killed", *overrides)
    run = RunConfig.from_dict(cfg)
    with open_pool(simulated_run(run, analysis_plan(run))) as pool:
        with pytest.raises(KeyboardInterrupt):  # killed in the middle of the entity runs
            run_analysis(run, pool=_FailingPool(pool, fail_after=asked // 2))
    stored = ResponseStore(str(tmp_path / "killed"), "sim-scale-1").count_rows()
    assert asked / 3 < stored < asked
    checkpoints = list((tmp_path / "killed" / "political_values" / "sim-scale-1" / "checkpoints").glob("*.npz"))
    assert 1 < len(checkpoints) < 13
    resumed = run_analysis(cfg)
    assert resumed["metrics"]["asked_requests"] == asked - stored
    pd.testing.assert_frame_equal(items, pd.read_parquet(f"{resumed['out_dir']}/items.parquet"))


def test_a_model_placed_through_a_reference_asks_only_its_own_policies(tmp_path):
    overrides = ("experiment=political_values", "political_values.max_policies=40", "political_values.max_entities=8")
    base = run_analysis(_config(tmp_path, *overrides))
    placed = run_analysis(_config(tmp_path, *overrides, f"political_values.reference={base['out_dir']}",
                                  "political_values.ai_position=0.9", model="sim-scale-2"))
    assert placed["metrics"]["n_option_sets"] == 1  # the entities come from the reference, not asked again
    assert placed["analysis"]["ai_pc1"] > 0 > base["analysis"]["ai_pc1"]  # planted right of the anchor, and left
    out = Path(placed["out_dir"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ai", "checkpoints"]
    items = pd.read_parquet(out / "items.parquet")
    assert items["from_reference"].sum() == 8 * 40 and items["option_set"].nunique() == 9
    with pytest.raises(ValueError, match="cannot answer the reasoning template"):
        run_analysis(_config(tmp_path / "r", *overrides, "political_values.entity_reasoning=true"))


def test_reasoning_entities_are_sampled_with_their_own_settings_on_a_real_engine(tmp_path):
    """The paper's split on the tiny model: the model itself K=3 direct, the entities K=2 with reasoning."""
    out = run_analysis(_config(tmp_path, "experiment=political_values", "political_values.max_policies=4",
                               "political_values.max_entities=3", "political_values.entity_reasoning=true",
                               "political_values.entity_k=2", "political_values.entity_max_tokens=6",
                               "elicitation.k=3", "elicitation.max_tokens=2", "pool.shard_size=64",
                               model="tiny-random"))
    assert out["metrics"]["n_option_sets"] == 4
    samples = [len(r.texts) for r in ResponseStore(str(tmp_path), "tiny-random").load().values()]
    assert set(samples) == {2, 3}
    assert samples.count(2) == 3 * samples.count(3)  # three entity sets, each asked as the model's own set
