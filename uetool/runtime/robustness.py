"""The robustness suite (README "Robustness"): the base run and declared variants of its elicitation, compared.

Every variant (conf/robustness/: paraphrases, label sets, system prompts, K, temperature, logprob against sampling,
reasoning) and every repeated seed is a compute_utilities run of its own, `<root>/compute_utilities/<model>/<variant>/`,
answered through one engine pool and the model's one response store: the base run is the ordinary
`compute_utilities/<model>/` (reused when finished), and a variant added later asks only its own questions. The
comparisons (`uetool.core.robustness`) land in `<root>/robustness/<model>/<suite>/`: variants.csv (per variant
against the base: Spearman and Pearson with CIs, cross-prediction, stability, position shift, coherence deltas,
flagged and why), outcomes.parquet (each outcome's utility under every run, its spread and stability),
categories.csv, seeds.csv (between-seed spread of every metric), robustness.json (headline: flagged_variants,
min_stability, monotonicity_rate), robustness.png, least_stable.png, report.html, config.yaml.

With `robustness.analyses` (exchange_rates, political_values), each of those analyses also runs for the base and under
every variant, `<root>/<analysis>/<model>/<variant>/` (political_values variants ask only the model's own policy set,
placed in the base run's entity PCA), compared in analyses.csv.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from ..core.attributes import load_attributes
from ..core.robustness import (
    analysis_flag_reasons,
    compare_exchange_rates,
    compare_political,
    compare_variant,
    flag_reasons,
    monotonicity,
    outcome_stability,
    refusals_per_outcome,
)
from ..core.trends import category_view
from ..io.analysis_results import read_items, write_parquet
from ..io.files import write_atomic
from ..io.results import json_safe, read_results
from ..reporting.robustness_report import write_robustness_report
from .analysis import run_analysis
from .compute import compute_utilities, open_pool
from .config import RunConfig, redacted_yaml
from .robustness_config import RobustnessConfig
from .sweep_plan import DEFAULT_CONF, load_experiment_entry

__all__ = ["run_robustness", "suite_runs", "COMPARED_METRICS"]

COMPARED_METRICS = ("holdout_accuracy", "average_confidence", "log10_cycle_probability", "hard_cycle_rate",
                    "position_bias", "preference_strength", "unparseable_rate", "refusal_rate")


def _variant_run(raw: dict, base: RunConfig, elicitation: dict, seed: int | None, name: str,
                 check_environment: bool = True) -> RunConfig:
    cfg = copy.deepcopy(raw)
    cfg["elicitation"] = {**dict(cfg.get("elicitation") or {}), **elicitation}
    if elicitation.get("template_text"):
        cfg["elicitation"]["template"] = elicitation.get("template", "custom")
    if seed is not None:
        cfg["seed"] = seed
    cfg.pop("robustness", None)
    return replace(RunConfig.from_dict(cfg, outcomes=base.outcomes, check_environment=check_environment),
                   run_name=name)


def _analysis_runs(base_raw: dict, suite: RobustnessConfig, conf_dir,
                   check_environment: bool = True) -> list[tuple[str, str, RunConfig]]:
    """(analysis, variant, run) for every analysis of `robustness.analyses` under the base and every variant; a
    political_values variant is placed in the base run's entity PCA (its `reference`), asking only the model's own
    set."""
    out = []
    for name in suite.analyses:
        raw = copy.deepcopy(base_raw)
        raw.update(load_experiment_entry(conf_dir, name))
        raw[name] = {**(raw.get(name) or {}), **suite.analysis_overrides.get(name, {})}
        base = RunConfig.from_dict(raw, check_environment=check_environment)
        out.append((name, "base", base))
        varied = copy.deepcopy(raw)
        if name == "political_values":
            varied[name]["reference"] = base.out_dir
        for v in suite.variants:
            out.append((name, v.name, _variant_run(varied, base, v.elicitation, None, v.name, check_environment)))
    return out


def suite_runs(raw: dict, conf_dir=DEFAULT_CONF, *, check_environment: bool = True
               ) -> tuple[RobustnessConfig, list[tuple[str, RunConfig, str]], list[tuple[str, str, RunConfig]]]:
    """The suite of a config with a `robustness` section: (suite, [(name, compute run, about)] with the base
    first, then the variants and seeds, [(analysis, variant, run)])."""
    suite = RobustnessConfig.from_section(raw.get("robustness"))
    base_raw = {k: v for k, v in raw.items() if k != "robustness"}
    if base_raw.get("experiment", {}).get("name") not in (None, "compute_utilities", "robustness"):
        raise ValueError("the robustness suite varies compute_utilities runs; got "
                         f"experiment={base_raw['experiment']['name']}")
    base_raw["experiment"] = {"name": "compute_utilities"}
    base = RunConfig.from_dict(base_raw, check_environment=check_environment)
    runs = [("base", base, "the run's own elicitation")]
    check = check_environment
    runs += [(v.name, _variant_run(base_raw, base, v.elicitation, v.seed, v.name, check), v.about)
             for v in suite.variants]
    runs += [(f"seed_{s}", _variant_run(base_raw, base, {}, s, f"seed_{s}", check), f"the base with seed {s}")
             for s in suite.seeds]
    return suite, runs, _analysis_runs(base_raw, suite, conf_dir, check)


def run_robustness(cfg: dict | RunConfig, *, pool_name: str | None = None, pool_namespace: str | None = None,
                   conf_dir=DEFAULT_CONF) -> dict:
    """The suite for one model; returns {'summary', 'out_dir', 'robustness' (headline), 'analysis' (the same, for
    sweep records), 'metrics' (the base run's), 'timings', 'replacements', 'provenance'}. `conf_dir`: where the
    sections of `robustness.analyses` are read."""
    started = time.perf_counter()
    raw = dict(cfg.raw if isinstance(cfg, RunConfig) else cfg)
    suite, runs, analysis_runs = suite_runs(raw, conf_dir)  # every config built and checked before the pool starts
    base = runs[0][1]
    fs = base.layout.filesystem[0]
    results, analysed, replacements = {}, {}, 0
    pool = open_pool(base, name=pool_name, namespace=pool_namespace)
    try:
        for name, run, _ in runs:
            out = compute_utilities(run, pool=pool)
            results[name] = (out, read_results(out["out_dir"], fs=fs))
        own_pools = base.engine.name == "simulated"
        if own_pools and analysis_runs:
            # a simulated model's answers come from each analysis's own truth: those open a pool of their own,
            # which must not wait for the CPUs this one holds
            replacements += getattr(pool, "replacements", 0)
            pool.shutdown()
            pool = None
        for analysis, name, run in analysis_runs:
            out = run_analysis(run, pool=pool, conf_dir=conf_dir)
            analysed[(analysis, name)] = (out, read_items(fs, out["out_dir"]))
    finally:
        if pool is not None:
            replacements += getattr(pool, "replacements", 0)
            pool.shutdown()
    out_dir = base.layout.run_dir("robustness", base.model.key, suite.name)
    fs.create_dir(out_dir, recursive=True)
    headline, variants, outcomes, categories, seeds = _compare(base, suite, runs, results)
    analyses = _compare_analyses(suite, runs, analysed)
    headline["analyses"] = {
        a: {"flagged_variants": analyses.loc[(analyses["analysis"] == a) & analyses["flagged"], "variant"].tolist()}
        for a in suite.analyses}
    headline.update(model=base.model.key, suite=suite.name, outcomes=base.outcomes_name,
                    wall_s=time.perf_counter() - started)
    write_atomic(fs, f"{out_dir}/variants.csv", variants.to_csv(index=False).encode())
    write_parquet(fs, f"{out_dir}/outcomes.parquet", outcomes)
    write_atomic(fs, f"{out_dir}/categories.csv", categories.to_csv(index=False).encode())
    write_atomic(fs, f"{out_dir}/seeds.csv", seeds.to_csv(index=False).encode())
    if suite.analyses:
        write_atomic(fs, f"{out_dir}/analyses.csv", analyses.to_csv(index=False).encode())
    write_atomic(fs, f"{out_dir}/robustness.json", json.dumps(json_safe(headline), indent=2).encode())
    write_atomic(fs, f"{out_dir}/config.yaml", redacted_yaml(raw).encode())
    write_robustness_report(fs, out_dir, headline, variants, categories, outcomes, analyses)
    summary = _summary(headline, variants, analyses)
    write_atomic(fs, f"{out_dir}/summary.txt", summary.encode())
    base_out = results["base"][0]
    total = time.perf_counter() - started
    engine = sum(r[0]["timings"]["engine"] for r in [*results.values(), *analysed.values()])
    return {"summary": summary, "out_dir": out_dir, "robustness": headline, "analysis": headline,
            "metrics": base_out["metrics"], "provenance": base_out["provenance"], "replacements": replacements,
            "timings": {"engine_start": 0.0, "engine": engine, "total": total}}


_ANALYSIS_HEADLINES = {"exchange_rates": ("rate_log_sd", "framing_rate_ratio"),
                       "political_values": ()}


def _compare_analyses(suite: RobustnessConfig, runs: list, analysed: dict) -> pd.DataFrame:
    """Per analysis and variant: the comparison with the analysis's base run, flagged and why."""
    about = {name: text for name, _, text in runs}
    rows = []
    for analysis in suite.analyses:
        base_out, base_items = analysed[(analysis, "base")]
        for v in suite.variants:
            out, items = analysed[(analysis, v.name)]
            if analysis == "exchange_rates":
                comparison = compare_exchange_rates(base_items, items)
            else:
                comparison = compare_political(base_out["analysis"], base_items, out["analysis"], items)
            reasons = analysis_flag_reasons(analysis, comparison)
            row = {"analysis": analysis, "variant": v.name, "about": about.get(v.name, ""), **comparison,
                   "flagged": bool(reasons), "why": "; ".join(reasons)}
            for key in _ANALYSIS_HEADLINES[analysis]:
                row[f"delta_{key}"] = _delta(out["analysis"], base_out["analysis"], key)
            rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["analysis", "variant", "about", "flagged", "why"])


def _compare(base: RunConfig, suite: RobustnessConfig, runs: list, results: dict):
    base_out, base_res = results["base"]
    rows, means = [], [base_res.utilities["mean"].to_numpy()]
    for name, _, about in runs[1:]:
        out, res = results[name]
        comparison = compare_variant(base_res.utilities, res.utilities, base_edges=base_res.edges,
                                     variant_edges=res.edges, base_position=base_out["metrics"]["position_bias"],
                                     variant_position=out["metrics"]["position_bias"], seed=base.seed,
                                     n_boot=suite.n_boot)
        pair, _ = outcome_stability(np.stack([means[0], res.utilities["mean"].to_numpy()]), base.outcomes.categories)
        comparison["refusal_shift"] = _delta(out["metrics"], base_out["metrics"], "refusal_rate")
        reasons = flag_reasons(comparison) if not name.startswith("seed_") else []
        row = {"variant": name, "about": about, "spearman": comparison["spearman"],
               "position_bias_original": out["metrics"].get("position_bias_original"),
               "position_bias_flipped": out["metrics"].get("position_bias_flipped"),
               "spearman_low": comparison["spearman_ci"][0], "spearman_high": comparison["spearman_ci"][1],
               "pearson": comparison["pearson"], "stability": float(pair["stability"].mean()),
               "cross_accuracy": comparison["cross_accuracy"],
               "cross_accuracy_reverse": comparison["cross_accuracy_reverse"],
               "position_shift": comparison["position_shift"], "refusal_shift": comparison["refusal_shift"],
               "flagged": bool(reasons), "why": "; ".join(reasons),
               "rank_movers": "; ".join(f"{m['description']} ({m['rank_base']:.0f} -> {m['rank_variant']:.0f})"
                                        for m in comparison["rank_movers"][:3])}
        for metric in COMPARED_METRICS:
            row[f"delta_{metric}"] = _delta(out["metrics"], base_out["metrics"], metric)
            row[f"delta_{metric}_low"], row[f"delta_{metric}_high"] = _delta_ci(out["metrics"], base_out["metrics"],
                                                                                metric)
        rows.append(row)
        if not name.startswith("seed_"):
            means.append(res.utilities["mean"].to_numpy())
    variants = pd.DataFrame(rows)
    per_outcome, categories = outcome_stability(np.stack(means), base.outcomes.categories)
    outcomes = pd.DataFrame({"id": list(base.outcomes.ids), "description": list(base.outcomes.descriptions),
                             "category": list(base.outcomes.categories)})
    named = ["base"] + [n for n, _, _ in runs[1:] if not n.startswith("seed_")]
    for name, mean in zip(named, means, strict=True):
        outcomes[f"utility_{name}"] = mean
    outcomes["spread"], outcomes["stability"] = per_outcome["spread"], per_outcome["stability"]
    n = len(base.outcomes)
    refusals = {name: refusals_per_outcome(results[name][1].edges, n) for name in named}
    outcomes["refusal_rate_base"] = refusals["base"]
    outcomes["refusal_rate_mean"] = np.nanmean(np.stack(list(refusals.values())), axis=0) if n else []
    # per category: its stability beside the base fit's held-out accuracy and mean utility there
    coherence = category_view(base_res.utilities, base_res.edges).replace({"category": {"uncategorised": ""}})
    categories = categories.merge(coherence[["category", "n_outcomes", "mean_utility", "holdout_accuracy",
                                             "n_holdout_edges"]], on="category", how="left")
    categories["mean_confidence"] = _category_confidence(base_res.edges, list(base.outcomes.categories),
                                                         categories["category"].tolist())
    seed_names = ["base"] + [n for n, _, _ in runs if n.startswith("seed_")]
    seeds = pd.DataFrame([{"metric": m, **{n: results[n][0]["metrics"].get(m) for n in seed_names}}
                          for m in COMPARED_METRICS])
    seeds["between_seed_sd"] = seeds[seed_names].astype(float).std(axis=1, ddof=1) if len(seed_names) > 1 else np.nan
    # the base run's own (within-run, bootstrap) CI beside the between-seed spread
    within = [base_out["metrics"].get(f"{m}_ci") or [np.nan, np.nan] for m in COMPARED_METRICS]
    seeds["base_ci_low"], seeds["base_ci_high"] = [w[0] for w in within], [w[1] for w in within]
    attributes = load_attributes(base.outcomes)
    members = attributes.series_members()
    direction = {name: int(attributes.direction[idx[0]]) for name, idx in members.items()}
    mono = monotonicity(means[0], members, direction, list(base.outcomes.descriptions))
    compared = variants[~variants["variant"].str.startswith("seed_")]
    headline = {"flagged_variants": compared.loc[compared["flagged"], "variant"].tolist(),
                "min_stability": float(compared["stability"].min()) if len(compared) else float("nan"),
                "monotonicity_rate": mono["monotonicity_rate"], "monotonicity_pairs": mono["n_pairs"],
                "monotonicity_violations": mono["violations"], "n_variants": int(len(compared)),
                "base_verdict": base_out["metrics"].get("verdict"), "position_bias_base":
                base_out["metrics"].get("position_bias"), "n_seeds": len(seed_names) - 1}
    return headline, variants, outcomes, categories, seeds


def _category_confidence(edges: pd.DataFrame, outcome_categories: list[str], names: list[str]) -> list[float]:
    """Per category: the mean of max(P(a), P(b)) over the base's answered pairs touching one of its outcomes."""
    cats = np.asarray(outcome_categories, dtype=object)
    p = edges["p_a"].to_numpy(float)
    keep = np.isfinite(p)
    a, b, p = edges["a"].to_numpy(int)[keep], edges["b"].to_numpy(int)[keep], p[keep]
    confidence = np.maximum(p, 1 - p)
    out = []
    for name in names:
        touches = (cats[a] == name) | (cats[b] == name)
        out.append(float(confidence[touches].mean()) if touches.any() else float("nan"))
    return out


def _delta_ci(metrics: dict, base: dict, key: str) -> tuple[float, float]:
    """A CI of the change: both runs' bootstrap CI half-widths combined as independent normal errors."""
    a, b = metrics.get(f"{key}_ci"), base.get(f"{key}_ci")
    delta = _delta(metrics, base, key)
    if not (isinstance(a, list | tuple) and isinstance(b, list | tuple) and np.isfinite(delta)):
        return float("nan"), float("nan")
    half = float(np.hypot((a[1] - a[0]) / 2, (b[1] - b[0]) / 2))
    return (delta - half, delta + half) if np.isfinite(half) else (float("nan"), float("nan"))


def _delta(metrics: dict, base: dict, key: str) -> float:
    a, b = metrics.get(key), base.get(key)
    return float(a - b) if isinstance(a, int | float) and isinstance(b, int | float) else float("nan")


def _summary(headline: dict, variants: pd.DataFrame, analyses: pd.DataFrame) -> str:
    lines = [f"robustness of {headline['model']} on {headline['outcomes']} (suite {headline['suite']}): "
             f"{headline['n_variants']} variants, {headline['n_seeds']} repeated seeds, {headline['wall_s']:.0f} s"]
    if headline.get("base_verdict"):
        lines.append(f"base run: {headline['base_verdict']}")
    for _, row in variants.iterrows():
        lines.append(f"  {row['variant']:<24} Spearman {row['spearman']:+.3f} [{row['spearman_low']:+.3f}, "
                     f"{row['spearman_high']:+.3f}]  stability {row['stability']:.3f}  position shift "
                     f"{row['position_shift']:+.3f}" + (f"  FLAGGED: {row['why']}" if row["flagged"] else ""))
    lines.append(f"flagged: {', '.join(headline['flagged_variants']) or 'none'}; min stability "
                 f"{headline['min_stability']:.3f}; monotonicity {headline['monotonicity_rate']:.3f} over "
                 f"{headline['monotonicity_pairs']} pairs")
    for analysis, found in (headline.get("analyses") or {}).items():
        rows = analyses[analyses["analysis"] == analysis]
        key = "rate_spearman" if analysis == "exchange_rates" else "policy_spearman"
        lines.append(f"{analysis} under the variants: Spearman with the base from {rows[key].min():+.3f} to "
                     f"{rows[key].max():+.3f}; flagged: {', '.join(found['flagged_variants']) or 'none'}")
    return "\n".join(lines)
