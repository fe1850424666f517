"""Run one sweep: every model's compute_utilities as its own Ray task, results gathered by the results actor.

Each model task builds its own engine pool (replicas sized by the model's tensor-parallel degree), so Ray decides
which models run at once: a pool whose resources are taken waits in Ray's queue; there is no scheduler here.
A model that fails (bad weights, OOM, API outage, a crashed worker) is recorded with its error and the sweep goes
on. Re-submitting the same sweep skips models that finished with the same config and resumes the others from their
checkpoints and the response store.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import ray

from ..core.progress import progress_bar
from .compute import compute_utilities, run_provenance
from .config import TrendsConfig
from .pool import release_placement_groups
from .ray_session import ensure_ray
from .results_actor import ResultsActor
from .sweep_plan import DEFAULT_CONF, ModelPlan, plan_sweep

__all__ = ["run_sweep", "results_actor_name", "engine_pool_name", "NAMESPACE"]

log = logging.getLogger(__name__)

NAMESPACE = "uetool"


def results_actor_name(sweep: str) -> str:
    return f"uetool-results/{sweep}"


def engine_pool_name(sweep: str, model: str) -> str:
    """Prefix of a model's engine replica names (`<prefix>/<slot>.<generation>`, namespace NAMESPACE)."""
    return f"uetool-engine/{sweep}/{model}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _base_record(plan: ModelPlan, sweep: str) -> dict:
    return {"model": plan.key, "sweep": sweep, "experiment": plan.experiment, "capability": plan.capability,
            "capability_name": "mmlu",
            "capability_note": plan.config["model"].get("capability_note"), "engine": plan.engine,
            "replicas": plan.replicas, "tensor_parallel_size": plan.tensor_parallel_size,
            "fingerprint": plan.fingerprint,
            "results_dir": plan.run.layout.relative_run_dir(plan.run.experiment, plan.key)}


def _failed_record(plan: ModelPlan, sweep: str, error: str, seconds: dict | None, **extra: object) -> dict:
    try:
        prov = run_provenance(plan.run)
    except OSError:  # the outcome file went away meanwhile: the record still names the error
        prov = None
    return _base_record(plan, sweep) | {"status": "failed", "metrics": None, "error": error, "seconds": seconds,
                                        "provenance": prov, "finished_at": _now(), **extra}


@ray.remote(num_cpus=0, max_retries=0)
def _run_model(plan: ModelPlan, sweep: str, after: list | None = None, conf_dir: str | None = None,
               predicted: dict | None = None) -> dict:
    """One experiment of one model end to end; any failure becomes a 'failed' record instead of an exception.

    `after`: the model's earlier experiments (object refs inside a list, so Ray does not resolve them): one model's
    experiments run one after the other (they share its response store), different models side by side."""
    if after:
        ray.wait(after, num_returns=len(after))  # waits without raising: a crashed predecessor is its own record
    started = time.perf_counter()
    try:
        if plan.run.robustness is not None:
            from .robustness import run_robustness

            out = run_robustness(plan.run, pool_name=engine_pool_name(sweep, plan.key), pool_namespace=NAMESPACE)
        elif plan.run.analysis is None:
            out = compute_utilities(plan.run, pool_name=engine_pool_name(sweep, plan.key), pool_namespace=NAMESPACE)
        else:
            from .analysis import run_analysis

            out = run_analysis(plan.run, pool_name=engine_pool_name(sweep, plan.key), pool_namespace=NAMESPACE,
                               conf_dir=conf_dir)
    except Exception as error:  # noqa: BLE001 - one model's failure must not end the sweep
        return _failed_record(plan, sweep, f"{type(error).__name__}: {error}",
                              {"total": time.perf_counter() - started}, traceback=traceback.format_exc()[-4000:],
                              predicted=predicted)
    extra = {"analysis": out["analysis"]} if "analysis" in out else {}
    extra["predicted"] = predicted
    return _base_record(plan, sweep) | {"status": "done", "metrics": out["metrics"], "error": None,
                                        "seconds": out["timings"], "engine_replacements": out["replacements"],
                                        "provenance": out["provenance"], "finished_at": _now(), **extra}


def _results_actor(cfg: dict, sweep: str):
    n_boot = int(cfg["sweep"].get("report_n_boot") or 1000)
    # restarted by Ray after a crash or kill (it rebuilds from disk); calls made meanwhile wait and are retried
    options = dict(name=results_actor_name(sweep), namespace=NAMESPACE, get_if_exists=True, num_cpus=0,
                   max_restarts=-1, max_task_retries=-1, max_concurrency=1)
    mix_modes = TrendsConfig.from_dict(cfg.get("trends")).mix_modes
    args = (cfg["results_root"], sweep, int(cfg["seed"]), n_boot, mix_modes)
    actor = ray.remote(ResultsActor).options(**options).remote(*args)
    if tuple(ray.get(actor.where.remote())) != (args[0], sweep):
        # an actor of the same sweep name writing to another results root (an earlier run in this cluster)
        ray.kill(actor, no_restart=True)
        actor = ray.remote(ResultsActor).options(**{**options, "get_if_exists": False}).remote(*args)
    return actor


def run_sweep(cfg: dict, conf_dir: Path | str | None = None, *,
              on_record: Callable[[dict], None] | None = None) -> dict:
    """Run the sweep of the resolved config `cfg`; returns {'sweep', 'records', 'report', 'skipped'}.

    `conf_dir`: the Hydra config tree the sweep's model keys come from (default: this checkout's conf/).
    """
    conf_dir = DEFAULT_CONF if conf_dir is None else conf_dir
    plans = plan_sweep(cfg, conf_dir)  # every model key and entry is checked before anything starts
    sweep = str(cfg["sweep"]["name"])
    ensure_ray(plans[0].run.ray)
    actor = _results_actor(cfg, sweep)
    for plan in plans:  # what a crashed earlier run of this sweep left reserved
        release_placement_groups(engine_pool_name(sweep, plan.key) + "/")
    finished = ray.get(actor.finished.remote())
    finished.update(ray.get(actor.finished_analyses.remote()))
    # the results actor's finished() and finished_analyses() name runs as _job_name does
    skipped = [_job_name(p) for p in plans if finished.get(_job_name(p)) == p.fingerprint]
    todo = [p for p in plans if _job_name(p) not in skipped]
    pending, last = {}, {}
    predicted = _predictions(cfg, todo, conf_dir)
    for plan in todo:  # a model's experiments in sweep.experiments order, one after the other
        ref = _run_model.remote(plan, sweep, [last[plan.key]] if plan.key in last else None, str(conf_dir),
                                predicted.get(_job_name(plan)))
        last[plan.key] = ref
        pending[ref] = plan
    bar = progress_bar(bool(cfg.get("progress", True)), total=len(plans), desc=f"sweep {sweep}", unit="run",
                       initial=len(skipped))
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            plan = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except ray.exceptions.RayError as error:  # the task's worker died (OOM killer, segfault, ...)
                # its pool could not release what it reserved: placement groups outlive the task that made them
                release_placement_groups(engine_pool_name(sweep, plan.key) + "/")
                record = _failed_record(plan, sweep,
                                        f"{type(error).__name__}: {str(error).strip().splitlines()[0][:500]}", None)
            ray.get((actor.record if plan.experiment == "compute_utilities" else actor.record_analysis).remote(record))
            if on_record is not None:
                on_record(record)
            bar.update(1)
    finally:
        bar.close()
    report = ray.get(actor.write_report.remote())
    records = ray.get(actor.all_records.remote())
    analyses = ray.get(actor.analysis_records.remote())
    ray.kill(actor, no_restart=True)  # everything it held is on disk
    return {"sweep": sweep, "records": records, "analysis_records": analyses, "report": report, "skipped": skipped}


def _predictions(cfg: dict, plans: list[ModelPlan], conf_dir) -> dict[str, dict]:
    """jobs.plan's prediction for each run (tokens, device-hours, wall time), recorded beside what it measures so
    that the report can set one against the other; a cost model that cannot price a run leaves it out."""
    from .plan import CostConfig, plan_model

    try:
        cost = CostConfig.from_section(cfg.get("cost"))
    except (ValueError, TypeError) as err:
        log.warning("no cost predictions for this sweep: %s", err)
        return {}
    out = {}
    for plan in plans:
        try:
            row = plan_model(plan, cost, conf_dir)
        except Exception as err:  # noqa: BLE001 - a prediction is a courtesy; the run goes ahead without one
            log.warning("no cost prediction for %s: %s", _job_name(plan), err)
            continue
        out[_job_name(plan)] = {"tokens_computed": row["tokens_computed"], "requests": row["requests"],
                                "device": row["device"], "device_hours": row["device_hours"],
                                "wall_s": None if row["wall_h"] is None else row["wall_h"] * 3600,
                                "dollars": row["dollars"]}
    return out


def _job_name(plan: ModelPlan) -> str:
    """How a sweep names one run: the model key (compute_utilities) or "<experiment>/<model>"."""
    return plan.key if plan.experiment == "compute_utilities" else f"{plan.experiment}/{plan.key}"

