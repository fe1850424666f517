"""The sweep report's analysis sections: per experiment, its headline metrics per model (with the runs' own 95%
CIs) and each headline metric against capability (Pearson and Spearman with bootstrap CIs over models)."""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from ..analyses import ANALYSES
from ..core.trends import category_view, trend_statistics
from . import plots
from .page import fmt_number, table_html

__all__ = ["analysis_table", "analysis_sections", "category_section"]

TITLES = {"expected_utility": "Expected utility (explicit lotteries)",
          "expected_utility_implicit": "Expected utility (implicit lotteries)",
          "instrumentality": "Instrumentality (natural processes and the unnatural control)",
          "maximization": "Utility maximisation",
          "exchange_rates": "Exchange rates (against each category's pivot; both framings)",
          "time_discounting": "Time discounting ($1,000 now or more later)",
          "power_seeking": "Power-seeking (preference against the model's own power scores)",
          "fitness": "Fitness (preference against how far an outcome spreads the model's values)",
          "corrigibility": "Corrigibility (utility of a future preference against the size of the reversal)"}


def analysis_table(records: list[dict]) -> pd.DataFrame:
    """One row per model: model, status, capability, every numeric headline metric (analysis.json), error."""
    rows = []
    for record in records:
        row = {"model": record["model"], "status": record["status"],
               "capability": float(record["capability"]) if record.get("capability") is not None else math.nan}
        for key, value in (record.get("analysis") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[key] = float(value)
            elif key.endswith("_ci") and isinstance(value, list):
                row[key] = value
        row["error"] = record.get("error") or ""
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["capability", "model"], na_position="last").reset_index(drop=True)


def _ci_text(ci: object) -> str:
    if not isinstance(ci, list) or len(ci) != 2 or not all(isinstance(v, int | float) for v in ci):
        return "\u2014"
    return f"{fmt_number(ci[0])} to {fmt_number(ci[1])}"


def _trend_text(row: pd.Series) -> str:
    if not math.isfinite(row["pearson_r"]):
        return row["note"]
    return (f"Pearson r {row['pearson_r']:.2f} [{row['pearson_ci_low']:.2f}, {row['pearson_ci_high']:.2f}], "
            f"Spearman \u03c1 {row['spearman_rho']:.2f} [{row['spearman_ci_low']:.2f}, {row['spearman_ci_high']:.2f}]"
            f" over {int(row['n'])} models")


def analysis_sections(by_experiment: dict[str, list[dict]], capability_name: str, *, n_boot: int = 1000,
                      seed: int = 0) -> tuple[dict[str, bytes], list[tuple[str, str, str]]]:
    """({file name: bytes}, [(section id, title, html)]) for every experiment with records, in ANALYSES order."""
    files: dict[str, bytes] = {}
    sections = []
    for experiment in [e for e in ANALYSES if e in by_experiment] + sorted(set(by_experiment) - set(ANALYSES)):
        table = analysis_table(by_experiment[experiment])
        headline = [m for m in getattr(ANALYSES.get(experiment), "headline", ()) if m in table.columns]
        files[f"analysis_{experiment}.csv"] = table.to_csv(index=False).encode()
        trends = trend_statistics(table, headline, n_boot=n_boot, seed=seed) if headline else pd.DataFrame()
        figures = []
        for _, trend in trends.iterrows():
            metric = trend["metric"]
            if trend["n"] == 0:
                continue
            name = f"analysis_{experiment}_{metric}.png"
            files[name] = plots.trend_plot(table, metric, trend, capability_name)
            better = "lower" if metric in getattr(ANALYSES.get(experiment), "lower_is_better", ()) else "higher"
            figures.append((name, f"{metric} vs {capability_name} ({better} is better): {_trend_text(trend)}"))
        shown = table[["model", "status", "capability"]].copy()
        for metric in headline:
            shown[metric] = table[metric]
            if f"{metric}_ci" in table:
                shown[f"{metric} 95% CI"] = [_ci_text(c) for c in table[f"{metric}_ci"]]
        failed = table[table["status"] != "done"]
        html = table_html(shown)
        html += "<div class=\"grid\">" + "".join(
            f'<figure><img src="{escape(src)}" alt="{escape(alt)}"><figcaption>{escape(alt)}</figcaption></figure>'
            for src, alt in figures) + "</div>"
        if not figures:
            html += '<p class="muted">No finished model with a capability score to plot.</p>'
        if len(failed):
            html += "<ul>" + "".join(f"<li>{escape(m)}: {escape(str(e))}</li>"
                                     for m, e in zip(failed["model"], failed["error"], strict=True)) + "</ul>"
        sections.append((f"analysis-{experiment}", TITLES.get(experiment, experiment), html))
    return files, sections


def category_section(records: list[dict], utilities: dict[str, pd.DataFrame], edges: dict[str, pd.DataFrame],
                     order: list[str]) -> tuple[dict[str, bytes], str]:
    """The per-category view of the compute_utilities runs (EXPERIMENTS.md s.15): per model and outcome category
    the mean standardised utility and the held-out accuracy on edges touching the category; ({}, "") when no
    model's outcomes have two or more categories."""
    frames = []
    for model in [m for m in order if m in utilities]:
        frame = utilities[model]
        if "category" not in frame or frame["category"].fillna("").replace("", None).nunique() < 2:
            continue
        view = category_view(frame, edges.get(model))
        view.insert(0, "model", model)
        frames.append(view)
    if not frames:
        return {}, ""
    long = pd.concat(frames, ignore_index=True)
    means = long.pivot(index="category", columns="model", values="mean_utility")
    means = means.loc[means.mean(axis=1).sort_values(ascending=False).index, [m for m in order if m in means]]
    accuracy = long.pivot(index="category", columns="model", values="holdout_accuracy").reindex_like(means)
    files = {"categories.csv": long.to_csv(index=False).encode(),
             "categories.png": plots.category_heatmap(means)}
    html = ('<figure class="wide"><img src="categories.png" alt="mean utility per category"><figcaption>mean '
            "standardised utility per outcome category (rows: categories by their mean over models)</figcaption>"
            "</figure><h3>Mean standardised utility</h3>" + table_html(means.reset_index())
            + "<h3>Held-out accuracy on edges touching the category</h3>" + table_html(accuracy.reset_index()))
    return files, html
