"""Engine throughput and logprob-vs-sampling agreement on the embedded default model (SmolLM2-135M-Instruct).

    python benchmarks/elicitation.py [--pairs 64] [--json] [--skip-hf-sample]

For each engine/mode: prompts/s and pairs/s (a pair = both orders) with the paper template; sample mode uses the
paper's K=10 per order, max 10 new tokens. Agreement: mean over pairs of |P_logprob(a) - P_sample(a)| with the
sampling standard error sqrt(p(1-p)/n_valid) averaged over pairs. hf logprob runs with its shared-prefix KV cache
(the default) and again without it, for the speedup and the largest probability difference between the two.
Achieved GFLOP/s (2 * params * tokens computed / s) is compared with this CPU's measured fp32 matmul peak. vLLM
rows (same prompts and settings, plus engine start time and the largest |P_vllm - P_hf| over labels) need vLLM: on
a CPU run this script with `.venv-vllm/bin/python` (built by scripts/vllm_cpu_tier.sh --install-only); without vLLM
they are null and the reason is printed.

JSON keys: hf_logprob_pairs_per_s, hf_sample_pairs_per_s, vllm_logprob_pairs_per_s, vllm_sample_pairs_per_s,
logprob_sample_mean_abs_diff, logprob_sample_se (+ details).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from _report import matmul_peak_gflops, print_result  # benchmarks/ is on sys.path when run as a script

from uetool.core.cost import ModelShape, forward_flops
from uetool.core.graph import sample_new_pairs
from uetool.core.outcomes import load_outcomes
from uetool.core.parsing import parse_reply
from uetool.core.prompts import DEFAULT_SYSTEM_MESSAGE, get_template
from uetool.engines import create_engine
from uetool.engines.base import ElicitationRequest, GenerationSettings


def build_requests(n_pairs: int, seed: int) -> tuple[list[ElicitationRequest], np.ndarray]:
    outcomes = load_outcomes("main")
    template = get_template("paper")
    pairs = sample_new_pairs(len(outcomes), n_pairs, np.random.default_rng(seed))
    requests = []
    for a, b in pairs.tolist():
        for order, (x, y) in ((0, (a, b)), (1, (b, a))):
            prompt = template.render(outcomes.descriptions[x], outcomes.descriptions[y])
            requests.append(ElicitationRequest(f"{a}-{b}-{order}", prompt, ("A", "B"), DEFAULT_SYSTEM_MESSAGE,
                                               a, b, order))
    return requests, pairs


def p_first_outcome_sample(results, labels=("A", "B")) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: P(a chosen) pooled over both orders, and the number of valid samples."""
    p, n = [], []
    for orig, flip in zip(results[0::2], results[1::2], strict=True):
        codes_o = [parse_reply(t, labels=labels) for t in orig.texts]
        codes_f = [parse_reply(t, labels=labels) for t in flip.texts]
        a_votes = codes_o.count(0) + codes_f.count(1)
        valid = a_votes + codes_o.count(1) + codes_f.count(0)
        p.append(a_votes / valid if valid else np.nan)
        n.append(valid)
    return np.array(p), np.array(n)


def p_first_outcome_logprob(results) -> np.ndarray:
    out = []
    for orig, flip in zip(results[0::2], results[1::2], strict=True):
        po = orig.probs[0] / max(sum(orig.probs), 1e-12)
        pf = flip.probs[1] / max(sum(flip.probs), 1e-12)
        out.append(0.5 * (po + pf))
    return np.array(out)


def time_engine(engine, requests, settings) -> tuple[list, float]:
    engine.answer_requests(requests[:2], settings)  # warm-up
    start = time.perf_counter()
    results = engine.answer_requests(requests, settings)
    return results, time.perf_counter() - start


def run(n_pairs: int, seed: int, hf_sample: bool = True) -> dict:
    from uetool.engines.weights import resolve_smollm2

    path = str(resolve_smollm2())
    requests, _ = build_requests(n_pairs, seed)
    out: dict = {"pairs": n_pairs, "prompts": len(requests)}
    engine = create_engine("hf", path=path, kind="chat", batch_size=16)
    n_params = sum(p.numel() for p in engine.model.parameters())
    prompt_tokens = sum(len(ids) for ids in engine._ids(requests, 1))  # the ids the model is shown
    logprob_settings = GenerationSettings(mode="logprob", k=10, max_tokens=1, seed=seed)
    sample_settings = GenerationSettings(mode="sample", k=10, temperature=1.0, max_tokens=10, seed=seed)
    lp_results, lp_s = time_engine(engine, requests, logprob_settings)
    out["hf_logprob_pairs_per_s"] = n_pairs / lp_s
    out["hf_logprob_prompts_per_s"] = len(requests) / lp_s
    # the shared prompt prefix's KV cache (engine.prefix_cache, on by default) against recomputing it per prompt
    prefix_tokens = len(engine._prefix[0]) if engine._prefix is not None else 0
    out["hf_logprob_prefix_tokens"] = prefix_tokens
    out["prompt_tokens_mean"] = prompt_tokens / len(requests)
    plain = create_engine("hf", path=path, kind="chat", batch_size=16, prefix_cache=False)
    plain_results, plain_s = time_engine(plain, requests, logprob_settings)
    plain.close()
    out["hf_logprob_no_prefix_cache_pairs_per_s"] = n_pairs / plain_s
    out["hf_logprob_prefix_cache_speedup"] = plain_s / lp_s
    out["hf_logprob_prefix_cache_max_abs_p_diff"] = max(
        abs(a - b) for x, y in zip(lp_results, plain_results, strict=True)
        for a, b in zip(x.probs, y.probs, strict=True))
    sm_results = None
    if hf_sample:
        sm_results, sm_s = time_engine(engine, requests, sample_settings)
        out["hf_sample_pairs_per_s"] = n_pairs / sm_s
        out["hf_sample_prompts_per_s"] = len(requests) / sm_s
        out["hf_logprob_vs_sample_speedup"] = sm_s / lp_s
    else:
        print("hf sample rows skipped (--skip-hf-sample)", file=sys.stderr)
        out["hf_sample_pairs_per_s"] = None
    out["logprob_other_mass"] = float(np.mean([r.other_mass for r in lp_results]))
    # FLOPs of the tokens actually computed: the shared prefix once, then every prompt's own tokens
    computed_tokens = prompt_tokens - prefix_tokens * (len(requests) - 1)
    out["hf_logprob_gflops"] = 2 * n_params * computed_tokens / lp_s / 1e9
    out["hf_logprob_no_prefix_cache_gflops"] = 2 * n_params * prompt_tokens / plain_s / 1e9
    out["cpu_peak_gflops"] = matmul_peak_gflops("cpu")
    out["hf_logprob_share_of_peak"] = out["hf_logprob_gflops"] / out["cpu_peak_gflops"]
    # the cost model's terms (uetool.core.cost), from the engine's own token counts: conf/cost's cpu entry
    tokens = np.array([r.tokens for r in lp_results], float)
    config = engine.model.config
    shape = ModelShape(float(n_params), config.num_hidden_layers, config.hidden_size)
    context = float((tokens[:, 1] + tokens[:, 0] / 2).mean())
    out["hf_logprob_tokens_computed"] = int(tokens[:, 0].sum())
    out["hf_logprob_tokens_reused"] = int(tokens[:, 1].sum())
    out["cpu_prefill_utilisation"] = (forward_flops(shape, tokens[:, 0].sum(), context) / lp_s
                                      / (out["cpu_peak_gflops"] * 1e9))
    engine.close()
    vllm_out, vllm_samples = run_vllm(path, requests, n_pairs, logprob_settings, sample_settings, lp_results)
    out.update(vllm_out)
    # logprob vs sampling: both engines sample the same distribution, so either engine's samples serve
    samples, source = (sm_results, "hf") if sm_results is not None else (vllm_samples, "vllm")
    if samples is not None:
        out.update(agreement(lp_results, samples, n_pairs))
        out["agreement_samples_from"] = source
    return out


def agreement(lp_results: list, sm_results: list, n_pairs: int) -> dict:
    """Exact logprob P(a) against the sampled frequency, with the sampling standard error for scale."""
    out: dict = {}
    p_lp = p_first_outcome_logprob(lp_results)
    p_sm, n_valid = p_first_outcome_sample(sm_results)
    ok = ~np.isnan(p_sm)
    se = np.sqrt(np.clip(p_lp[ok] * (1 - p_lp[ok]), 1e-12, None) / n_valid[ok])
    out["logprob_sample_mean_abs_diff"] = float(np.mean(np.abs(p_lp[ok] - p_sm[ok])))
    out["logprob_sample_se"] = float(np.mean(se))
    # |diff| of an unbiased estimate is about sqrt(2/pi) * se on average; report the ratio to that expectation
    expected_abs_diff = np.sqrt(2 / np.pi) * out["logprob_sample_se"]
    out["abs_diff_over_expected"] = out["logprob_sample_mean_abs_diff"] / expected_abs_diff
    out["sample_unparseable_share"] = float(1 - n_valid.sum() / (20 * n_pairs))
    return out


def run_vllm(path: str, requests: list[ElicitationRequest], n_pairs: int, logprob_settings: GenerationSettings,
             sample_settings: GenerationSettings, hf_logprob_results: list) -> tuple[dict, list | None]:
    """The vLLM rows (same prompts and settings as hf) and vLLM's samples; null rows with the reason without vLLM."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # vllm-cpu's KV cache (GiB); ignored on GPUs
    start = time.perf_counter()
    try:
        engine = create_engine("vllm", path=path, kind="chat", dtype="float32", max_model_len=2048)
    except ImportError as err:
        print(f"vllm rows skipped: {err}", file=sys.stderr)
        return {"vllm_logprob_pairs_per_s": None, "vllm_sample_pairs_per_s": None, "vllm_unavailable": str(err)}, None
    out: dict = {"vllm_engine_start_s": time.perf_counter() - start}
    try:
        lp_results, lp_s = time_engine(engine, requests, logprob_settings)
        sm_results, sm_s = time_engine(engine, requests, sample_settings)
    finally:
        engine.close()
    out["vllm_logprob_pairs_per_s"] = n_pairs / lp_s
    out["vllm_logprob_prompts_per_s"] = len(requests) / lp_s
    out["vllm_sample_pairs_per_s"] = n_pairs / sm_s
    out["vllm_sample_prompts_per_s"] = len(requests) / sm_s
    out["vllm_logprob_vs_sample_speedup"] = sm_s / lp_s
    # the two engines read the same next-token distribution: their P(label) must agree to float32 noise
    out["vllm_hf_max_abs_p_diff"] = float(max(abs(v - h) for vr, hr in zip(lp_results, hf_logprob_results, strict=True)
                                              for v, h in zip(vr.probs, hr.probs, strict=True)))
    return out, sm_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-hf-sample", action="store_true",
                        help="skip hf sampling (the slow row: ~10x the logprob time on a CPU)")
    args = parser.parse_args(argv)
    out = run(args.pairs, args.seed, hf_sample=not args.skip_hf_sample)
    print_result(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
