"""compute_utilities: holdout + active learning against an engine pool, with a durable store and checkpoints.

Everything the job does lives here (jobs/ only composes the config), so tests reach all of it. The config is a
plain dict (the resolved Hydra config); everything is validated before any engine starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import yaml

from ..core.active import ActiveLearningConfig, ActiveLearningState, run_active_learning
from ..core.outcomes import load_outcomes
from ..core.prompts import get_template
from ..core.results import _write_bytes, resolve_filesystem, utilities_frame, write_results
from ..core.thurstonian import bootstrap_intervals
from ..engines import ENGINE_NAMES
from ..engines.base import GenerationSettings
from .elicit import Elicitor
from .store import ResponseStore
from .train_fit import fit_function_for, validate_fit_backend

__all__ = ["compute_utilities", "validate_config", "ValidatedRun", "engine_kwargs_for", "ensure_ray"]

_SECRET_HINTS = ("key", "token", "secret", "password")


@dataclass
class ValidatedRun:
    config: dict
    outcomes: object
    template: object
    settings: GenerationSettings
    active: ActiveLearningConfig
    engine: str
    out_dir: str


def validate_config(cfg: dict) -> ValidatedRun:
    """Fail fast, before any engine starts, with messages that say what is valid."""
    model, engine_cfg, elicit, fit = cfg["model"], cfg["engine"], cfg["elicitation"], cfg["fit"]
    engine = engine_cfg.get("name") or model.get("engine")
    if engine not in ENGINE_NAMES:
        raise ValueError(f"`engine.name` must be one of {ENGINE_NAMES}, got {engine!r}")
    outcomes = load_outcomes(cfg["outcomes"]["source"])
    template = get_template(elicit["template"], text=elicit.get("template_text"), labels=tuple(elicit["labels"]))
    settings = GenerationSettings(mode=elicit["mode"], k=int(elicit["k"]), temperature=float(elicit["temperature"]),
                                  max_tokens=int(elicit["max_tokens"]), seed=int(cfg["seed"]))
    if engine_cfg.get("prefix_cache", True) not in (True, False):
        raise ValueError(f"`engine.prefix_cache` must be true or false, got {engine_cfg.get('prefix_cache')!r}")
    if engine_cfg.get("local_channel") not in (None, True, False):
        raise ValueError(f"`engine.local_channel` must be true, false or null (null: on for the simulated engine "
                         f"only), got {engine_cfg.get('local_channel')!r}")
    if elicit["parser"] not in ("uetool", "paper"):
        raise ValueError(f"`elicitation.parser` must be 'uetool' or 'paper', got {elicit['parser']!r}")
    known = {f.name for f in fields(ActiveLearningConfig)}
    extra = {"bootstrap", "bootstrap_tasks", "backend", "ray_train"}  # fit keys that are not active-learning settings
    unknown = set(fit) - known - extra
    if unknown:
        raise ValueError(f"unknown `fit` keys {sorted(unknown)}; known: {sorted(known | extra)}")
    validate_fit_backend(fit)
    tasks = fit.get("bootstrap_tasks")
    if tasks is not None and int(tasks) < 1:
        raise ValueError(f"`fit.bootstrap_tasks` must be >= 1, got {fit.get('bootstrap_tasks')!r}")
    active = ActiveLearningConfig(**{k: v for k, v in fit.items() if k in known},
                                  unparseable_policy=elicit["unparseable_policy"], seed=int(cfg["seed"]))
    if engine == "openai" and model.get("api_key_env") and not os.environ.get(model["api_key_env"]):
        raise ValueError(f"model '{model['key']}' needs the environment variable {model['api_key_env']}; "
                         "export it (keys are read from the environment only)")
    path = str(model.get("path") or "")
    if engine in ("hf", "vllm") and (path.startswith(("/", "./", "~")) and not Path(path).expanduser().exists()):
        raise ValueError(f"model '{model['key']}': path {path} does not exist")
    out_dir = f"{cfg['results_root'].rstrip('/')}/{cfg['experiment']['name']}/{model['key']}"
    return ValidatedRun(cfg, outcomes, template, settings, active, engine, out_dir)


def engine_kwargs_for(run: ValidatedRun) -> dict:
    """Constructor arguments for the engine (plain values only: they travel to Ray actors)."""
    model, engine_cfg = run.config["model"], run.config["engine"]
    kwargs = {"path": model.get("path"), "revision": model.get("revision"), "kind": model.get("kind"),
              "accepts_system_message": model.get("accepts_system_message", True)}
    if run.engine == "hf":
        kwargs.update(dtype=model.get("dtype") or "float32", batch_size=engine_cfg.get("batch_size", 16),
                      num_threads=int(engine_cfg.get("num_cpus") or 1),
                      prefix_cache=bool(engine_cfg.get("prefix_cache", True)))
        if kwargs["dtype"] == "bfloat16":
            kwargs["dtype"] = "float32" if not _cuda() else "bfloat16"
    elif run.engine == "vllm":
        kwargs.update(dtype=model.get("dtype"), max_model_len=model.get("max_model_len"),
                      tensor_parallel_size=model.get("tensor_parallel_size", 1),
                      gpu_memory_utilization=engine_cfg.get("gpu_memory_utilization", 0.9),
                      enable_prefix_caching=engine_cfg.get("enable_prefix_caching", True))
    elif run.engine == "openai":
        kwargs = {"model": model.get("path"), "api_base": model.get("api_base"),
                  "api_key_env": model.get("api_key_env"),
                  "max_concurrency": engine_cfg.get("max_concurrency", 16),
                  "accepts_system_message": model.get("accepts_system_message", True)}
    else:
        # a simulated model entry (conf/model/sim-*.yaml) carries its own agent and scale
        agent = {"agent": engine_cfg.get("agent", "thurstonian"), "scale": engine_cfg.get("scale", 1.0),
                 **(model.get("simulated") or {})}
        kwargs = {**agent, "n_outcomes": len(run.outcomes), "seed": run.config["seed"]}
    kwargs.update(engine_cfg.get("kwargs") or {})
    return kwargs


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _redacted_yaml(cfg: dict) -> str:
    """The resolved config; values of secret-looking keys are never written (keys live in env vars only)."""
    def scrub(node):
        if isinstance(node, dict):
            return {k: ("<redacted>" if any(h in k.lower() for h in _SECRET_HINTS) and not k.endswith("_env")
                        and isinstance(v, str) else scrub(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return yaml.safe_dump(scrub(cfg), sort_keys=False)


def _run_fingerprint(run: ValidatedRun) -> str:
    """What must match for a checkpoint to be resumed: outcomes, prompts, settings, schedule, seed."""
    cfg = run.config
    payload = json.dumps({"outcomes": list(run.outcomes.descriptions), "model": cfg["model"],
                          "elicitation": cfg["elicitation"], "fit": cfg["fit"], "seed": cfg["seed"],
                          "engine": run.engine}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _read_checkpoint(fs, path: str, fingerprint: str) -> ActiveLearningState | None:
    from pyarrow.fs import FileType

    if fs.get_file_info(path).type != FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        blob = f.read()
    z = np.load(io.BytesIO(blob))
    if str(z["fingerprint"]) != fingerprint:
        return None  # a different config wrote it: start afresh (the store still serves matching responses)
    return ActiveLearningState.from_bytes(z["state"].tobytes())


def _write_checkpoint(fs, path: str, fingerprint: str, state: ActiveLearningState) -> None:
    buf = io.BytesIO()
    np.savez(buf, fingerprint=np.array(fingerprint), state=np.frombuffer(state.to_bytes(), np.uint8))
    _write_bytes(fs, path, buf.getvalue())


def compute_utilities(cfg: dict, *, pool=None, on_round=None, pool_name: str | None = None,
                      pool_namespace: str | None = None) -> dict:
    """Run the job for one model; returns {'out_dir', 'metrics', 'summary', 'stats', 'timings', 'replacements'}.

    Starts Ray if needed. `pool_name` names the engine replicas (`<pool_name>/<slot>.<generation>`).
    """
    started = time.perf_counter()
    run = validate_config(cfg)
    model = cfg["model"]
    fs, out_dir = resolve_filesystem(run.out_dir)
    fs.create_dir(out_dir, recursive=True)
    engine_kwargs = engine_kwargs_for(run)
    own_pool = pool is None
    start_seconds = 0.0
    if own_pool:
        pool = _make_pool(run, engine_kwargs, cfg, name=pool_name, namespace=pool_namespace)
        waited_from = time.perf_counter()
        pool.pids()  # replicas placed (in a sweep: queued until Ray has room) and their engines loaded
        start_seconds = time.perf_counter() - waited_from
    store = ResponseStore(cfg["results_root"], model["key"])
    # Only settings that change answers go into response keys (not batch sizes or replica counts).
    key_settings = {k: v for k, v in engine_kwargs.items()
                    if k not in ("batch_size", "max_concurrency", "n_outcomes", "prefix_cache")}
    elicitor = Elicitor(run.outcomes, run.template, run.settings, pool=pool, store=store,
                        model_id=str(model.get("name") or model["key"]), revision=model.get("revision"),
                        engine_settings={"engine": run.engine, **key_settings},
                        system_message=cfg["elicitation"].get("system_message"),
                        parser_style=cfg["elicitation"]["parser"])
    fingerprint = _run_fingerprint(run)
    checkpoint_path = f"{out_dir}/checkpoint.npz"
    state = _read_checkpoint(fs, checkpoint_path, fingerprint)

    def checkpoint(s: ActiveLearningState) -> None:
        _write_checkpoint(fs, checkpoint_path, fingerprint, s)
        if on_round is not None:
            on_round(s)

    learning_started = time.perf_counter()
    try:
        result = run_active_learning(len(run.outcomes), elicitor, run.active, state=state, on_round=checkpoint,
                                     progress=bool(cfg.get("progress", True)), fit_fn=fit_function_for(cfg["fit"]))
    finally:
        replacements = getattr(pool, "replacements", 0)
        if own_pool:
            pool.shutdown()
    learning_seconds = time.perf_counter() - learning_started
    bootstrap_started = time.perf_counter()
    ci_low = ci_high = None
    n_boot = int(cfg["fit"].get("bootstrap", 0) or 0)
    if n_boot > 0:
        from ..core.graph import TRAIN

        train = result.graph.select(TRAIN)
        p, w = train.probabilities(run.active.unparseable_policy, np.random.default_rng([run.active.seed, 11]))
        n_tasks = int(cfg["fit"].get("bootstrap_tasks") or 1)
        if n_tasks > 1:
            from .bootstrap import bootstrap_intervals_ray

            ci_low, ci_high = bootstrap_intervals_ray(result.fit, train.a, train.b, p, w, n_boot=n_boot,
                                                      seed=run.active.seed, num_tasks=n_tasks)
        else:
            ci_low, ci_high = bootstrap_intervals(result.fit, train.a, train.b, p, w, n_boot=n_boot,
                                                  seed=run.active.seed)
    bootstrap_seconds = time.perf_counter() - bootstrap_started
    utilities = utilities_frame(run.outcomes, result.fit, ci_low, ci_high)
    metrics = dict(result.metrics)
    metrics.update(model=model["key"], outcomes=cfg["outcomes"]["name"], engine=run.engine,
                   elicitation_mode=run.settings.mode, failed_requests=elicitor.stats.failed_requests,
                   reused_requests=elicitor.stats.reused, asked_requests=elicitor.stats.asked)
    if elicitor.stats.logprob_other_mass:
        metrics["logprob_other_mass"] = float(np.mean(elicitor.stats.logprob_other_mass))
    write_results(out_dir, utilities, result.graph, metrics, _redacted_yaml(cfg), run.active.unparseable_policy)
    from .report import write_summary, write_utility_plot

    write_utility_plot(fs, out_dir, utilities, title=f"{model['key']} on {cfg['outcomes']['name']}")
    summary = write_summary(fs, out_dir, utilities, metrics)
    stats = elicitor.stats
    total = time.perf_counter() - started
    # fit = active-learning time not spent eliciting (fits, pair selection) + the bootstrap; the rest of the
    # wall time (config, store, writing results, engine start-up) is overhead
    fit = max(0.0, learning_seconds - stats.elicit_seconds) + bootstrap_seconds
    # engine_start: queueing for resources + loading the engine; engine: answering requests
    timings = {"engine_start": start_seconds, "engine": stats.engine_seconds, "fit": fit, "total": total,
               "overhead": max(0.0, total - start_seconds - stats.engine_seconds - fit)}
    return {"out_dir": out_dir, "metrics": metrics, "summary": summary, "stats": stats, "timings": timings,
            "replacements": replacements}


def ensure_ray(cfg: dict) -> None:
    """Attach to `ray.address` (RAY_ADDRESS) when set, else start a local cluster; no-op inside Ray."""
    import ray

    if not ray.is_initialized():
        address = (cfg.get("ray") or {}).get("address")
        num_cpus = (cfg.get("ray") or {}).get("num_cpus")
        ray.init(address=address or None, num_cpus=None if address else num_cpus, log_to_driver=False,
                 include_dashboard=False if not address else None)


def _make_pool(run: ValidatedRun, engine_kwargs: dict, cfg: dict, *, name: str | None = None,
               namespace: str | None = None):
    import ray

    from .pool import EnginePool

    ensure_ray(cfg)
    model, engine_cfg = cfg["model"], cfg["engine"]
    tp = int(model.get("tensor_parallel_size") or 1) if run.engine == "vllm" else 0
    num_gpus = engine_cfg.get("num_gpus")
    if num_gpus is None:
        num_gpus = float(tp) if (run.engine == "vllm" and _ray_has_gpus()) else 0.0
    num_cpus = float(engine_cfg.get("num_cpus", 1))
    cluster_cpus = float(ray.cluster_resources().get("CPU", num_cpus))
    if num_cpus > cluster_cpus:
        # a replica asking for more CPUs than the cluster has would wait forever; use what exists
        print(f"engine.num_cpus={num_cpus:g} exceeds the cluster's {cluster_cpus:g} CPUs; using {cluster_cpus:g}")
        num_cpus = cluster_cpus
        if run.engine == "hf":
            engine_kwargs["num_threads"] = max(1, int(num_cpus))
    return EnginePool(run.engine, engine_kwargs, replicas=int(engine_cfg.get("replicas") or model.get("replicas") or 1),
                      num_cpus=num_cpus, num_gpus=float(num_gpus),
                      tensor_parallel_size=max(tp, 1), shard_size=int(engine_cfg.get("shard_size", 32)),
                      progress=bool(cfg.get("progress", True)), name=name, namespace=namespace,
                      local_channel=local_channel_for(run.engine, engine_cfg.get("local_channel")))


def local_channel_for(engine: str, setting: bool | None) -> bool:
    """`engine.local_channel`: null means on for the simulated engine only (it answers a shard in about a
    millisecond, less than a Ray call costs; a model engine takes hundreds and gains nothing)."""
    return engine == "simulated" if setting is None else bool(setting)


def _ray_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
