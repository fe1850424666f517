"""Run one analysis (experiment=expected_utility|expected_utility_implicit|instrumentality|maximization) for one model.

The analysis (`uetool.analyses`) plans option sets and free prompts; here each option set is fitted by active
learning through the engine pool (responses stored before use, a checkpoint per set so a killed run resumes), free
prompts are asked at temperature 0, unmatched answers go to a judge (the model itself unless
`maximization.judge_model` names another), and the analysis's metrics and per-item table are written with the
base files into `<results_root>/<experiment>/<model>/`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from ..analyses import get_analysis
from ..analyses.base import AnalysisPlan
from ..core.active import run_active_learning
from ..core.cost import paper_pairs
from ..core.edges import COUNT_COLUMNS
from ..core.graph import TRAIN
from ..core.maximization import JUDGE_SYSTEM_MESSAGE
from ..core.thurstonian import bootstrap_chunks, bootstrap_samples
from ..engines.base import GenerationSettings
from ..io.analysis_results import write_analysis_results
from ..io.checkpoint import read_checkpoint, write_checkpoint
from ..io.files import remove_temporary_files, write_atomic
from ..io.layout import check_name
from ..io.results import append_run_log
from ..io.store import ResponseStore
from .compute import (
    _engine_device,
    _fit_function,
    open_pool,
    run_log_entry,
    run_provenance,
    token_metrics_of_sets,
)
from .config import RunConfig, redacted_yaml
from .elicit import Elicitor
from .free_text import FreeTextAsker
from .sweep_plan import DEFAULT_CONF, load_model_entry

__all__ = ["run_analysis", "analysis_plan", "simulated_run"]


def analysis_plan(run: RunConfig) -> AnalysisPlan:
    analysis = get_analysis(run.experiment)
    return analysis.plan(run.analysis, run.outcomes, run.seed)


def simulated_run(run: RunConfig, plan: AnalysisPlan) -> RunConfig:
    """The run whose simulated engine answers from the analysis's ground truth (`simulated_truth`)."""
    if run.engine.name != "simulated":
        if run.engine.name == "simulated_text":
            raise ValueError("analyses run simulated models on engine=simulated (their truth is per option); "
                             "simulated_text measures wording effects on the base outcomes")
        return run
    simulated = dict(run.model.simulated or {})
    if simulated.get("agent", run.engine.options.get("agent", "thurstonian")) != "thurstonian":
        raise ValueError(f"model '{run.model.key}': analyses need a Thurstonian simulated agent (its truth is "
                         f"derived per analysis), got agent={simulated.get('agent')!r}")
    reasoning = [s.name for s in plan.option_sets if s.template is not None and s.template.reasoning]
    if reasoning:  # its replies are bare labels: a reasoning parser would read every one as unparseable
        raise ValueError(f"model '{run.model.key}': a simulated agent replies with bare labels and cannot answer the "
                         f"reasoning template of option set {reasoning[0]!r} (e.g. political_values.entity_reasoning"
                         "=false for simulated models)")
    scale = float(simulated.get("scale", run.engine.options.get("scale", 1.0)))
    analysis = get_analysis(run.experiment)
    truth = analysis.simulated_truth(plan, run.analysis, run.seed, scale)
    kwargs = {**run.engine.kwargs, "world": f"{run.experiment}:{run.analysis.simulated_agent}",
              "n_outcomes": int(plan.n_options), "truth_mean": [float(x) for x in truth.mean],
              "truth_variance": [float(x) for x in truth.variance], "free_replies": list(truth.free_replies),
              "judge_replies": list(truth.judge_replies)}
    return replace(run, engine=replace(run.engine, kwargs=kwargs))


def run_analysis(cfg: dict | RunConfig, *, pool=None, pool_name: str | None = None,
                 pool_namespace: str | None = None, conf_dir=None) -> dict:
    """Run the analysis of the config's experiment for one model; returns {'out_dir', 'metrics', 'analysis',
    'summary', 'timings', 'replacements', 'provenance'}. `conf_dir`: where a judge model's entry is read."""
    started = time.perf_counter()
    run = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    if run.analysis is None:
        raise ValueError(f"experiment {run.experiment!r} is no analysis; compute_utilities runs it")
    run.check_environment()
    if run.generation_settings.mode == "generate":
        raise ValueError("`elicitation.mode=generate` cannot elicit forced choices: use sample or logprob")
    plan = analysis_plan(run)  # every item built (and every data file read) before any engine starts
    judge = getattr(run.analysis, "judge_model", None)
    if judge is not None and judge != run.model.key:
        _judge_run(run, judge, conf_dir, [])  # an unknown or unusable judge fails now, not after the fits
    fs = run.layout.filesystem[0]
    fs.create_dir(f"{run.out_dir}/checkpoints", recursive=True)
    store = ResponseStore(run.layout, run.model.key)
    with store.hold(wait_s=run.store.lock_wait_s):
        store.remove_temporary_files()
        remove_temporary_files(fs, run.out_dir)
        remove_temporary_files(fs, f"{run.out_dir}/checkpoints")
        len(store)
        return _run_locked(run, plan, store, started, pool=pool, pool_name=pool_name, pool_namespace=pool_namespace,
                           conf_dir=conf_dir)


def _set_fingerprint(fingerprint: str, name: str) -> str:
    return hashlib.sha256(f"{fingerprint}\x1f{name}".encode()).hexdigest()[:16]


def _run_locked(run: RunConfig, plan: AnalysisPlan, store: ResponseStore, started: float, *, pool, pool_name,
                pool_namespace, conf_dir) -> dict:
    analysis = get_analysis(run.experiment)
    fs, out_dir, fingerprint = run.layout.filesystem[0], run.out_dir, run.fingerprint()
    asked_run = simulated_run(run, plan)
    own_pool, start_seconds, resources = pool is None, 0.0, None
    fits, graphs, set_metrics, stats, token_parts = [], [], [], [], []
    choice_counts: list = []  # per option set: the answer counts of its fixed pairs (None: fitted)
    fit_draws: list = []  # per option set: edge-bootstrap replicates of its fitted means, when the analysis wants them
    replies: list = []
    judged: list = []
    free_stats = []
    try:
        if own_pool:
            waited = time.perf_counter()
            pool = open_pool(asked_run, name=pool_name, namespace=pool_namespace)
            pool.pids()
            start_seconds = time.perf_counter() - waited
        resources = getattr(pool, "resources", None)
        engine_arguments = getattr(pool, "engine_arguments", None) or asked_run.engine_arguments()
        engine_settings = asked_run.answer_settings(engine_arguments)
        done = 0  # option sets fitted so far; an analysis may add sets that depend on them (`extend`)
        while True:
            for options, offset in list(zip(plan.option_sets, plan.offsets(), strict=True))[done:]:
                asked = _ask_set(run, plan, options, offset, analysis, pool, store, engine_settings, fingerprint,
                                 extended=done > 0)
                for per_set, value in zip((fits, graphs, choice_counts, fit_draws, set_metrics, stats, token_parts),
                                          asked, strict=True):
                    per_set.append(value)
            done = len(plan.option_sets)
            extra = analysis.extend(plan, [_mean(f) for f in fits], run.seed)
            if not extra:
                break
            plan.option_sets.extend(extra)
            if run.engine.name == "simulated":  # the simulated agent's truth now covers the new sets too
                if not own_pool:
                    raise ValueError(f"{run.experiment} adds option sets after its first fits: a simulated model "
                                     "needs a pool of its own (pool=None) to answer them")
                pool.shutdown()
                asked_run = simulated_run(run, plan)
                pool = open_pool(asked_run, name=pool_name, namespace=pool_namespace)
                engine_arguments = getattr(pool, "engine_arguments", None) or asked_run.engine_arguments()
                engine_settings = asked_run.answer_settings(engine_arguments)
        if plan.free_prompts:
            settings = run.analysis
            free = GenerationSettings(mode="generate", k=1, temperature=0.0, max_tokens=settings.max_tokens,
                                      seed=run.seed)
            asker = FreeTextAsker(pool=pool, store=store, settings=free, model_id=run.model.model_id,
                                  revision=run.model.revision, engine_settings=engine_settings,
                                  system_message=JUDGE_SYSTEM_MESSAGE, purpose="free_answer",
                                  max_attempts=run.elicitation.max_attempts)
            replies = asker([p.text for p in plan.free_prompts], [p.item for p in plan.free_prompts])
            free_stats.append(asker.stats)
            judge_texts = analysis.judge_prompts(plan, [_mean(f) for f in fits], replies)
            judged = _judge(run, judge_texts, pool, store, engine_settings, conf_dir, free_stats,
                            asked_run.engine.kwargs.get("judge_replies"))
    finally:
        replacements = getattr(pool, "replacements", 0)
        try:
            engine_counters = pool.engine_counters() if hasattr(pool, "engine_counters") else {}
        except Exception:  # noqa: BLE001 - a dead replica must not hide the job's own error
            engine_counters = {}
        if own_pool and pool is not None:
            pool.shutdown()
    outcome = analysis.analyse(plan, [_mean(f) for f in fits], replies, judged, run.seed, counts=choice_counts,
                               draws=fit_draws)
    metrics = _run_metrics(run, set_metrics, stats, free_stats, engine_counters)
    metrics.update(token_metrics_of_sets(token_parts))  # the forced choices of every option set
    headline = {"experiment": run.experiment, "model": run.model.key, **outcome.metrics,
                "settings": asdict(run.analysis)}
    metrics.update({k: v for k, v in outcome.metrics.items() if not isinstance(v, list | dict)
                    or k.endswith("_ci")})
    utilities = _utilities_frame(plan, fits)
    edges = _edges_frame(plan, graphs, choice_counts, run.active_learning.unparseable_policy)
    prov = run_provenance(run, _engine_device(asked_run, resources) if resources is not None else None)
    write_analysis_results(fs, out_dir, utilities, edges, metrics, headline, outcome.items, redacted_yaml(run.raw),
                           prov, set_column=analysis.set_column)
    from ..reporting.analysis_plots import format_analysis_summary, write_analysis_plot

    write_analysis_plot(fs, out_dir, analysis.name, outcome.items, headline)
    summary = format_analysis_summary(analysis, metrics, headline)
    write_atomic(fs, f"{out_dir}/summary.txt", summary.encode())
    total = time.perf_counter() - started
    append_run_log(fs, out_dir, run_log_entry(run, metrics, total))
    engine = sum(s.engine_seconds for s in stats)
    timings = {"engine_start": start_seconds, "engine": engine, "total": total,
               "overhead": max(0.0, total - start_seconds - engine)}
    return {"out_dir": out_dir, "metrics": metrics, "analysis": headline, "summary": summary, "timings": timings,
            "replacements": replacements, "provenance": prov}


def _ask_set(run: RunConfig, plan: AnalysisPlan, options, offset: int, analysis, pool, store, engine_settings,
             fingerprint: str, *, extended: bool) -> tuple:
    """Ask (and fit, unless it is a set of fixed pairs) one option set: (fit, graph, answer counts, fit draws, set
    metrics, elicitation stats, (its stored answers' tokens, the pairs the paper's method would ask)), None where the
    kind of set has no such thing. A set added
    by `extend` depends on earlier fits: its checkpoint fingerprint covers its texts, so a resumed run whose
    earlier fits came out otherwise starts it afresh instead of restoring another set's state."""
    fs, out_dir = run.layout.filesystem[0], run.out_dir
    check_name(options.name, "option set name")
    template = (options.template or run.template).with_labels(run.template.labels)
    settings = replace(run.generation_settings, **(options.generation or {}))
    if settings.mode == "logprob" and template.reasoning:
        raise ValueError(f"option set {options.name!r} uses a reasoning template ({template.name}): it cannot be "
                         "asked in logprob mode")
    elicitor = Elicitor(options.outcome_set(), template, settings, pool=pool, store=store,
                        model_id=run.model.model_id, revision=run.model.revision,
                        engine_settings=engine_settings, system_message=run.elicitation.system_message,
                        parser_style=run.elicitation.parser, thinking_end=run.model.thinking_end,
                        max_attempts=run.elicitation.max_attempts,
                        max_failure_rate=run.elicitation.max_failure_rate, index_offset=offset)
    if options.pairs is not None:  # direct binary choices: asked as given (stored answers reused), not fitted
        pairs = np.asarray(options.pairs, np.int64).reshape(-1, 2)
        counts = elicitor(pairs)
        total = max(float(counts.sum()), 1.0)
        metrics = {"option_set": options.name, "n_outcomes": len(options.texts), "n_edges": len(counts),
                   "unparseable_rate": float(counts[:, 4].sum() / total),
                   "refusal_rate": float(counts[:, 5].sum() / total)}
        return None, None, counts, None, metrics, elicitor.stats, (elicitor.stored_tokens(pairs), len(pairs))
    path = f"{out_dir}/checkpoints/{options.name}.npz"
    name = options.name
    if extended:
        name += "\x1f" + hashlib.sha256("\x1e".join(options.texts).encode()).hexdigest()
    set_print = _set_fingerprint(fingerprint, name)
    state = read_checkpoint(fs, path, set_print)
    result = run_active_learning(len(options.texts), elicitor, run.active_learning, state=state,
                                 on_round=lambda s, p=path, f=set_print: write_checkpoint(fs, p, f, s),
                                 progress=run.progress and len(plan.option_sets) == 1,
                                 fit_fn=_fit_function(run))
    asked = np.stack([result.graph.a, result.graph.b], axis=1)
    return (result.fit, result.graph, None, _fit_draws(run, result, analysis.utility_draws(run.analysis)),
            {"option_set": options.name, **result.metrics}, elicitor.stats,
            (elicitor.stored_tokens(asked), paper_pairs(len(options.texts))))


def _judge(run: RunConfig, judge_texts: list, pool, store, engine_settings, conf_dir, free_stats,
           simulated_verdicts: list | None) -> list:
    """The judge's reply per free prompt (None where no judge was needed). The model judges itself unless
    `maximization.judge_model` names another model, which then gets its own pool and store (a simulated judge of
    a simulated model's answers names the answer that model meant: `simulated_verdicts`)."""
    todo = [i for i, text in enumerate(judge_texts) if text is not None]
    judged: list = [None] * len(judge_texts)
    if not todo:
        return judged
    settings = GenerationSettings(mode="generate", k=1, temperature=0.0,
                                  max_tokens=run.analysis.judge_max_tokens, seed=run.seed)
    judge_key = run.analysis.judge_model
    if judge_key is None or judge_key == run.model.key:
        asker = FreeTextAsker(pool=pool, store=store, settings=settings, model_id=run.model.model_id,
                              revision=run.model.revision, engine_settings=engine_settings,
                              system_message=JUDGE_SYSTEM_MESSAGE, purpose="judge",
                              max_attempts=run.elicitation.max_attempts)
        replies = asker([judge_texts[i] for i in todo], todo, role=1)
    else:
        judge_run = _judge_run(run, judge_key, conf_dir, simulated_verdicts)
        judge_store = ResponseStore(judge_run.layout, judge_run.model.key)
        with judge_store.hold(wait_s=run.store.lock_wait_s), open_pool(judge_run) as judge_pool:
            asker = FreeTextAsker(pool=judge_pool, store=judge_store, settings=settings,
                                  model_id=judge_run.model.model_id, revision=judge_run.model.revision,
                                  engine_settings=judge_run.answer_settings(judge_pool.engine_arguments),
                                  system_message=JUDGE_SYSTEM_MESSAGE, purpose="judge",
                                  max_attempts=run.elicitation.max_attempts)
            replies = asker([judge_texts[i] for i in todo], todo, role=1)
    free_stats.append(asker.stats)
    for i, reply in zip(todo, replies, strict=True):
        judged[i] = reply
    return judged


def _judge_run(run: RunConfig, key: str, conf_dir, simulated_verdicts: list | None) -> RunConfig:
    cfg = dict(run.raw)
    try:
        cfg["model"] = load_model_entry(DEFAULT_CONF if conf_dir is None else conf_dir, key)
    except ValueError as err:
        raise ValueError(f"`maximization.judge_model={key}`: {err}".replace("sweep names unknown", "unknown")) from None
    cfg["engine"] = {"name": cfg["model"].get("engine")}
    cfg["experiment"] = {"name": "compute_utilities"}
    cfg.pop(run.experiment, None)
    judge = RunConfig.from_dict(cfg, outcomes=run.outcomes)
    if judge.engine.name == "simulated":
        if simulated_verdicts is None:
            raise ValueError(f"maximization.judge_model={key} is a simulated model: it can judge the answers of a "
                             f"simulated model only, not those of {run.model.key}")
        kwargs = {**judge.engine.kwargs, "world": f"judge:{run.model.key}", "judge_replies": simulated_verdicts}
        judge = replace(judge, engine=replace(judge.engine, kwargs=kwargs))
    return judge


def _fit_draws(run: RunConfig, result, n_draws: int) -> np.ndarray | None:
    """`n_draws` replicates of a fit's standardised means from the Poisson edge bootstrap of its training edges
    (the fit's own sampling uncertainty), solved in stacked chunks; None when none are wanted."""
    if n_draws <= 0:
        return None
    train = result.graph.select(TRAIN)
    policy = run.active_learning.unparseable_policy
    p, w = train.probabilities(policy, np.random.default_rng([run.active_learning.seed, 11]))
    return np.concatenate([bootstrap_samples(result.fit, train.a, train.b, p, w, first=first, count=count,
                                             seed=run.seed)
                           for first, count in bootstrap_chunks(n_draws, len(train.a))])


def _mean(fit) -> np.ndarray | None:
    return None if fit is None else fit.mean


def _edges_frame(plan: AnalysisPlan, graphs, choice_counts, policy: str) -> pd.DataFrame:
    """Every asked pair with its counts: the fitted sets' preference graphs and the fixed pairs as asked."""
    frames = []
    for options, graph, counts in zip(plan.option_sets, graphs, choice_counts, strict=True):
        if graph is not None:
            frames.append(graph.to_frame(policy).assign(option_set=options.name))
        else:
            pairs = np.asarray(options.pairs, np.int64).reshape(-1, 2)
            frame = pd.DataFrame({"a": pairs[:, 0], "b": pairs[:, 1]})
            for i, name in enumerate(COUNT_COLUMNS):
                frame[name] = counts[:, i]
            frames.append(frame.assign(split="asked", option_set=options.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _utilities_frame(plan: AnalysisPlan, fits) -> pd.DataFrame:
    frames = []
    for options, fit in zip(plan.option_sets, fits, strict=True):
        if fit is None:  # fixed pairs: answer counts, no utilities
            continue
        frames.append(pd.DataFrame({"option_set": options.name, "id": np.arange(len(options.texts)),
                                    "description": list(options.texts), "category": list(options.categories),
                                    "mean": fit.mean, "variance": fit.variance}))
    if not frames:
        return pd.DataFrame({"option_set": pd.Series(dtype=str), "id": pd.Series(dtype=np.int64),
                             "description": pd.Series(dtype=str), "category": pd.Series(dtype=str),
                             "mean": pd.Series(dtype=float), "variance": pd.Series(dtype=float)})
    return pd.concat(frames, ignore_index=True)


def _run_metrics(run: RunConfig, set_metrics: list[dict], stats, free_stats, engine_counters: dict) -> dict:
    """Coherence of the fits (each option set's own, and their mean) and what was asked, reused and failed."""
    def mean_of(key: str) -> float:
        values = [m.get(key) for m in set_metrics if m.get(key) is not None]
        return float(np.mean(values)) if values else float("nan")

    requests = sum(s.requests for s in stats)
    failed = sum(s.failed_requests for s in stats)
    return {"model": run.model.key, "experiment": run.experiment, "outcomes": run.outcomes_name,
            "engine": run.engine.name, "mode": run.generation_settings.mode, "k": run.generation_settings.k,
            "n_option_sets": len(set_metrics), "n_options": int(sum(m.get("n_outcomes", 0) for m in set_metrics)),
            "n_edges": int(sum(m.get("n_edges", 0) for m in set_metrics)),
            "holdout_accuracy": mean_of("holdout_accuracy"), "holdout_log_loss": mean_of("holdout_log_loss"),
            "train_accuracy": mean_of("train_accuracy"), "unparseable_rate": mean_of("unparseable_rate"),
            "refusal_rate": mean_of("refusal_rate"),
            "asked_requests": sum(s.asked for s in stats) + sum(s.asked for s in free_stats),
            "reused_requests": sum(s.reused for s in stats) + sum(s.reused for s in free_stats),
            "failed_requests": failed + sum(s.failed for s in free_stats),
            "given_up_requests": sum(s.given_up for s in stats),
            "failed_request_rate": failed / requests if requests else float("nan"),
            "failure_examples": [e for s in stats for e in s.errors][:5] + [e for s in free_stats for e in s.errors],
            "engine_retries": int(engine_counters.get("retries", 0)), "seed": run.seed,
            "option_sets": set_metrics}
