"""Ray tier: engine pool, store and the compute_utilities job on a real local cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, compose
from uetool.engines.base import ElicitationRequest, GenerationSettings, RequestBatch
from uetool.io.store import ResponseStore
from uetool.runtime.compute import compute_utilities

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _requests(n: int) -> RequestBatch:
    return RequestBatch.from_requests(
        [ElicitationRequest(f"k{i}", "p", ("A", "B"), None, i % 7, 7 + i % 5, i % 2) for i in range(n)])


def test_pool_resends_the_shard_of_a_killed_actor():
    from uetool.runtime.pool import EnginePool

    settings = GenerationSettings(k=4)
    reference = EnginePool("simulated", {"n_outcomes": 12, "seed": 1}, replicas=1, shard_size=5, progress=False)
    expected = reference.run(_requests(60), settings)
    reference.shutdown()
    pool = EnginePool("simulated", {"n_outcomes": 12, "seed": 1}, replicas=1, shard_size=5, progress=False)
    pid = pool.pids()[0]
    seen = []

    def kill_after_first(shard):
        seen.append(len(shard))
        if len(seen) == 1:
            os.kill(pid, signal.SIGKILL)  # the engine process dies with shards in flight

    got = pool.run(_requests(60), settings, on_shard=kill_after_first)
    assert pool.replacements >= 1 and pool.pids()[0] != pid
    assert got.texts.tolist() == expected.texts.tolist() and got.keys == expected.keys
    assert sum(seen) == 60  # each shard delivered exactly once
    pool.shutdown()


def _hf_config(tiny_model: str, root, **extra) -> dict:
    overrides = ["model=tiny-random", "engine=hf", f"model.path={tiny_model}", "outcomes=quickstart",
                 f"results_root={root}", "elicitation.k=2", "elicitation.max_tokens=2", "fit.pairs_per_round=150",
                 "fit.bootstrap=0", "progress=false", "pool.shard_size=16", "transitivity.n_triads=60"]
    return compose(overrides + [f"{k}={v}" for k, v in extra.items()])


def test_hf_job_survives_engine_kill_and_matches_uninterrupted(tiny_model, tmp_path):
    clean = compute_utilities(_hf_config(tiny_model, tmp_path / "clean"))
    killed = {"done": False}
    cfg = _hf_config(tiny_model, tmp_path / "killed")

    from uetool.runtime.compute import open_pool
    from uetool.runtime.config import RunConfig

    pool = open_pool(RunConfig.from_dict(cfg))

    def kill_once(state):
        if state.next_round == 1 and not killed["done"]:
            os.kill(pool.pids()[0], signal.SIGKILL)
            killed["done"] = True

    try:
        out = compute_utilities(cfg, pool=pool, on_round=kill_once)
    finally:
        pool.shutdown()
    assert killed["done"] and pool.replacements >= 1
    a = pd.read_parquet(f"{clean['out_dir']}/utilities.parquet")
    b = pd.read_parquet(f"{out['out_dir']}/utilities.parquet")
    np.testing.assert_allclose(a["mean"], b["mean"], atol=1e-9)
    store = ResponseStore(str(tmp_path / "killed"), "tiny-random")
    edges, triads = (pd.read_parquet(f"{out['out_dir']}/{name}.parquet") for name in ("edges", "triads"))
    pairs = {pair for x, y in ((edges.a, edges.b), (triads.a, triads.b), (triads.b, triads.c), (triads.a, triads.c))
             for pair in zip(x, y, strict=True)}
    assert store.count_rows() == len(store) == 2 * len(pairs)  # every pair asked once per order, nothing twice
    assert out["metrics"]["holdout_accuracy"] is not None


def test_rerun_asks_nothing_already_answered(tmp_path):
    overrides = ["model=tiny-random", "engine=simulated", "outcomes=quickstart", f"results_root={tmp_path}",
                 "fit.bootstrap=0", "progress=false", "pool.shard_size=200"]
    first = compute_utilities(compose(overrides))
    os.remove(f"{first['out_dir']}/checkpoint.npz")  # force a full re-run: only the store can answer it
    second = compute_utilities(compose(overrides))
    assert first["stats"].asked > 0 and second["stats"].asked == 0
    assert first["metrics"]["holdout_accuracy"] == second["metrics"]["holdout_accuracy"]


def _job_command(root, *extra) -> list[str]:
    return [sys.executable, "-m", "jobs.compute_utilities", "model=tiny-random", "engine=simulated",
            "outcomes=main", f"results_root={root}", "fit.bootstrap=0", "progress=false", "pool.shard_size=100",
            "ray.num_cpus=1", *extra]


def test_job_process_killed_mid_round_resumes_identically(tmp_path):
    """SIGKILL the whole job process (and its Ray cluster) mid-run, re-run, compare with an uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    clean = subprocess.run(_job_command(tmp_path / "clean"), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    root = tmp_path / "killed"
    proc = subprocess.Popen(_job_command(root), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    store_dir = root / "responses" / "tiny-random.simulated"
    deadline = time.time() + 300
    while time.time() < deadline and not (store_dir.exists() and len(list(store_dir.glob("part-*"))) >= 40):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (root / "compute_utilities" / "tiny-random.simulated" / "checkpoint.npz").exists()
    assert not (root / "compute_utilities" / "tiny-random.simulated" / "utilities.parquet").exists()
    resumed = subprocess.run(_job_command(root), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = pd.read_parquet(tmp_path / "clean" / "compute_utilities" / "tiny-random.simulated" / "utilities.parquet")
    b = pd.read_parquet(root / "compute_utilities" / "tiny-random.simulated" / "utilities.parquet")
    np.testing.assert_allclose(a["mean"], b["mean"], atol=1e-9)
    store = ResponseStore(str(root), "tiny-random.simulated")
    assert store.count_rows() == len(store)  # nothing stored twice


def test_two_identical_jobs_at_once_store_each_answer_once(tmp_path):
    """Started together on one results root: the second waits for the first's store lock, then reuses its answers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    command = [*_job_command(tmp_path / "shared"), "outcomes=quickstart"]
    jobs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [job.communicate(timeout=900) for job in jobs]
    assert all(job.returncode == 0 for job in jobs), [err[-2000:] for _, err in outputs]
    assert any("waiting for the response store" in out for out, _ in outputs)
    store = ResponseStore(str(tmp_path / "shared"), "tiny-random.simulated")
    assert store.count_rows() == len(store) > 0  # exactly one row per key
    clean = subprocess.run([*_job_command(tmp_path / "clean"), "outcomes=quickstart"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    a, b = (pd.read_parquet(root / "compute_utilities" / "tiny-random.simulated" / "utilities.parquet")
            for root in (tmp_path / "clean", tmp_path / "shared"))
    pd.testing.assert_frame_equal(a, b)


# --- pools always clean up -----------------------------------------------------------------------------------------

def _group_states() -> dict[str, str]:
    from ray.util import placement_group_table

    return {g: info["state"] for g, info in placement_group_table().items()}


def _live_groups() -> set[str]:
    return {g for g, state in _group_states().items() if state != "REMOVED"}


def test_a_replaced_replica_releases_its_placement_group():
    from uetool.runtime.pool import EnginePool

    before = _live_groups()
    with EnginePool("simulated", {"n_outcomes": 12, "seed": 1}, num_cpus=0.5, shard_size=5, progress=False) as pool:
        (first,) = pool.placement_groups()
        pid = pool.pids()[0]
        killed = []

        def kill_once(shard):
            if not killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(True)

        pool.run(_requests(30), GenerationSettings(k=2), on_shard=kill_once)
        assert pool.replacements >= 1
        (second,) = pool.placement_groups()
        assert second.id != first.id and _group_states()[first.id.hex()] == "REMOVED"
    assert _live_groups() == before  # and the pool's own group went with it


def test_a_replica_no_node_can_hold_fails_at_once_naming_what_is_missing():
    from uetool.runtime.pool import EnginePool, PoolStartError

    before = _live_groups()
    with pytest.raises(PoolStartError, match=r"needs 4 GPUs and 8 CPUs in one node; the cluster's nodes have 0 GPU"):
        EnginePool("simulated", {"n_outcomes": 4}, num_cpus=2, num_gpus=1, tensor_parallel_size=4, progress=False)
    assert _live_groups() == before


def test_waiting_for_resources_times_out_and_a_failed_load_releases_them():
    from uetool.runtime.pool import EnginePool, PoolStartError

    before = _live_groups()
    with EnginePool("simulated", {"n_outcomes": 4}, num_cpus=2, progress=False) as holder:
        holder.pids()
        with pytest.raises(PoolStartError, match=r"waited \d+ s for 2 CPUs \(pool.start_timeout_s=1;"):
            EnginePool("simulated", {"n_outcomes": 4}, num_cpus=2, progress=False, start_timeout_s=1)
    # an engine that fails to load (unknown weights) holds the whole cluster only until the pool exits
    with pytest.raises(Exception, match="unknown builtin model"):
        with EnginePool("hf", {"path": "builtin:no-such-model"}, num_cpus=2, progress=False) as broken:
            broken.pids()
    with EnginePool("simulated", {"n_outcomes": 4}, num_cpus=2, progress=False, start_timeout_s=60) as after:
        assert len(after.pids()) == 1  # the same resources, free again
    assert _live_groups() == before


def test_pools_of_several_replicas_never_deadlock_each_other():
    """Two pools of 2 one-CPU replicas on a 2-CPU cluster, started together: placed all or none, so one waits for
    the other instead of each holding one replica's CPU and waiting for a second forever."""
    import threading

    from uetool.runtime.pool import EnginePool

    before = _live_groups()
    errors, done = [], []

    def start(tag: str) -> None:
        try:
            with EnginePool("simulated", {"n_outcomes": 4}, replicas=2, num_cpus=1, progress=False,
                            start_timeout_s=90) as pool:
                assert len(pool.pids()) == 2
                time.sleep(0.5)
            done.append(tag)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(repr(err))

    for attempt in range(2):
        threads = [threading.Thread(target=start, args=(f"{attempt}{t}",)) for t in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors and len(done) == 4
    assert _live_groups() == before


def test_a_pool_too_big_for_the_cluster_fails_at_once():
    from uetool.runtime.pool import EnginePool, PoolStartError

    with pytest.raises(PoolStartError, match="an engine pool of 3 replicas needs 1 CPU for each; the cluster's nodes "
                                             r"\(2 CPU\) hold 2 at most"):
        EnginePool("simulated", {"n_outcomes": 4}, replicas=3, num_cpus=1, progress=False)


def test_groups_a_dead_process_left_behind_are_released_by_name():
    from ray.util.placement_group import placement_group

    from uetool.runtime.pool import release_placement_groups

    orphan = placement_group([{"CPU": 0.1}], name="uetool-engine/s/model-a/0.0")
    other = placement_group([{"CPU": 0.1}], name="uetool-engine/s/model-b/0.0")
    ray_get = __import__("ray").get
    ray_get([orphan.ready(), other.ready()])
    assert release_placement_groups("uetool-engine/s/model-a/") == 1
    states = _group_states()
    assert states[orphan.id.hex()] == "REMOVED" and states[other.id.hex()] != "REMOVED"
    assert release_placement_groups("uetool-engine/s/model-b/") == 1


def test_the_prompt_reading_simulated_engine_runs_as_a_job(tmp_path):
    """engine=simulated_text from config: prompts rendered and shipped, utilities those of the agent its wording
    meets (paper template), not of the base agent."""
    from scipy.stats import pearsonr

    from uetool.core.outcomes import load_outcomes
    from uetool.core.prompts import get_template
    from uetool.engines.simulated import PromptReadingSimulatedEngine

    cfg = compose(["model=tiny-random", "engine=simulated_text", "engine.wording_sensitivity=1.0", "outcomes=main",
                   f"results_root={tmp_path}", "fit.bootstrap=0", "progress=false", "elicitation=logprob"])
    out = compute_utilities(cfg)
    utilities = pd.read_parquet(f"{out['out_dir']}/utilities.parquet")
    outcomes = load_outcomes("main")
    engine = PromptReadingSimulatedEngine(list(outcomes.descriptions), wording_sensitivity=1.0, seed=0)
    wording = engine.wording(get_template("paper").render(outcomes.descriptions[0], outcomes.descriptions[1]), 0, 1,
                             cfg["elicitation"]["system_message"])  # it reads the system message too
    met, base = engine.agent_for(wording, 10).mean, engine._agent(10).mean
    assert pearsonr(utilities["mean"], met)[0] > 0.97
    metrics = out["metrics"]  # what produced the numbers, so that modes are never mixed unknowingly
    assert (metrics["mode"], metrics["k"], metrics["template"], metrics["parser"]) == ("logprob", 10, "paper", "uetool")
    assert metrics["failed_request_rate"] == 0.0
    assert pearsonr(utilities["mean"], base)[0] < pearsonr(utilities["mean"], met)[0] - 0.1


class _FailingPool:
    """A real engine pool that fails once `fail_after` requests have been answered (a job killed mid-step)."""

    def __init__(self, pool, fail_after: int | None) -> None:
        self.pool, self.fail_after, self.answered = pool, fail_after, 0
        self.reads_text, self.replacements = pool.reads_text, 0

    def run(self, requests, settings, on_shard=None):
        def count(shard):
            if on_shard is not None:
                on_shard(shard)  # stored before the failure, as a real kill after a stored shard leaves it
            self.answered += len(shard)
            if self.fail_after is not None and self.answered >= self.fail_after:
                raise KeyboardInterrupt("killed while asking")

        return self.pool.run(requests, settings, on_shard=count)


def test_a_run_killed_while_asking_triads_resumes_without_asking_a_stored_edge_again(tmp_path):
    from uetool.runtime.pool import EnginePool

    overrides = ["model=tiny-random", "engine=simulated", "outcomes=main", "fit.bootstrap=0", "progress=false",
                 "pool.shard_size=100", "transitivity.n_triads=300"]
    clean = compute_utilities(compose(overrides + [f"results_root={tmp_path / 'clean'}"]))
    learning = 2 * (clean["metrics"]["n_edges"] + clean["metrics"]["n_holdout_edges"])  # requests before triads
    assert clean["stats"].asked > learning
    cfg = compose(overrides + [f"results_root={tmp_path / 'killed'}"])
    with EnginePool("simulated", {"n_outcomes": 510, "seed": 0}, num_cpus=0.5, shard_size=100,
                    progress=False) as pool:
        with pytest.raises(KeyboardInterrupt):  # killed after 2 shards of triad edges were stored
            compute_utilities(cfg, pool=_FailingPool(pool, fail_after=learning + 200))
    stored = ResponseStore(str(tmp_path / "killed"), "tiny-random.simulated").count_rows()
    assert learning < stored < clean["stats"].asked  # some triad edges made it to the store, not all
    resumed = compute_utilities(cfg)
    assert resumed["stats"].asked == clean["stats"].asked - stored  # nothing stored is asked again
    for name in ("utilities", "triads"):
        pd.testing.assert_frame_equal(pd.read_parquet(f"{clean['out_dir']}/{name}.parquet"),
                                      pd.read_parquet(f"{resumed['out_dir']}/{name}.parquet"))
    assert resumed["metrics"]["log10_cycle_probability"] == clean["metrics"]["log10_cycle_probability"]
