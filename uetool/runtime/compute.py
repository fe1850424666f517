"""compute_utilities: holdout + active learning against an engine pool, with a durable store and checkpoints.

Everything the job does lives here (jobs/ only composes the config), so tests reach all of it. The config is typed
once (`RunConfig.from_dict`), before any engine starts; everything below reads the typed object.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import numpy as np

from ..core.active import ActiveLearningState, run_active_learning
from ..core.cost import paper_pairs, reference_tokens, token_totals
from ..core.decisiveness import decisiveness_metrics, format_verdict, verdict_flags, verdict_reasons
from ..core.edges import logprob_other_mass, off_label_majority_rate
from ..core.graph import HOLDOUT, TRAIN
from ..core.thurstonian import bootstrap_intervals
from ..core.transitivity import confidence_metrics, measure_transitivity, pair_probabilities
from ..io.checkpoint import read_checkpoint, write_checkpoint
from ..io.files import remove_temporary_files
from ..io.provenance import content_hash, provenance
from ..io.results import append_run_log, utilities_frame, write_results, write_triads
from ..io.store import ResponseStore
from .config import RunConfig, pool_resources, redacted_yaml
from .elicit import Elicitor

__all__ = ["compute_utilities", "open_pool", "run_provenance"]


def run_provenance(run: RunConfig, device: str | None = None) -> dict:
    """Provenance of this run: code and library versions, engine and device, and the outcome file's content hash."""
    source = Path(run.outcomes.source)
    data = source.read_bytes() if source.is_file() else "\x1f".join(run.outcomes.descriptions)
    return provenance(engine=run.engine.name, device=device,
                      data_files={f"outcomes:{run.outcomes_name}": content_hash(data)})


def _engine_device(run: RunConfig, resources) -> str:
    if run.engine.name in ("simulated", "simulated_text"):
        return "none (simulated agent)"
    if run.engine.name == "openai":
        return f"remote API ({run.model.api_base})"
    if resources.num_gpus > 0:
        gpus = resources.tensor_parallel_size if resources.tensor_parallel_size > 1 else resources.num_gpus
        return f"{gpus:g} GPU(s) per replica"
    return f"CPU ({resources.num_cpus:g} per replica)"


def compute_utilities(cfg: dict | RunConfig, *, pool=None, on_round=None, pool_name: str | None = None,
                      pool_namespace: str | None = None) -> dict:
    """Run the job for one model; returns {'out_dir', 'metrics', 'summary', 'stats', 'timings', 'replacements'}.

    Starts Ray if needed (unless a `pool` is given). `pool_name` names the engine replicas
    (`<pool_name>/<slot>.<generation>`).
    """
    started = time.perf_counter()
    run = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    run.check_environment()  # a sweep's plan leaves this to each model's own job
    if run.generation_settings.mode == "generate":
        raise ValueError("`elicitation.mode=generate` is free generation (for analyses' free-form answers and judge "
                         "calls); compute_utilities elicits forced choices: use sample or logprob")
    run.layout.filesystem[0].create_dir(run.out_dir, recursive=True)
    store = ResponseStore(run.layout, run.model.key)
    # one job per store at a time (its checkpoint and result files with it): a second waits, then fails naming
    # the holder; a killed job's lock goes with its process
    with store.hold(wait_s=run.store.lock_wait_s):
        # before any engine starts: no writer of this store is alive, so its temporary files are leftovers; a
        # damaged part or checkpoint is named now (StoreDamaged, CheckpointDamaged), not after Ray has started
        store.remove_temporary_files()
        remove_temporary_files(run.layout.filesystem[0], run.out_dir)
        len(store)
        return _compute_locked(run, store, started, pool=pool, on_round=on_round, pool_name=pool_name,
                               pool_namespace=pool_namespace)


def _compute_locked(run: RunConfig, store: ResponseStore, started: float, *, pool, on_round, pool_name,
                    pool_namespace) -> dict:
    fs, out_dir = run.layout.filesystem[0], run.out_dir
    fingerprint = run.fingerprint()
    checkpoint_path = run.layout.checkpoint(run.experiment, run.model.key, run.run_name)
    state = read_checkpoint(fs, checkpoint_path, fingerprint)

    def checkpoint(s: ActiveLearningState) -> None:
        write_checkpoint(fs, checkpoint_path, fingerprint, s)
        if on_round is not None:
            on_round(s)

    start_seconds = 0.0
    own_pool = pool is None
    resources = None
    learning_started = time.perf_counter()
    try:
        if own_pool:
            waited_from = time.perf_counter()
            # created inside the guarded block: a pool whose engines fail to load releases what it placed
            pool = open_pool(run, name=pool_name, namespace=pool_namespace)
            pool.pids()  # replicas placed (in a sweep: queued until Ray has room) and their engines loaded
            start_seconds = time.perf_counter() - waited_from
            learning_started = time.perf_counter()
        resources = getattr(pool, "resources", None)
        engine_arguments = getattr(pool, "engine_arguments", None) or run.engine_arguments()
        elicitor = Elicitor(run.outcomes, run.template, run.generation_settings, pool=pool, store=store,
                            model_id=run.model.model_id, revision=run.model.revision,
                            engine_settings=run.answer_settings(engine_arguments),
                            system_message=run.elicitation.system_message, parser_style=run.elicitation.parser,
                            thinking_end=run.model.thinking_end, max_attempts=run.elicitation.max_attempts,
                            max_failure_rate=run.elicitation.max_failure_rate)
        result = run_active_learning(len(run.outcomes), elicitor, run.active_learning, state=state,
                                     on_round=checkpoint, progress=run.progress, fit_fn=_fit_function(run))
        learning_seconds = time.perf_counter() - learning_started
        # asked through the same elicitor: stored triad edges are served from the store (a resumed run asks none
        # twice), new ones are stored before they are used
        triads = measure_transitivity(len(run.outcomes), elicitor, n_triads=run.transitivity.n_triads,
                                      seed=run.seed, policy=run.active_learning.unparseable_policy)
        asked_pairs = np.concatenate([np.stack([result.graph.a, result.graph.b], axis=1), triads.pairs])
        tokens = token_metrics(elicitor.stored_tokens(asked_pairs), len(run.outcomes))
    finally:
        replacements = getattr(pool, "replacements", 0)
        try:  # what the engines counted inside their replicas (retries), before the pool goes
            engine_counters = pool.engine_counters() if hasattr(pool, "engine_counters") else {}
        except Exception:  # noqa: BLE001 - a dead replica must not hide the job's own error
            engine_counters = {}
        if own_pool and pool is not None:
            pool.shutdown()
    bootstrap_started = time.perf_counter()
    ci_low = ci_high = None
    n_boot = run.fit.bootstrap
    if n_boot > 0:
        train = result.graph.select(TRAIN)
        active = run.active_learning
        p, w = train.probabilities(active.unparseable_policy, np.random.default_rng([active.seed, 11]))
        if run.fit.bootstrap_tasks > 1:
            from ..fit.bootstrap import bootstrap_intervals_ray

            ci_low, ci_high = bootstrap_intervals_ray(result.fit, train.a, train.b, p, w, n_boot=n_boot,
                                                      seed=active.seed, num_tasks=run.fit.bootstrap_tasks)
        else:
            ci_low, ci_high = bootstrap_intervals(result.fit, train.a, train.b, p, w, n_boot=n_boot, seed=active.seed)
    bootstrap_seconds = time.perf_counter() - bootstrap_started
    utilities = utilities_frame(run.outcomes, result.fit, ci_low, ci_high)
    metrics = dict(result.metrics)
    metrics.update(triads.metrics)
    metrics.update(_confidence(result, triads, run))
    stats = elicitor.stats
    metrics.update(model=run.model.key, outcomes=run.outcomes_name, engine=run.engine.name,
                   elicitation_mode=run.generation_settings.mode, mode=run.generation_settings.mode,
                   k=run.generation_settings.k, template=run.template.name, parser=run.elicitation.parser,
                   failed_requests=stats.failed_requests, reused_requests=stats.reused, asked_requests=stats.asked,
                   given_up_requests=stats.given_up, failure_examples=list(stats.errors),
                   engine_retries=int(engine_counters.get("retries", 0)),
                   # failures are no model behaviour: apart from unparseable_rate, which counts replies only
                   failed_request_rate=stats.failed_requests / stats.requests if stats.requests else float("nan"))
    metrics.update(tokens)
    asked_counts = np.concatenate([result.graph.counts, triads.counts])
    mode = run.generation_settings.mode
    metrics.update(decisiveness_metrics(asked_counts, mode=mode))
    reasons = verdict_reasons(metrics, mode=mode)
    metrics["verdict"], metrics["verdict_flags"] = format_verdict(reasons), verdict_flags(reasons)
    if mode == "logprob":
        # from the stored answers, not this invocation's: a re-run that asks nothing reports the same
        metrics["logprob_other_mass"] = logprob_other_mass(asked_counts)
        metrics["off_label_majority_rate"] = off_label_majority_rate(asked_counts)
    prov = run_provenance(run, _engine_device(run, resources) if resources is not None else None)
    write_results(out_dir, utilities, result.graph, metrics, redacted_yaml(run.raw),
                  run.active_learning.unparseable_policy, provenance=prov, fs=fs, mode=run.generation_settings.mode)
    from ..reporting.run_summary import write_summary, write_utility_plot

    write_triads(fs, out_dir, triads.frame())
    write_utility_plot(fs, out_dir, utilities, title=f"{run.model.key} on {run.outcomes_name}",
                       verdict=metrics.get("verdict"))
    summary = write_summary(fs, out_dir, utilities, metrics)
    total = time.perf_counter() - started
    append_run_log(fs, out_dir, run_log_entry(run, metrics, total))
    # fit = active-learning time not spent eliciting (fits, pair selection) + the bootstrap; the rest of the
    # wall time (config, store, writing results, engine start-up) is overhead
    fit = max(0.0, learning_seconds - stats.elicit_seconds) + bootstrap_seconds
    # engine_start: queueing for resources + loading the engine; engine: answering requests
    timings = {"engine_start": start_seconds, "engine": stats.engine_seconds, "fit": fit, "total": total,
               "overhead": max(0.0, total - start_seconds - stats.engine_seconds - fit)}
    return {"out_dir": out_dir, "metrics": metrics, "summary": summary, "stats": stats, "timings": timings,
            "replacements": replacements, "provenance": prov}


def token_metrics(tokens: np.ndarray, n_outcomes: int) -> dict:
    """The run's token totals (its stored answers, asked now or before) and what the paper's method computes for
    its own budget of int(2 n log2 n) pairs (both orders, K=10 samples of up to 10 tokens, no cache reuse) with the
    same prompts: `reference_method_tokens` and the ratio `tokens_computed_share_of_reference`."""
    return token_metrics_of_sets([(tokens, paper_pairs(n_outcomes))])


def token_metrics_of_sets(parts: list[tuple[np.ndarray, int]]) -> dict:
    """`token_metrics` over several option sets: (their stored answers' tokens, the pairs the paper's method would
    ask for that set); each set's reference is priced at its own mean prompt."""
    totals = token_totals(np.concatenate([np.asarray(t, float).reshape(-1, 3) for t, _ in parts]) if parts
                          else np.empty((0, 3)))
    out = totals.metrics()
    pairs = sum(int(n) for _, n in parts)
    reference = 0.0
    reference_prompt = 0.0
    for tokens, n in parts:
        own = token_totals(tokens)
        if own.counted:
            ref = reference_tokens(n, own.mean_prompt)
            reference += ref["reference_tokens"]
            reference_prompt += ref["reference_prompt_tokens"]
    counted = totals.counted > 0
    out["reference_method_pairs"] = pairs
    out["reference_method_tokens"] = int(round(reference)) if counted else None
    out["reference_method_prompt_tokens"] = int(round(reference_prompt)) if counted else None
    out["tokens_computed_share_of_reference"] = totals.computed / reference if counted and reference else None
    return out


def run_log_entry(run: RunConfig, metrics: dict, wall_s: float) -> dict:
    """One line of runs.jsonl: when this invocation finished, its wall time and its request counters."""
    from datetime import datetime

    from ..io.results import INVOCATION_KEYS

    return {"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "wall_s": round(wall_s, 3),
            "model": run.model.key, "experiment": run.experiment, "fingerprint": run.fingerprint(),
            **{k: metrics[k] for k in INVOCATION_KEYS if k in metrics}}


def _confidence(result, triads, run: RunConfig) -> dict:
    """average_confidence over every edge asked (training, holdout, triads) and over the uniform pairs alone."""
    policy, seed = run.active_learning.unparseable_policy, run.seed
    train, hold = result.graph.select(TRAIN), result.graph.select(HOLDOUT)
    return confidence_metrics(pair_probabilities(train.counts, policy, seed), (np.stack([hold.a, hold.b], 1),
                              pair_probabilities(hold.counts, policy, seed)), triads, len(run.outcomes),
                              np.stack([train.a, train.b], 1), seed=seed)


def open_pool(run: RunConfig, *, name: str | None = None, namespace: str | None = None):
    """Start (or attach to) Ray and place the run's engine pool; use it as a context manager."""
    from .pool import EnginePool
    from .ray_session import ensure_ray

    ensure_ray(run.ray)
    resources = _fitted_resources(run)
    return EnginePool.for_resources(run.engine_arguments(resources), resources, progress=run.progress, name=name,
                                    namespace=namespace, start_timeout_s=run.pool.start_timeout_s,
                                    autoscale=run.pool.autoscale)


def _fitted_resources(run: RunConfig):
    """The pool's resources on the cluster this job runs on: GPUs only where the cluster has them, and no more CPUs
    per replica than the cluster has (a replica asking for more would wait forever)."""
    import ray

    cluster = ray.cluster_resources()
    # an autoscaling cluster may have no GPU node up yet: GPUs will come when a replica asks for them
    resources = pool_resources(run, cluster_has_gpus=run.pool.autoscale or cluster.get("GPU", 0) > 0)
    cluster_cpus = float(cluster.get("CPU", resources.num_cpus))
    if resources.num_cpus > cluster_cpus and not run.pool.autoscale:
        print(f"pool.num_cpus={resources.num_cpus:g} exceeds the cluster's {cluster_cpus:g} CPUs; "
              f"using {cluster_cpus:g}")
        resources = replace(resources, num_cpus=cluster_cpus)
    return resources


def _fit_function(run: RunConfig):
    """The fit for `fit.backend` (same signature as the core's `fit_thurstonian`); None means the local core fit."""
    if run.fit.backend == "local":
        return None
    from ..fit.ray_train import fit_function_for

    return fit_function_for(run.fit.ray_train, share_node=True)
