"""Plan before you pay: what a sweep will ask, how many tokens that is, and what it costs (no engine starts).

For every model and experiment of a sweep (`sweep_plan.plan_sweep`), the planner lists the request sets the job
will ask (`request_sets`): compute_utilities asks its active-learning budget int(2 n log2 n) + its held-out pairs
+ the triads' pairs (those a random pair set would not already hold); an analysis asks each option set's budget (or
its fixed pairs) and its free-text prompts; a robustness suite asks its base, variants and seeds. It renders a sample
of each set's real prompts (template, outcome set, system message) and counts their tokens with the model's own
tokenizer where one is available offline (`tokenizer="exact"`), else estimates them from characters
(`cost.estimate_tokens_per_char`, `tokenizer="chars"`), with the prefix the engines' caches reuse. Tokens become
seconds through `uetool.core.cost` and conf/cost/default.yaml (peak x utilisation + a cost per token, per engine and
accelerator), seconds become GPU-hours and wall time over the model's tensor-parallel size and replicas; API models
get dollars from the dated price table. The same is computed for the paper's method on the paper's budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np
import pandas as pd

from ..core.cost import (
    ModelShape,
    Throughput,
    accelerator_seconds,
    paper_pairs,
    reference_tokens,
)
from ..core.transitivity import sample_triads, triad_pairs
from ..engines.base import ElicitationRequest, GenerationSettings
from .config import RunConfig
from .control_config import typed_section
from .sweep_plan import DEFAULT_CONF, ModelPlan, plan_sweep

__all__ = ["CostConfig", "RequestSet", "request_sets", "plan_model", "plan_table", "PLAN_COLUMNS",
           "offline_tokenizer"]

READ_ONLY_KEYS = {"parser", "unparseable_policy"}  # elicitation keys that change how answers are read, not asked
SAMPLED_PAIRS = 48  # prompts rendered per request set to measure its token lengths
CHAT_OVERHEAD_TOKENS = 12  # turn markers a chat template adds, where no tokenizer counts them

PLAN_COLUMNS = ("model", "experiment", "engine", "device", "tensor_parallel_size", "replicas", "requests",
                "prompt_tokens", "tokens_prompt_computed", "tokens_generated", "tokens_computed", "device_hours",
                "wall_h", "dollars", "reference_requests", "reference_tokens", "reference_device_hours",
                "reference_dollars", "tokenizer")


@dataclass(frozen=True)
class CostConfig:
    """The `cost` section (conf/cost/default.yaml)."""

    accelerator: str = "H100"
    cluster_gpus: int = 64
    tensor_parallel_efficiency: float = 0.85
    estimate_tokens_per_char: float = 0.25
    reply_tokens: int = 3
    job_start_s: float = 4.5
    api_request_s: float = 1.0
    engine_start_s: dict = field(default_factory=dict)
    accelerators: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)
    api_prices: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.accelerator not in self.accelerators:
            raise ValueError(f"`cost.accelerator`: {self.accelerator!r} is not in `cost.accelerators` "
                             f"({sorted(self.accelerators)})")
        if not 0 < self.tensor_parallel_efficiency <= 1:
            raise ValueError("`cost.tensor_parallel_efficiency` must be in (0, 1]")
        if not 0 < self.estimate_tokens_per_char <= 1:
            raise ValueError("`cost.estimate_tokens_per_char` must be in (0, 1]")

    @classmethod
    def from_section(cls, values: dict | None) -> CostConfig:
        return typed_section(cls, "cost", values)

    def peak_flops(self, device: str) -> float:
        entry = self.accelerators.get(device) or {}
        if entry.get("peak_tflops") is None:
            if device != "cpu":
                raise ValueError(f"`cost.accelerators.{device}.peak_tflops` is not set")
            return _cpu_peak_flops()
        return float(entry["peak_tflops"]) * 1e12

    def rates(self, engine: str, device: str) -> Throughput:
        per_engine = self.throughput.get(engine) or self.throughput.get("simulated" if "simulated" in engine else "")
        if not per_engine:
            raise ValueError(f"`cost.throughput` has no entry for engine {engine!r}")
        entry = per_engine.get(device) or per_engine.get("default")
        if entry is None:
            raise ValueError(f"`cost.throughput.{engine}` has neither {device!r} nor a default")
        return Throughput(**entry)


@cache
def _cpu_peak_flops() -> float:
    """This machine's fp32 matmul peak (the best of five 2048^2 products), measured once per process."""
    import time

    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best


@dataclass
class RequestSet:
    """Requests a job asks of one template and option set: `n_pairs` distinct pairs (both orders each) or
    `free_prompts` free-text prompts; `paper_pairs`: what the paper's method would ask for the same set."""

    name: str
    texts: tuple[str, ...]
    template: object
    settings: GenerationSettings
    system_message: str | None
    n_pairs: int = 0
    paper_pairs: int = 0
    free_prompts: tuple[str, ...] = ()


def _distinct_pairs(run: RunConfig, n: int) -> int:
    """compute_utilities: its training budget and holdout, plus the triads' pairs outside a random set that size."""
    active = run.active_learning
    fitted = active.budget(n) + active.holdout(n)
    total = n * (n - 1) // 2
    if run.transitivity.n_triads <= 0 or n < 3:
        return min(fitted, total)
    pairs, _ = triad_pairs(sample_triads(n, run.transitivity.n_triads, run.seed), n)
    outside = len(pairs) * (1 - fitted / total)  # the fitted pairs cover that share of all pairs
    return int(min(total, round(fitted + outside)))


def request_sets(run: RunConfig, conf_dir=DEFAULT_CONF) -> list[RequestSet]:
    """What the run's job asks, set by set (no engine starts; analyses plan their items from their data files)."""
    if run.robustness is not None:
        from .robustness import suite_runs

        suite, runs, analyses = suite_runs(dict(run.raw), conf_dir, check_environment=False)
        # a variant that only reads answers otherwise (parser, unparseable policy) asks nothing: its keys are the base's
        rereads = {v.name for v in suite.variants if v.seed is None and set(v.elicitation) <= READ_ONLY_KEYS}
        out = []
        for name, variant, _ in runs:
            if name not in rereads:
                out += [replace(s, name=f"{name}/{s.name}") for s in request_sets(variant, conf_dir)]
        for analysis, name, variant in analyses:
            out += [replace(s, name=f"{analysis}/{name}/{s.name}") for s in request_sets(variant, conf_dir)]
        return out
    settings, system = run.generation_settings, run.elicitation.system_message
    if run.analysis is None:
        n = len(run.outcomes)
        return [RequestSet("compute_utilities", tuple(run.outcomes.descriptions), run.template, settings, system,
                           _distinct_pairs(run, n), paper_pairs(n))]
    from ..analyses import get_analysis

    analysis = get_analysis(run.experiment)
    reference = getattr(run.analysis, "reference", None)
    try:
        plan = analysis.plan(run.analysis, run.outcomes, run.seed)
    except ValueError:
        if reference is None:
            raise
        # a reference run that does not exist yet (a robustness variant's base, planned before it runs): the sets
        # of a run without it, of which only the model's own is asked against a reference
        plan = analysis.plan(replace(run.analysis, reference=None), run.outcomes, run.seed)
        plan.option_sets = plan.option_sets[:1]
    out = []
    for options in plan.option_sets:
        template = (options.template or run.template).with_labels(run.template.labels)
        own = replace(settings, **(options.generation or {}))
        n = len(options.texts)
        if options.pairs is not None:
            pairs = paper = len(options.pairs)
        else:
            active = run.active_learning
            pairs, paper = active.budget(n) + active.holdout(n), paper_pairs(n)
        out.append(RequestSet(options.name, tuple(options.texts), template, own, system, pairs, paper))
    if plan.free_prompts:
        free = GenerationSettings(mode="generate", k=1, temperature=0.0, max_tokens=run.analysis.max_tokens,
                                  seed=run.seed)
        out.append(RequestSet("free_text", (), None, free, system, free_prompts=tuple(p.text for p in
                                                                                      plan.free_prompts)))
    return out


@cache
def offline_tokenizer(path: str, revision: str | None):
    """The model's tokenizer where it is available offline (a builtin model, a local folder, the HF cache)."""
    try:
        from transformers import AutoTokenizer

        from ..engines.weights import resolve_model_path

        local = resolve_model_path(path) if path.startswith("builtin:") else path
        return AutoTokenizer.from_pretrained(local, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not available offline: characters stand in, and the table says so
        return None


def _prompt_lengths(run: RunConfig, rs: RequestSet, cost: CostConfig) -> tuple[np.ndarray, int, str]:
    """Token lengths of a sample of the set's prompts, the prefix they all share, and how they were counted."""
    rng = np.random.default_rng([run.seed, 211])
    if rs.free_prompts:
        prompts = list(rs.free_prompts[:SAMPLED_PAIRS])
    else:
        n = len(rs.texts)
        picks = [rng.choice(n, 2, replace=False) for _ in range(min(SAMPLED_PAIRS, max(rs.n_pairs, 1)))]
        render = rs.template.render
        prompts = [render(rs.texts[a], rs.texts[b]) for a, b in picks] + [render(rs.texts[b], rs.texts[a])
                                                                            for a, b in picks]
    model = run.model
    simulated = run.engine.name in ("simulated", "simulated_text")
    tokenizer = None if simulated else offline_tokenizer(model.path, model.revision)
    if tokenizer is not None and (getattr(tokenizer, "chat_template", None) or model.kind == "base"):
        from ..engines.chat_format import prompt_token_ids

        labels = tuple(getattr(rs.template, "labels", ("A", "B")))
        ids = [prompt_token_ids(tokenizer, ElicitationRequest("plan", p, labels, rs.system_message), model.kind,
                                model.accepts_system_message) for p in prompts]
        return np.array([len(i) for i in ids]), _common_prefix(ids), "exact"
    system = rs.system_message or ""
    texts = [system + "\n" + p for p in prompts]
    per_char = cost.estimate_tokens_per_char
    lengths = np.array([len(t) * per_char + CHAT_OVERHEAD_TOKENS for t in texts])
    return lengths, int(_common_prefix(texts) * per_char), "chars"


def _common_prefix(rows: list) -> int:
    if len(rows) < 2:
        return 0
    first, common = rows[0], min(len(r) for r in rows) - 1
    for row in rows[1:]:
        common = next((j for j in range(common) if row[j] != first[j]), common)
    return max(common, 0)


def _set_tokens(run: RunConfig, rs: RequestSet, cost: CostConfig, engine: str) -> dict:
    lengths, prefix, how = _prompt_lengths(run, rs, cost)
    mean_prompt = float(lengths.mean()) if len(lengths) else 0.0
    s = rs.settings
    requests = len(rs.free_prompts) if rs.free_prompts else 2 * rs.n_pairs
    cached = prefix if engine in ("hf", "vllm") and (engine != "hf" or run.engine.options.get("prefix_cache", True)) \
        else 0
    if engine == "openai":
        cached = 0  # providers cache prompts of 1,024 tokens and more; these are far shorter
    samples = 1 if s.mode == "logprob" or s.temperature == 0 else s.k
    reasoning = bool(getattr(rs.template, "reasoning", False)) or s.mode == "generate"
    per_sample = s.max_tokens if reasoning else min(s.max_tokens, cost.reply_tokens)
    generated = 0 if s.mode == "logprob" else requests * samples * per_sample
    if engine == "openai":  # an API bills every sample's prompt unless it serves n samples from one request
        prompt_computed = requests * mean_prompt * (1 if run.engine.options.get("supports_n", True) else samples)
    else:
        prompt_computed = requests * (mean_prompt - cached)
    reference = reference_tokens(rs.paper_pairs, mean_prompt) if not rs.free_prompts else {
        "reference_prompt_tokens": requests * mean_prompt, "reference_generated_tokens": generated,
        "reference_tokens": requests * mean_prompt + generated, "reference_pairs": 0}
    return {"requests": requests, "prompt_tokens": requests * mean_prompt, "tokens_prompt_computed": prompt_computed,
            "tokens_generated": generated, "mean_prompt": mean_prompt, "decode_context": mean_prompt + per_sample / 2,
            "prompt_context": cached + (mean_prompt - cached) / 2, "reference": reference,
            "reference_requests": 2 * rs.paper_pairs * 10 if not rs.free_prompts else requests, "tokenizer": how}


def plan_model(plan: ModelPlan, cost: CostConfig, conf_dir=DEFAULT_CONF) -> dict:
    """One row of the plan: a model and experiment's requests, tokens, device-hours, wall time and dollars, and the
    same for the paper's method."""
    run, resources = plan.run, plan.resources
    engine = resources.engine
    sets = [_set_tokens(run, rs, cost, engine) for rs in request_sets(run, conf_dir)]
    if "simulated" in engine:  # an agent answers from its truth: no tokens, for it or for a reference to compare
        for s in sets:
            s.update(prompt_tokens=0, tokens_prompt_computed=0, tokens_generated=0, tokenizer="none",
                     reference={"reference_prompt_tokens": 0, "reference_generated_tokens": 0})
    total = {k: float(sum(s[k] for s in sets)) for k in ("requests", "prompt_tokens", "tokens_prompt_computed",
                                                         "tokens_generated", "reference_requests")}
    ref_prompt = sum(s["reference"]["reference_prompt_tokens"] for s in sets)
    ref_generated = sum(s["reference"]["reference_generated_tokens"] for s in sets)
    row = {"model": plan.key, "experiment": plan.experiment, "engine": engine,
           "tensor_parallel_size": resources.tensor_parallel_size, "replicas": resources.replicas,
           **{k: int(round(v)) for k, v in total.items()},
           "tokens_computed": int(round(total["tokens_prompt_computed"] + total["tokens_generated"])),
           "reference_tokens": int(round(ref_prompt + ref_generated)),
           "tokenizer": "chars" if any(s["tokenizer"] == "chars" for s in sets) else sets[0]["tokenizer"] if sets
           else "none",
           "device_hours": None, "wall_h": None, "dollars": None, "reference_device_hours": None,
           "reference_dollars": None}
    start = cost.job_start_s + float(cost.engine_start_s.get(engine, 0.0))
    if engine == "openai":
        row["device"] = "api"
        price = cost.api_prices.get(run.model.key)
        if price is not None:
            row["dollars"] = (total["tokens_prompt_computed"] * price["input"]
                              + total["tokens_generated"] * price["output"]) / 1e6
            row["reference_dollars"] = (ref_prompt * price["input"] + ref_generated * price["output"]) / 1e6
        # concurrency-bound: requests in flight per replica, each taking about api_request_s (rate limits aside)
        in_flight = int(run.engine.options.get("max_concurrency") or 16) * max(1, resources.replicas)
        calls = total["requests"] * (1 if run.engine.options.get("supports_n", True) else run.generation_settings.k)
        row["wall_h"] = (start + calls * cost.api_request_s / in_flight) / 3600
        return row
    device = "cpu" if resources.num_gpus <= 0 and "simulated" not in engine else cost.accelerator
    row["device"] = "cpu" if "simulated" in engine else device
    rates = cost.rates(engine, "cpu" if "simulated" in engine else device)
    params = float(run.model.params_b or 0.0) * 1e9
    if "simulated" in engine or params <= 0:
        seconds = ref_seconds = 0.0
    else:
        shape = ModelShape.from_params(params)
        peak = cost.peak_flops(device)
        seconds = sum(accelerator_seconds(shape, peak, rates, prompt_tokens=s["tokens_prompt_computed"],
                                          prompt_context=s["prompt_context"], generated_tokens=s["tokens_generated"],
                                          decode_context=s["decode_context"])["total_s"] for s in sets)
        ref_seconds = sum(accelerator_seconds(
            shape, peak, rates, prompt_tokens=s["reference"]["reference_prompt_tokens"],
            prompt_context=s["mean_prompt"] / 2, generated_tokens=s["reference"]["reference_generated_tokens"],
            decode_context=s["mean_prompt"] + 5)["total_s"] for s in sets)
    tp = max(1, resources.tensor_parallel_size)
    gpus = tp * max(1, resources.replicas) if device != "cpu" else 1
    efficiency = cost.tensor_parallel_efficiency if tp > 1 else 1.0
    row["device_hours"] = seconds / efficiency / 3600
    row["reference_device_hours"] = ref_seconds / efficiency / 3600
    row["wall_h"] = (start + seconds / efficiency / gpus) / 3600
    return row


def plan_table(cfg: dict, conf_dir=DEFAULT_CONF) -> tuple[pd.DataFrame, dict]:
    """The plan of every model and experiment of `cfg["sweep"]`, and its totals (GPU-hours, wall time on the
    configured cluster, dollars, and the paper's method's)."""
    cost = CostConfig.from_section(cfg.get("cost"))
    rows = [plan_model(p, cost, conf_dir) for p in plan_sweep(cfg, conf_dir)]
    table = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    gpu = table[~table["device"].isin(["cpu", "api"])]
    gpu_hours = float(gpu["device_hours"].sum())
    longest = float(table["wall_h"].max()) if len(table) else 0.0
    totals = {"models": int(table["model"].nunique()), "runs": int(len(table)),
              "requests": int(table["requests"].sum()), "tokens_computed": int(table["tokens_computed"].sum()),
              "reference_tokens": int(table["reference_tokens"].sum()), "gpu_hours": gpu_hours,
              "reference_gpu_hours": float(gpu["reference_device_hours"].sum()),
              "cpu_hours": float(table.loc[table["device"] == "cpu", "device_hours"].sum()),
              "dollars": float(table["dollars"].fillna(0).sum()),
              "reference_dollars": float(table["reference_dollars"].fillna(0).sum()),
              # models share the cluster: its GPUs run the total, and no run is shorter than alone
              "wall_h": max(gpu_hours / max(cost.cluster_gpus, 1), longest),
              "accelerator": cost.accelerator, "cluster_gpus": cost.cluster_gpus}
    totals["tokens_share_of_reference"] = (totals["tokens_computed"] / totals["reference_tokens"]
                                           if totals["reference_tokens"] else None)
    return table, totals
