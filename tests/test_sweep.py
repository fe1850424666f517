"""Sweeps: planning every paper model's resources without GPUs, failures, restarts and the cpu_demo report."""

from __future__ import annotations

import sys
import threading
import time

import pandas as pd
import pytest
from _ray_head import ray_head, submit_and_wait
from conftest import ROOT, compose

from uetool.runtime.sweep_plan import plan_sweep

CONF = ROOT / "conf"
SIMS = ["sim-scale-0.25", "sim-scale-0.5", "sim-scale-1", "sim-scale-2"]


def test_open_weight_sweep_resolves_every_model_to_a_placeable_resource_request():
    plans = plan_sweep(compose(["sweep=open_weight"]), CONF)
    assert len(plans) == 57 and len({p.key for p in plans}) == 57
    for plan in plans:
        assert plan.engine == "vllm" and plan.config["model"]["key"] == plan.key
        tp = plan.tensor_parallel_size
        assert tp in (1, 2, 4, 8), plan.key
        assert plan.num_gpus_per_replica == tp
        if tp > 1:  # one placement group of tp GPU bundles per replica, packed on one node
            assert plan.bundles == [{"GPU": 1.0, "CPU": plan.num_cpus}] * tp
        assert isinstance(plan.capability, float) and 0 < plan.capability < 100
    # the biggest models need a whole 8-GPU node, the small ones one GPU
    by_key = {p.key: p for p in plans}
    assert by_key["llama-31-405b-instruct-fp8"].tensor_parallel_size == 8
    assert by_key["qwen25-05b-instruct"].tensor_parallel_size == 1


def test_paper_sweep_has_the_18_open_and_5_api_models():
    plans = plan_sweep(compose(["sweep=paper"]), CONF)
    engines = pd.Series([p.engine for p in plans]).value_counts().to_dict()
    assert engines == {"vllm": 18, "openai": 5}
    assert all(p.num_gpus_per_replica == 0 and not p.bundles for p in plans if p.engine == "openai")
    # the per-model configs are complete job configs: API models read their key from an env var only
    api = [p.config["model"] for p in plans if p.engine == "openai"]
    assert all(m["api_key_env"] and "api_key" not in m for m in api)


def test_sweep_config_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="choose a sweep"):
        plan_sweep(compose([]), CONF)
    with pytest.raises(ValueError, match="unknown model 'gpt-7'; did you mean gpt-4o"):
        plan_sweep(compose(["sweep=custom", "sweep.models=[tiny-random,gpt-7]"]), CONF)
    with pytest.raises(ValueError, match="lists no models"):
        plan_sweep(compose(["sweep=custom"]), CONF)
    with pytest.raises(ValueError, match="unknown model fields \\['weights'\\]"):
        plan_sweep(compose(["sweep=custom", "sweep.models=[{key: x, base: tiny-random, weights: 1}]"]), CONF)
    with pytest.raises(ValueError, match="twice"):
        plan_sweep(compose(["sweep=custom", "sweep.models=[sim-scale-1,sim-scale-1]"]), CONF)
    # names that become directories cannot leave the results root
    with pytest.raises(ValueError, match="`sweep.name` must be a plain name"):
        plan_sweep(compose(["sweep=custom", "sweep.name=../../etc", "sweep.models=[sim-scale-1]"]), CONF)
    with pytest.raises(ValueError, match="`model.key` must be a plain name.*'../../../../tmp/x'"):
        plan_sweep(compose(["sweep=custom", "sweep.models=[{key: ../../../../tmp/x, base: sim-scale-1}]"]), CONF)


def test_the_results_layout_refuses_names_that_leave_the_root(tmp_path):
    from uetool.io.layout import ResultsLayout

    layout = ResultsLayout(str(tmp_path))
    for bad in ("..", "../x", "a/b", "", "a b", "x/../../y"):
        for spell in (lambda n: layout.responses_dir(n), lambda n: layout.run_dir("compute_utilities", n),
                      lambda n: layout.run_dir(n, "m"), lambda n: layout.sweep_dir(n),
                      lambda n: layout.sweep_record("s", n), lambda n: layout.run_dir("e", "m", n)):
            with pytest.raises(ValueError, match="plain name"):
                spell(bad)
    assert layout.run_dir("compute_utilities", "llama-3.1_8b") == f"{tmp_path}/compute_utilities/llama-3.1_8b"


def _sweep_cfg(tmp_path, name: str) -> dict:
    models = ",".join(SIMS) + ",{key: broken-weights, base: tiny-random, path: /nonexistent/weights}"
    return compose(["sweep=custom", f"sweep.name={name}", f"sweep.models=[{models}]", f"results_root={tmp_path}",
                    "++sweep.pool_overrides.simulated={num_cpus: 0.5, shard_size: 200}", "sweep.report_n_boot=200",
                    "fit.bootstrap=20", "progress=false"])


def _model_results(root, model: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = root / "compute_utilities" / model
    return pd.read_parquet(out / "utilities.parquet"), pd.read_parquet(out / "edges.parquet")


def test_sweep_survives_killing_the_results_actor_and_an_engine_actor(ray_cluster, tmp_path):
    import ray

    from uetool.runtime.sweep import NAMESPACE, engine_pool_name, results_actor_name, run_sweep

    clean = run_sweep(_sweep_cfg(tmp_path / "clean", "s"), CONF)
    killed: dict[str, bool] = {}
    victim = "sim-scale-2"

    def kill_engine_mid_run() -> None:
        # kill the victim's engine replica once it has answered (and the store holds) some requests
        store = tmp_path / "killed" / "responses" / victim
        deadline = time.time() + 300
        while time.time() < deadline and "engine" not in killed:
            if store.exists() and any(store.rglob("*.parquet")):
                try:
                    ray.kill(ray.get_actor(f"{engine_pool_name('s', victim)}/0.0", namespace=NAMESPACE))
                    killed["engine"] = True
                except ValueError:
                    pass
            time.sleep(0.02)

    def kill_results_actor(record: dict) -> None:
        if "results" not in killed:  # after the first record: the restarted actor must rebuild it from disk
            ray.kill(ray.get_actor(results_actor_name("s"), namespace=NAMESPACE), no_restart=False)
            killed["results"] = True

    watcher = threading.Thread(target=kill_engine_mid_run, daemon=True)
    watcher.start()
    out = run_sweep(_sweep_cfg(tmp_path / "killed", "s"), CONF, on_record=kill_results_actor)
    watcher.join(timeout=5)
    assert killed == {"engine": True, "results": True}
    status = {r["model"]: r for r in out["records"]}
    assert set(status) == {*SIMS, "broken-weights"}
    # the model with impossible weights failed alone, with its error in the record and the report
    assert status["broken-weights"]["status"] == "failed"
    assert "/nonexistent/weights" in status["broken-weights"]["error"]
    assert all(status[m]["status"] == "done" for m in SIMS)
    assert status[victim]["engine_replacements"] >= 1
    html = (tmp_path / "killed" / "sweeps" / "s" / "report.html").read_text()
    assert "broken-weights" in html and "/nonexistent/weights" in html
    # complete, identical results: every model's utilities and edges, and the cross-model table
    for model in SIMS:
        for got, want in zip(_model_results(tmp_path / "killed", model), _model_results(tmp_path / "clean", model),
                             strict=True):
            pd.testing.assert_frame_equal(got, want)
    cols = ["model", "status", "capability", "holdout_accuracy", "average_confidence", "log10_cycle_probability",
            "neighbour_std"]
    tables = [pd.read_csv(root / "sweeps" / "s" / "metrics_by_model.csv")[cols] for root in
              (tmp_path / "killed", tmp_path / "clean")]
    pd.testing.assert_frame_equal(*tables)
    assert clean["skipped"] == []


def test_resubmitted_sweep_skips_finished_models_and_reruns_failed_ones(ray_cluster, tmp_path):
    from uetool.runtime.sweep import run_sweep

    cfg = _sweep_cfg(tmp_path, "again")
    cfg["sweep"]["models"] = SIMS[:2] + cfg["sweep"]["models"][-1:]
    first = run_sweep(cfg, CONF)
    assert first["skipped"] == []
    before = _model_results(tmp_path, SIMS[0])[0]
    second = run_sweep(cfg, CONF)
    assert second["skipped"] == SIMS[:2]  # the failed model is tried again
    assert {r["model"]: r["status"] for r in second["records"]}["broken-weights"] == "failed"
    pd.testing.assert_frame_equal(_model_results(tmp_path, SIMS[0])[0], before)
    # a changed config is not "finished": the model runs again
    cfg["fit"]["bootstrap"] = 10
    assert run_sweep(cfg, CONF)["skipped"] == []


def test_a_model_that_fails_to_load_leaves_its_resources_to_the_next(ray_cluster, tmp_path):
    """Both models ask for the whole 2-CPU cluster; the first cannot load its engine. Its pool must release the CPUs
    (its placement group included), or the second would wait until its start timeout. Ray picks which model's pool
    is placed first: the sweep is repeated until the failing one went first (it nearly always does at once)."""
    from ray.util import placement_group_table

    from uetool.runtime.sweep import run_sweep

    for attempt in range(5):
        cfg = compose(["sweep=custom", f"sweep.name=load-failure-{attempt}", f"results_root={tmp_path}",
                       "sweep.models=[{key: fails-to-load, base: tiny-random, path: 'builtin:no-such-model'},"
                       "sim-scale-1]", "progress=false", "pool.num_cpus=2", "sweep.start_timeout_s=120",
                       "fit.bootstrap=0", "sweep.report_n_boot=50"])
        order: list[str] = []
        out = run_sweep(cfg, CONF, on_record=lambda record, seen=order: seen.append(record["model"]))
        status = {r["model"]: r for r in out["records"]}
        assert status["fails-to-load"]["status"] == "failed" and "no-such-model" in status["fails-to-load"]["error"]
        assert status["sim-scale-1"]["status"] == "done", status["sim-scale-1"].get("error")
        assert status["sim-scale-1"]["provenance"]["data_files"]  # every record says what produced it
        assert all(info["state"] == "REMOVED" for info in placement_group_table().values())
        if order == ["fails-to-load", "sim-scale-1"]:
            break
    assert order == ["fails-to-load", "sim-scale-1"], "the failing model never went first in 5 sweeps"


@pytest.mark.ray
@pytest.mark.slow
def test_cpu_demo_sweep_via_ray_job_submit_shows_the_coherence_ordering(tmp_path):
    # the whole cpu_demo (SmolLM2, tiny-random, four agents) through `ray job submit`; logprob keeps SmolLM2 quick
    results = tmp_path / "results"
    with ray_head(num_cpus=2, port=6393, dashboard_port=8293) as env:
        out = submit_and_wait(env, 8293, f"{sys.executable} -m jobs.sweep sweep=cpu_demo elicitation=logprob "
                                         f"results_root={results} sweep.report_n_boot=200 fit.bootstrap=20 "
                                         "progress=false", timeout_s=1500)
    assert "STATUS SUCCEEDED" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = results / "sweeps" / "cpu_demo"
    assert f"report: {sweep / 'report.html'}" in out.stdout
    table = pd.read_csv(sweep / "metrics_by_model.csv")
    assert set(table["status"]) == {"done"}
    # models with a capability come first, by capability: the agents' stand-in scores ascend with their scale
    assert table["model"].tolist()[:4] == SIMS
    sims = table.iloc[:4]
    # the agents' known ordering (what trend_average_confidence.png plots): more scale, more coherent
    assert sims["average_confidence"].is_monotonic_increasing and sims["average_confidence"].is_unique
    assert sims["log10_cycle_probability"].is_monotonic_decreasing
    trends = pd.read_csv(sweep / "trends.csv").set_index("metric")
    assert trends.loc["average_confidence", "spearman_rho"] == 1.0
    assert trends.loc["log10_cycle_probability", "spearman_rho"] == -1.0
    assert (sweep / "trend_average_confidence.png").stat().st_size > 10_000
    assert (sweep / "convergence_heatmap.png").exists()
    html = (sweep / "report.html").read_text()
    assert all(m in html for m in ["smollm2-135m-instruct", "tiny-random", *SIMS])
