"""Full active-learning loop against a simulated agent: accuracy, ground-truth recovery, time and memory.

    python benchmarks/active_learning.py --n 510 --seed 0 [--agent thurstonian|random] [--mode sample|logprob] [--json]
    python benchmarks/active_learning.py --seeds 0-9 --profile paper     # a conf/fit profile, spread over seeds
    python benchmarks/active_learning.py --seeds 0-9 --budget-curve      # 25/50/75/100% of the query budget
    python benchmarks/active_learning.py --seeds 0-9 --compare-profiles  # the measurement that chose the default

JSON keys (a public contract): n, queried_pairs, average_confidence, wall_s, holdout_accuracy, bayes_accuracy,
pearson_truth, spearman_truth, peak_rss_mb, log10_cycle_probability (on 1,000 uniformly drawn, asked triads),
analytic_log10_cycle_probability (the agent's exact value on the same triads, from its own probabilities; null for
an agent without them), hard_cycle_rate, average_confidence_random_pairs (holdout and triad pairs) (+ extras).
`--tokenizer MODEL_KEY` (a conf/model key whose tokenizer is available offline, e.g. smollm2-135m-instruct) adds
tokens_computed (the prompts of every pair the loop asked, training and held out, both orders, rendered with the
paper template over the main outcomes and counted with that tokenizer as the hf engine computes them: the shared
prefix once, K samples from one prefill, up to 10 tokens each in sample mode, none in logprob mode),
reference_method_tokens (the paper's method on its own budget of int(2 n log2 n) pairs: both orders, K=10 samples
of up to 10 tokens, each recomputing its prompt) and tokens_share_of_reference.
`--mode logprob` answers with expected counts (K * P per order, what logprob elicitation reports) instead of
sampling K replies. `--profile` takes the schedule from conf/fit/<profile>.yaml (thurstonian, the default, or paper:
the reference's schedule), composed by Hydra as a job would. `--budget-curve` prints, per schedule (both profiles and
uniformly random pairs) and per share of the budget, the mean over seeds of queried_pairs, holdout_accuracy,
bayes_accuracy, gap_to_bayes and pearson_truth (JSON: {"curve": [rows]}).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from _report import print_result  # benchmarks/ is on sys.path when run as a script
from scipy.stats import pearsonr, spearmanr

from uetool.core.active import ActiveLearningConfig, run_active_learning
from uetool.core.agents import make_agent
from uetool.core.graph import HOLDOUT
from uetool.core.metrics import accuracy
from uetool.core.transitivity import confidence_metrics, cycle_metrics, measure_transitivity, pair_probabilities
from uetool.runtime.config import FitConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
BUDGET_SHARES = (0.25, 0.5, 0.75, 1.0)


def schedule(profile: str, seed: int, pairs_per_round: int | None = None, selection: str | None = None,
             budget_share: float = 1.0) -> ActiveLearningConfig:
    """The active-learning config of conf/fit/<profile>.yaml (as Hydra composes it for a job), for `seed`."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if not (CONF_DIR / "fit" / f"{profile}.yaml").is_file():
        raise SystemExit(f"unknown --profile {profile!r}: no conf/fit/{profile}.yaml")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        fit = FitConfig.from_dict(OmegaConf.to_container(compose(config_name=f"fit/{profile}"))["fit"])
    active = dict(fit.active)
    active["edge_multiplier"] = active.get("edge_multiplier", 2.0) * budget_share
    # None scales the round with n (~18 rounds, at least 500: the profiles' 500 up to n of about 1,000), so that
    # --n 100000 does not run thousands of rounds
    active["pairs_per_round"] = pairs_per_round
    if selection is not None:
        active["pair_selection"] = selection
    return ActiveLearningConfig(**active, seed=seed)


def expected_counts(agent, k: int):
    """ask() with expected counts: K * P(first option) in each order, no sampling noise (logprob mode)."""
    def ask(pairs: np.ndarray) -> np.ndarray:
        a, b = pairs[:, 0], pairs[:, 1]
        p_orig, p_flip = agent.first_option_probability(a, b), agent.first_option_probability(b, a)
        zero = np.zeros(len(pairs))
        return np.stack([k * p_orig, k * (1 - p_orig), k * (1 - p_flip), k * p_flip, zero, zero], 1)
    return ask


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(n: int, seed: int, agent_kind: str, k: int, pairs_per_round: int | None, runtime: str = "local",
        repeats: int = 1, mode: str = "sample", profile: str = "thurstonian", tokenizer: str | None = None,
        budget_share: float = 1.0) -> dict:
    agent = make_agent(agent_kind, n, k=k, seed=seed)
    ask = expected_counts(agent, k) if mode == "logprob" else agent
    config = schedule(profile, seed, pairs_per_round, budget_share=budget_share)

    def core_run():
        start = time.perf_counter()
        return run_active_learning(n, ask, config), time.perf_counter() - start

    core_walls, ray_walls, elicit_s, engine_s = [], [], [], []
    for _ in range(repeats):
        result, wall = core_run()
        core_walls.append(wall)
    if runtime == "ray" and mode == "logprob":
        raise SystemExit("--runtime ray answers by sampling; use --mode sample with it")
    if runtime == "ray":
        from ray_path import RayPath  # engine pool of Ray actors + durable store

        path = RayPath(n, agent_kind, k, seed, config)
        try:
            # alternate the two paths so that drift in the machine's speed (shared 2-core VMs drift by +-15% over
            # minutes) falls on both alike; the core's time is its best over every run, before Ray and alongside
            for _ in range(repeats):
                result, wall, elicitor = path.run()
                ray_walls.append(wall)
                elicit_s.append(elicitor.stats.elicit_seconds)
                engine_s.append(elicitor.stats.engine_seconds)
                core_walls.append(core_run()[1])
        finally:
            path.close()
    # the fastest repeat: the least disturbed by whatever else the machine runs
    core_wall = min(core_walls)
    wall = min(ray_walls) if runtime == "ray" else core_wall
    hold = result.graph.select(HOLDOUT)
    bayes, pearson, spearman = against_truth(agent, result, config)
    triads = measure_transitivity(n, ask, n_triads=1000, seed=seed, policy=config.unparseable_policy)
    true_p = [agent.true_probability(triads.triads[:, i], triads.triads[:, j]) for i, j in ((0, 1), (1, 2), (0, 2))]
    analytic = cycle_metrics(*true_p)["log10_cycle_probability"] if len(triads.triads) else None
    uniform = confidence_metrics(np.empty(0), (np.stack([hold.a, hold.b], 1),
                                 pair_probabilities(hold.counts, config.unparseable_policy, seed)), triads, n,
                                 np.empty((0, 2), np.int64))
    out = {
        "n": n,
        # pairs chosen by the active-learning loop (the fixed held-out pairs are counted separately)
        "queried_pairs": int(result.metrics["n_edges"]),
        "holdout_pairs": int(len(hold)),
        "rounds": int(result.graph.round.max()) + 1,
        "average_confidence": result.metrics["average_confidence"],
        "wall_s": wall,
        "holdout_accuracy": result.metrics["holdout_accuracy"],
        "bayes_accuracy": bayes,
        "holdout_log_loss": result.metrics["holdout_log_loss"],
        "log10_cycle_probability": triads.metrics["log10_cycle_probability"],
        "analytic_log10_cycle_probability": analytic,
        "hard_cycle_rate": triads.metrics["hard_cycle_rate"],
        "average_confidence_random_pairs": uniform["average_confidence_random_pairs"],
        "mode": mode,
        "profile": profile,
        "pearson_truth": pearson,
        "spearman_truth": spearman,
        "peak_rss_mb": peak_rss_mb(),
        "agent": agent_kind,
        "seed": seed,
        "runtime": runtime,
        "repeats": repeats,
    }
    if tokenizer is not None:
        out.update(token_bill(n, result, tokenizer, mode, k))
    if runtime == "ray":
        best = ray_walls.index(wall)
        out["core_wall_s"] = core_wall
        out["ray_overhead_ratio"] = wall / core_wall - 1.0
        # drift-robust companion: each Ray run against the mean of the core runs just before and just after it
        out["ray_overhead_ratio_paired"] = float(np.median([
            ray_walls[i] / (0.5 * (core_walls[repeats - 1 + i] + core_walls[repeats + i])) - 1.0
            for i in range(repeats)]))
        # of the fastest Ray run: time inside elicitation (Ray calls, store, parsing) and waiting on the pool
        out["ray_elicit_s"] = elicit_s[best]
        out["ray_engine_s"] = engine_s[best]
        out["ray_walls_s"] = ray_walls
        out["core_walls_s"] = core_walls
    return out


def token_bill(n: int, result, model_key: str, mode: str, k: int) -> dict:
    """What the loop's questions cost in that model's tokens, against the paper's method on its own budget."""
    from uetool.core.cost import PAPER_MAX_TOKENS, paper_pairs, reference_tokens
    from uetool.core.outcomes import load_outcomes
    from uetool.core.prompts import DEFAULT_SYSTEM_MESSAGE, get_template
    from uetool.engines.base import ElicitationRequest
    from uetool.engines.chat_format import prompt_token_ids
    from uetool.runtime.plan import offline_tokenizer
    from uetool.runtime.sweep_plan import load_model_entry

    model = load_model_entry(CONF_DIR, model_key)
    tokenizer = offline_tokenizer(model["path"], model.get("revision"))
    if tokenizer is None:
        raise SystemExit(f"--tokenizer {model_key}: its tokenizer ({model['path']}) is not available offline")
    texts = list(load_outcomes("main").descriptions)
    texts = [texts[i % len(texts)] + ("" if i < len(texts) else f" (variant {i // len(texts)})") for i in range(n)]
    template = get_template("paper")
    lengths = []
    ids_seen = None
    prefix = None
    for a, b in zip(result.graph.a.tolist(), result.graph.b.tolist(), strict=True):
        for x, y in ((a, b), (b, a)):
            request = ElicitationRequest("t", template.render(texts[x], texts[y]), ("A", "B"), DEFAULT_SYSTEM_MESSAGE)
            ids = prompt_token_ids(tokenizer, request, model["kind"], model.get("accepts_system_message", True))
            lengths.append(len(ids))
            if ids_seen is None:
                ids_seen, prefix = ids, len(ids) - 1
            else:
                prefix = next((j for j in range(prefix) if ids[j] != ids_seen[j]), prefix)
    lengths = np.asarray(lengths, float)
    computed = float(lengths.sum() - prefix * (len(lengths) - 1))  # the shared prefix computed once
    generated = 0.0 if mode == "logprob" else len(lengths) * k * PAPER_MAX_TOKENS
    reference = reference_tokens(paper_pairs(n), float(lengths.mean()))
    tokens = computed + generated
    return {"tokenizer": model_key, "mean_prompt_tokens": float(lengths.mean()), "prefix_tokens": int(prefix),
            "asked_requests": int(len(lengths)), "tokens_computed": int(round(tokens)),
            "reference_method_pairs": paper_pairs(n),
            "reference_method_tokens": int(round(reference["reference_tokens"])),
            "tokens_share_of_reference": tokens / reference["reference_tokens"]}


def against_truth(agent, result, config: ActiveLearningConfig) -> tuple[float, float, float]:
    """(Bayes accuracy: the agent's own probabilities scored on the same held-out replies, pearson and spearman of
    the fit's means to the agent's; NaN for an agent without means)."""
    hold = result.graph.select(HOLDOUT)
    p_obs, _ = hold.probabilities(config.unparseable_policy)
    bayes = accuracy(agent.true_probability(hold.a, hold.b), p_obs)
    truth = getattr(agent, "mean", None)
    if truth is None:
        return bayes, float("nan"), float("nan")
    return bayes, float(pearsonr(result.fit.mean, truth)[0]), float(spearmanr(result.fit.mean, truth)[0])


SPREAD_KEYS = ("holdout_accuracy", "bayes_accuracy", "holdout_log_loss", "average_confidence",
               "average_confidence_random_pairs", "log10_cycle_probability", "analytic_log10_cycle_probability",
               "hard_cycle_rate", "pearson_truth", "spearman_truth", "queried_pairs", "wall_s")


def seed_spread(runs: list[dict]) -> dict:
    """Each metric over seeds: {metric}_mean, _sd, _min, _max (and the seeds), for how much a number moves."""
    out: dict = {"n": runs[0]["n"], "agent": runs[0]["agent"], "mode": runs[0]["mode"],
                 "profile": runs[0]["profile"], "seeds": [r["seed"] for r in runs]}
    for key in SPREAD_KEYS:
        values = np.array([r[key] for r in runs if r.get(key) is not None], float)
        if values.size:
            sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
            out.update({f"{key}_mean": float(values.mean()), f"{key}_sd": sd, f"{key}_min": float(values.min()),
                        f"{key}_max": float(values.max())})
    gaps = np.array([r["log10_cycle_probability"] - r["analytic_log10_cycle_probability"] for r in runs
                     if r.get("analytic_log10_cycle_probability") is not None], float)
    if gaps.size:
        out["max_abs_cycle_gap_to_analytic"] = float(np.abs(gaps).max())
    to_bayes = np.array([r["holdout_accuracy"] - r["bayes_accuracy"] for r in runs], float)
    out["gap_to_bayes_mean"] = float(to_bayes.mean())
    out["gap_to_bayes_sd"] = float(to_bayes.std(ddof=1)) if to_bayes.size > 1 else 0.0
    return out


def compare_profiles(runs: dict[str, list[dict]]) -> dict:
    """The default-choosing comparison of two profiles run on the same seeds (README "Active-learning schedule").

    The rule: the smaller mean gap to Bayes accuracy wins unless the paired difference is within two standard
    errors (a tie: 10 seeds cannot tell them apart), then the higher pearson to the truth wins.
    """
    (name_a, runs_a), (name_b, runs_b) = runs.items()
    out: dict = {"profiles": {name: seed_spread(rs) for name, rs in runs.items()}}
    for key, metric in (("gap", lambda r: r["holdout_accuracy"] - r["bayes_accuracy"]),
                        ("pearson", lambda r: r["pearson_truth"])):
        diff = np.array([metric(b) - metric(a) for a, b in zip(runs_a, runs_b, strict=True)], float)
        out[f"paired_{key}_difference"] = float(diff.mean())  # second profile minus first, seed by seed
        out[f"paired_{key}_difference_se"] = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
    gap, se = out["paired_gap_difference"], out["paired_gap_difference_se"]
    if abs(gap) > 2 * se:
        out["choice"], out["decided_by"] = (name_b if gap > 0 else name_a), "gap_to_bayes"
    else:
        out["choice"] = name_b if out["paired_pearson_difference"] > 0 else name_a
        out["decided_by"] = "pearson_truth (gap within 2 SE)"
    return out


def print_comparison(out: dict) -> None:
    print(f"{'profile':<14}{'queried':>9}{'holdout acc':>19}{'bayes acc':>11}{'gap to Bayes':>20}{'pearson':>19}")
    for name, s in out["profiles"].items():
        print(f"{name:<14}{s['queried_pairs_mean']:>9.0f}{s['holdout_accuracy_mean']:>11.4f} "
              f"±{s['holdout_accuracy_sd']:.4f}{s['bayes_accuracy_mean']:>11.4f}{s['gap_to_bayes_mean']:>+12.4f} "
              f"±{s['gap_to_bayes_sd']:.4f}{s['pearson_truth_mean']:>11.4f} ±{s['pearson_truth_sd']:.4f}")
    second = list(out["profiles"])[1]
    print(f"{second} minus the other, paired by seed: gap {out['paired_gap_difference']:+.4f} "
          f"± {out['paired_gap_difference_se']:.4f} (SE), pearson {out['paired_pearson_difference']:+.4f} "
          f"± {out['paired_pearson_difference_se']:.4f} (SE)")
    print(f"default by the rule: {out['choice']} (decided by {out['decided_by']})")


CURVE_ARMS = (("thurstonian", None), ("paper", None), ("thurstonian", "random"))


def budget_curve(n: int, seeds: list[int], agent_kind: str, k: int, pairs_per_round: int | None,
                 mode: str = "sample") -> list[dict]:
    """Held-out accuracy and recovery of the truth at each share of the query budget, for each schedule.

    Every arm of a seed faces the same agent, holdout and Bayes accuracy (the holdout is asked first, before any
    schedule-dependent draw), so differences between arms are the schedules' alone.
    """
    rows = []
    for profile, selection in CURVE_ARMS:
        arm = "random_pairs" if selection == "random" else profile
        for share in BUDGET_SHARES:
            runs = []
            for seed in seeds:
                agent = make_agent(agent_kind, n, k=k, seed=seed)
                ask = expected_counts(agent, k) if mode == "logprob" else agent
                config = schedule(profile, seed, pairs_per_round, selection, share)
                result = run_active_learning(n, ask, config)
                bayes, pearson, _ = against_truth(agent, result, config)
                runs.append({"queried_pairs": result.metrics["n_edges"],
                             "holdout_accuracy": result.metrics["holdout_accuracy"], "bayes_accuracy": bayes,
                             "gap_to_bayes": result.metrics["holdout_accuracy"] - bayes, "pearson_truth": pearson})
            row: dict = {"schedule": arm, "budget_share": share, "seeds": len(seeds)}
            for key in ("queried_pairs", "holdout_accuracy", "bayes_accuracy", "gap_to_bayes", "pearson_truth"):
                values = np.array([r[key] for r in runs], float)
                row[key] = float(values.mean())
                row[f"{key}_sd"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
            rows.append(row)
    return rows


def print_curve(rows: list[dict]) -> None:
    print(f"{'schedule':<14}{'share':>6}{'queried':>9}{'holdout acc':>19}{'gap to Bayes':>20}{'pearson':>19}")
    for r in rows:
        print(f"{r['schedule']:<14}{r['budget_share']:>6.2f}{r['queried_pairs']:>9.0f}"
              f"{r['holdout_accuracy']:>11.4f} ±{r['holdout_accuracy_sd']:.4f}"
              f"{r['gap_to_bayes']:>+12.4f} ±{r['gap_to_bayes_sd']:.4f}"
              f"{r['pearson_truth']:>11.4f} ±{r['pearson_truth_sd']:.4f}")
    print("(mean ± sd over seeds; gap to Bayes = holdout accuracy - the agent's own accuracy on the same replies)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=510)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agent", choices=["thurstonian", "random"], default="thurstonian")
    parser.add_argument("--k", type=int, default=10, help="samples per order")
    parser.add_argument("--pairs-per-round", type=int, default=None,
                        help="pairs per round (default: 500, scaled up with n to ~18 rounds)")
    parser.add_argument("--runtime", choices=["local", "ray"], default="local")
    parser.add_argument("--mode", choices=["sample", "logprob"], default="sample",
                        help="sample K replies per order, or answer with expected counts (logprob elicitation)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time each path this many times (alternately under --runtime ray); report the fastest")
    parser.add_argument("--seeds", default=None,
                        help="a range such as 0-9: run every seed and print each metric's spread (mean, sd, min, max)")
    parser.add_argument("--profile", default="thurstonian",
                        help="the schedule of conf/fit/<profile>.yaml: thurstonian (default) or paper (the reference)")
    parser.add_argument("--budget-curve", action="store_true",
                        help="held-out accuracy and pearson at 25/50/75/100%% of the budget: both profiles and "
                             "uniformly random pairs, over --seeds (or --seed)")
    parser.add_argument("--compare-profiles", action="store_true",
                        help="thurstonian vs paper over --seeds: the table and rule that chose the default")
    parser.add_argument("--budget-share", type=float, default=1.0,
                        help="the share of the schedule's pair budget to ask (its edge_multiplier scaled)")
    parser.add_argument("--tokenizer", default=None, metavar="MODEL_KEY",
                        help="count the asked prompts' tokens with this conf/model entry's tokenizer (offline)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    first, _, last = (args.seeds or str(args.seed)).partition("-")
    seeds = list(range(int(first), int(last or first) + 1))
    if args.budget_curve:
        rows = budget_curve(args.n, seeds, args.agent, args.k, args.pairs_per_round, args.mode)
        if args.json:
            print(json.dumps({"n": args.n, "agent": args.agent, "mode": args.mode, "curve": rows}))
        else:
            print_curve(rows)
        return 0
    if args.compare_profiles:
        runs = {profile: [run(args.n, seed, args.agent, args.k, args.pairs_per_round, mode=args.mode, profile=profile)
                          for seed in seeds] for profile in ("thurstonian", "paper")}
        out = compare_profiles(runs)
        if args.json:
            print(json.dumps(out))
        else:
            print_comparison(out)
        return 0
    if args.seeds:
        runs = [run(args.n, seed, args.agent, args.k, args.pairs_per_round, args.runtime, args.repeats, args.mode,
                    args.profile) for seed in seeds]
        print_result(seed_spread(runs), args.json)
        return 0
    out = run(args.n, args.seed, args.agent, args.k, args.pairs_per_round, args.runtime, args.repeats, args.mode,
              args.profile, args.tokenizer, args.budget_share)
    print_result(out, args.json)
    if not args.json:
        print(f"acc - bayes  {out['holdout_accuracy'] - out['bayes_accuracy']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
