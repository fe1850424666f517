"""The sweep report's analysis sections: per experiment, its headline metrics per model (with the runs' own 95%
CIs) and each headline metric against capability (Pearson and Spearman with bootstrap CIs over models)."""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

from ..analyses import ANALYSES
from ..core.trends import category_view, trend_statistics
from . import plots
from .page import fmt_number, table_html

__all__ = ["analysis_table", "analysis_sections", "category_section", "ITEM_SECTIONS", "political_map_section"]

ITEM_SECTIONS = ("political_values",)  # sections that read every model's items.parquet
# experiments that are no analysis but report per model like one (sweep.experiments=[robustness])
OTHER_HEADLINES = {"robustness": ("min_stability", "monotonicity_rate")}
OTHER_READINGS = {"min_stability": "higher: utilities depend less on the prompt",
                  "monotonicity_rate": "higher: more is better where it should be"}

TITLES = {"expected_utility": "Expected utility (explicit lotteries)",
          "expected_utility_implicit": "Expected utility (implicit lotteries)",
          "instrumentality": "Instrumentality (natural processes and the unnatural control)",
          "maximization": "Utility maximisation",
          "exchange_rates": "Exchange rates (against each category's pivot; both framings)",
          "time_discounting": "Time discounting ($1,000 now or more later)",
          "political_values": "Political values (policy utilities among simulated politicians and platforms)",
          "power_seeking": "Power-seeking (preference against the model's own power scores)",
          "fitness": "Fitness (preference against how far an outcome spreads the model's values)",
          "corrigibility": "Corrigibility (utility of a future preference against the size of the reversal)",
          "robustness": "Robustness (the lowest stability of the utilities under the suite's prompt variants)"}


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


def political_map_section(records: list[dict], items: dict[str, pd.DataFrame]) -> tuple[dict[str, bytes], str]:
    """Every finished model's own position in one PCA of the consensus entity rows
    (`uetool.core.political.shared_political_map`): a map coloured by party, the models as stars, and a table."""
    from matplotlib.figure import Figure

    from ..core.political import shared_political_map
    from .analysis_plots import draw_entities, political_axes
    from .plots import _png

    anchors = [(r.get("analysis") or {}).get("settings", {}).get("anchor") for r in records]
    anchor = max(set(a for a in anchors if a), key=anchors.count, default="The Democratic Party")
    try:
        shared = shared_political_map(items, anchor)
    except ValueError as err:
        return {}, f'<p class="muted">No shared political map: {escape(str(err))}.</p>'
    fig = Figure(figsize=(9.2, 6.4))
    ax = fig.subplots()
    draw_entities(ax, shared.entities)
    models = shared.models
    ax.scatter(models["pc1"], models["pc2"], s=150, marker="*", color="black", zorder=5, label="models (themselves)")
    # models at (nearly) one spot share one label, names stacked, instead of overprinting each other
    span = max(float(np.ptp(shared.entities["pc1"])), 1e-9), max(float(np.ptp(shared.entities["pc2"])), 1e-9)
    spots: dict[tuple[int, int], list] = {}
    for _, row in models.iterrows():
        spot = (round(row["pc1"] / span[0] * 40), round(row["pc2"] / span[1] * 40))
        spots.setdefault(spot, []).append(row)
    for rows in spots.values():
        ax.annotate("\n".join(r["model"] for r in rows), (rows[0]["pc1"], rows[0]["pc2"]), fontsize=7,
                    fontweight="bold", xytext=(6, -6), textcoords="offset points", va="top")
    political_axes(ax, shared.pca.explained[0], shared.pca.explained[1], anchor)
    ax.set_title(f"every model in one map: PCA of the consensus of {len(items)} models' simulations of "
                 f"{len(shared.entities)} entities over {shared.n_policies} policies", fontsize=8)
    fig.tight_layout()
    table = models.copy()
    both = pd.concat([models.rename(columns={"model": "name"}).assign(kind="model", party=""),
                      shared.entities.drop(columns="option_set").rename(columns={"agent": "name"})],
                     ignore_index=True)[["name", "kind", "party", "pc1", "pc2", "nearest_entity", "nearest_cosine"]]
    files = {"analysis_political_values_map.png": _png(fig, dpi=110),
             "political_map.csv": both.to_csv(index=False).encode()}
    html = ('<h3>Shared map</h3><p>Each model simulated the politicians and platforms itself; the axes are fitted on '
            "the consensus of those simulations (per entity the mean of the models' standardised utilities) and each "
            "model's own utilities are projected into them.</p><figure class=\"wide\"><img src=\"analysis_political_"
            'values_map.png" alt="shared political map"><figcaption>models (stars) among the entities, coloured by '
            "party; squares are party platforms</figcaption></figure>" + table_html(table))
    return files, html


def analysis_sections(by_experiment: dict[str, list[dict]], capability_name: str, *, n_boot: int = 1000,
                      seed: int = 0, items: dict[str, dict[str, pd.DataFrame]] | None = None,
                      ) -> tuple[dict[str, bytes], list[tuple[str, str, str]]]:
    """({file name: bytes}, [(section id, title, html)]) for every experiment with records, in ANALYSES order;
    `items`: {experiment: {model: items}} for the sections drawn from every model's items (ITEM_SECTIONS)."""
    files: dict[str, bytes] = {}
    sections = []
    for experiment in [e for e in ANALYSES if e in by_experiment] + sorted(set(by_experiment) - set(ANALYSES)):
        table = analysis_table(by_experiment[experiment])
        headline = [m for m in getattr(ANALYSES.get(experiment), "headline", OTHER_HEADLINES.get(experiment, ()))
                    if m in table.columns]
        files[f"analysis_{experiment}.csv"] = table.to_csv(index=False).encode()
        trends = trend_statistics(table, headline, n_boot=n_boot, seed=seed) if headline else pd.DataFrame()
        figures = []
        for _, trend in trends.iterrows():
            metric = trend["metric"]
            if trend["n"] == 0:
                continue
            name = f"analysis_{experiment}_{metric}.png"
            files[name] = plots.trend_plot(table, metric, trend, capability_name)
            analysis = ANALYSES.get(experiment)
            reading = getattr(analysis, "readings", OTHER_READINGS).get(metric) or (
                "lower is better" if metric in getattr(analysis, "lower_is_better", ()) else "higher is better")
            figures.append((name, f"{metric} vs {capability_name} ({reading}): {_trend_text(trend)}"))
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
        if experiment == "political_values" and (items or {}).get(experiment):
            map_files, map_html = political_map_section(by_experiment[experiment], items[experiment])
            files.update(map_files)
            html += map_html
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
