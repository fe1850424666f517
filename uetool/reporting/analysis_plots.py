"""Per-run pictures and summaries of the analyses (one PNG each, written beside the result files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core.lotteries import z_scores
from ..io.files import write_atomic
from .plots import _png

__all__ = ["write_analysis_plot", "format_analysis_summary", "draw_entities", "political_axes", "PARTY_COLOURS"]


def write_analysis_plot(fs, out_dir: str, experiment: str, items: pd.DataFrame, headline: dict) -> str:
    fig = Figure(figsize=(6.4, 4.6))  # the object API, as the sweep's figures: no pyplot state in a Ray worker
    ax = fig.subplots()
    model = headline.get("model")
    if experiment in ("expected_utility", "expected_utility_implicit"):
        eu, u = items["expected_utility"].to_numpy(), items["utility"].to_numpy()
        z_eu, z_u = z_scores(eu), z_scores(u)
        ax.scatter(z_eu, z_u, s=16, alpha=0.75)
        lim = [min(z_eu.min(), z_u.min()) - 0.2, max(z_eu.max(), z_u.max()) + 0.2]
        ax.plot(lim, lim, color="grey", lw=0.8)
        ax.set_xlabel("expected utility sum p U(o) (z-scored)")
        ax.set_ylabel("fitted utility of the lottery (z-scored)")
        ax.set_title(f"{model}: MAE {headline.get('mae_normalized', float('nan')):.3f}, order kept "
                     f"{headline.get('order_preservation', float('nan')):.1%}")
    elif experiment == "instrumentality":
        losses = items.groupby(["process", "world"])["process_loss"].first().unstack("world")
        losses = losses.sort_values(losses.columns[0])
        y = np.arange(len(losses))
        for i, world in enumerate(losses.columns):
            ax.barh(y + 0.4 * i, losses[world], height=0.4, label=f"{world} (mean "
                    f"{headline.get(f'score_{world}', float('nan')):.3f})")
        ax.set_yticks(y + 0.2, losses.index, fontsize=6)
        ax.set_xlabel("mean |Bellman error| (lower: more instrumental)")
        ax.legend(fontsize=8)
        ax.set_title(f"{model}: instrumentality per process")
    elif experiment == "maximization":
        rates = [headline.get(f"top{k}_rate", float("nan")) for k in (1, 3, 5)]
        cis = [headline.get(f"top{k}_rate_ci") or [r, r] for k, r in zip((1, 3, 5), rates, strict=True)]
        err = np.array([[r - c[0], c[1] - r] for r, c in zip(rates, cis, strict=True)]).T
        ax.bar(["top-1", "top-3", "top-5"], rates, yerr=err, capsize=4)
        ax.axhline(headline.get("chance_top1", 0), color="grey", ls="--", lw=0.8, label="top-1 by chance")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share of questions")
        ax.legend(fontsize=8)
        ax.set_title(f"{model}: free answer among its top utilities")
    elif experiment == "exchange_rates":
        _exchange_rate_bars(ax, items, model)
    elif experiment == "time_discounting":
        fig.clear()
        fig.set_size_inches(10, 4.2)
        _discounting_panels(fig.subplots(1, 2), items, headline, model)
    elif experiment == "political_values":
        fig.set_size_inches(8.8, 6.2)
        _political_map(ax, items, headline, model)
    elif experiment == "power_seeking":
        _power_scatter(ax, items, headline, model)
    elif experiment == "fitness":
        _fitness_scatter(ax, items, headline, model)
    elif experiment == "corrigibility":
        _reversal_bins(ax, items, headline, model)
    fig.tight_layout()
    path = f"{out_dir}/analysis.png"
    write_atomic(fs, path, _png(fig, dpi=110))
    return path


def _r_text(headline: dict, key: str) -> str:
    r, ci = headline.get(key), headline.get(f"{key}_ci")
    if not isinstance(r, float) or not np.isfinite(r):
        return "r \u2014"
    return f"r {r:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if isinstance(ci, list) and len(ci) == 2 else "")


PARTY_COLOURS = {"Democratic": "tab:blue", "Republican": "tab:red", "Independent": "tab:purple",
                 "Democratic Socialists": "darkblue", "Green": "tab:green", "Libertarian": "goldenrod",
                 "Constitution": "darkred", "Reform": "tab:brown"}


def draw_entities(ax, entities: pd.DataFrame, *, labels: bool = True) -> None:
    """Entities (one row each: agent, kind, party, pc1, pc2) coloured by party; platforms as squares."""
    for party, rows in entities.groupby("party", sort=True):
        colour = PARTY_COLOURS.get(party, "grey")
        platform = rows["kind"] == "platform"
        ax.scatter(rows.loc[~platform, "pc1"], rows.loc[~platform, "pc2"], s=18, color=colour,
                   label=party or "no party")
        ax.scatter(rows.loc[platform, "pc1"], rows.loc[platform, "pc2"], s=60, marker="s", color=colour,
                   edgecolor="black", linewidth=0.6)
        if labels:
            for _, row in rows.iterrows():
                ax.annotate(row["agent"], (row["pc1"], row["pc2"]), fontsize=5, xytext=(2, 2),
                            textcoords="offset points")
    ax.axvline(0, color="grey", lw=0.6)
    ax.axhline(0, color="grey", lw=0.6)


def political_axes(ax, pc1_explained: float, pc2_explained: float, anchor: str) -> None:
    ax.set_xlabel(f"PC1 ({pc1_explained:.0%} of entity variance; {anchor} < 0)")
    ax.set_ylabel(f"PC2 ({pc2_explained:.0%})")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _political_map(ax, items: pd.DataFrame, headline: dict, model) -> None:
    """Entities on the first two components (fitted on the entity rows), coloured by party, the model a star."""
    agents = items.drop_duplicates("option_set")
    draw_entities(ax, agents[agents["kind"] != "ai"])
    ai = agents[agents["kind"] == "ai"]
    ax.scatter(ai["pc1"], ai["pc2"], s=160, marker="*", color="black", label=f"{model} (itself)", zorder=5)
    political_axes(ax, headline.get("pc1_explained", float("nan")), headline.get("pc2_explained", float("nan")),
                   headline.get("settings", {}).get("anchor", "anchor"))
    ax.set_title(f"{model}: policy utilities, PCA of the simulated politicians (squares: platforms)\nnearest: "
                 f"{headline.get('nearest_entity')} (cosine {headline.get('nearest_cosine', float('nan')):.2f})",
                 fontsize=8)


def _power_scatter(ax, items: pd.DataFrame, headline: dict, model) -> None:
    """Preference against power score, power outcomes marked by kind (coercive, non-coercive)."""
    styles = {"": ("lightgrey", "other outcomes"), "non_coercive": ("tab:blue", "non-coercive power"),
              "coercive": ("tab:red", "coercive power")}
    for kind, (color, label) in styles.items():
        rows = items[items["power_kind"] == kind]
        if len(rows):
            ax.scatter(rows["power"], rows["preference"], s=10 if kind == "" else 22, color=color, alpha=0.8,
                       label=f"{label} ({len(rows)})")
    ax.set_xlabel("power score (fit of the power prompt, standardised)")
    ax.set_ylabel("preference utility (standardised)")
    ax.legend(fontsize=7)
    ax.set_title(f"{model}: preference vs power, {_r_text(headline, 'corr_preference_power')}", fontsize=9)


def _fitness_scatter(ax, items: pd.DataFrame, headline: dict, model) -> None:
    """Utility of the fitness outcomes against their score, each labelled by copies and value correlation."""
    rows = items[np.isfinite(items["fitness_score"].to_numpy(float))]
    ax.scatter(rows["fitness_score"], rows["utility"], s=22)
    for _, row in rows.iterrows():
        ax.annotate(f"{row['copies']:,.0f} x c={row['value_correlation']:g}", (row["fitness_score"], row["utility"]),
                    fontsize=5, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("fitness score c (1 + log10 copies)")
    ax.set_ylabel("utility (standardised over all outcomes)")
    ax.set_title(f"{model}: utility vs fitness, {_r_text(headline, 'corr_fitness_utility')}", fontsize=9)


def _reversal_bins(ax, items: pd.DataFrame, headline: dict, model) -> None:
    """Difference options' utility against reversal size: the options, and their means per quantile bin."""
    from ..core.corrigibility import binned_reversals

    ax.scatter(items["reversal"], items["utility"], s=8, alpha=0.35, color="grey", label="difference options")
    bins = binned_reversals(items["utility"], items["reversal"])
    ax.errorbar(bins["reversal"], bins["utility"], yerr=1.96 * bins["se"].fillna(0), marker="o", capsize=3,
                label="mean per bin (95% CI)")
    ax.set_xlabel("size of the reversal U(preferred) - U(dispreferred)")
    ax.set_ylabel("utility of the future preference")
    ax.legend(fontsize=7)
    ax.set_title(f"{model}: corrigibility, {_r_text(headline, 'corr_utility_reversal')} "
                 "(< 0: resists larger changes)", fontsize=9)


def _exchange_rate_bars(ax, items: pd.DataFrame, model) -> None:
    """The first category/measure's rates against its pivot on a log axis, one bar per framing, with 95% CIs;
    groups without a rate (non-positive slope) are named in the title."""
    first = items[(items["category"] == items["category"].iloc[0]) & (items["measure"] == items["measure"].iloc[0])]
    first = first[~first["is_pivot"]]
    framings = list(dict.fromkeys(first["framing"]))
    order = (first[first["framing"] == framings[0]].sort_values("rate", na_position="first")["group"].tolist())
    y = np.arange(len(order))
    height = 0.8 / len(framings)
    for i, framing in enumerate(framings):
        rows = first[first["framing"] == framing].set_index("group").reindex(order)
        log_rate = np.log10(rows["rate"].to_numpy())
        err = np.stack([log_rate - np.log10(rows["rate_ci_low"].to_numpy()),
                        np.log10(rows["rate_ci_high"].to_numpy()) - log_rate])
        ax.barh(y + i * height, log_rate, height=height, label=framing, xerr=np.abs(err), capsize=1.5)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y + 0.4 - height / 2, order, fontsize=5 if len(order) > 20 else 7)
    ax.set_xlabel(f"log10 units of {first['pivot'].iloc[0]} worth one unit of the group")
    ax.legend(fontsize=7)
    missing = first.loc[first["status"] != "ok", "group"].unique().tolist()
    title = f"{model}: {first['category'].iloc[0]} / {first['measure'].iloc[0]}"
    ax.set_title(title + (f" (no rate: {', '.join(missing[:4])})" if missing else ""), fontsize=9)


def _discounting_panels(axes, items: pd.DataFrame, headline: dict, model) -> None:
    """Left: P(choose the delayed amount) per delay and amount. Right: the empirical discount factor 1/m* per delay
    with the fitted exponential and hyperbolic curves."""
    heat, curves = axes
    grid = items.pivot_table(index="delay_months", columns="delayed_amount", values="p_delayed")
    image = heat.imshow(grid.to_numpy().T, origin="lower", aspect="auto", cmap="RdBu", vmin=0, vmax=1,
                        extent=(grid.index.min() - 0.5, grid.index.max() + 0.5, -0.5, grid.shape[1] - 0.5))
    ticks = np.linspace(0, grid.shape[1] - 1, min(6, grid.shape[1])).round().astype(int)
    heat.set_yticks(ticks, [f"${grid.columns[i]:,.0f}" for i in ticks], fontsize=7)
    heat.set_xlabel("delay (months)")
    heat.set_ylabel("delayed amount (vs $1,000 now)")
    heat.figure.colorbar(image, ax=heat, label="P(choose delayed)")
    per_delay = items.groupby("delay_months")[["discount_factor", "fit_exponential", "fit_hyperbolic"]].first()
    curves.scatter(per_delay.index, per_delay["discount_factor"], s=12, color="black", label="1 / m* (data)")
    k_e, k_h = headline.get("k_exponential", float("nan")), headline.get("k_hyperbolic", float("nan"))
    curves.plot(per_delay.index, per_delay["fit_exponential"], label=f"exp(-k t), k={k_e:.3g}, MAE "
                f"{headline.get('mae_exponential', float('nan')):.3f}")
    curves.plot(per_delay.index, per_delay["fit_hyperbolic"], label=f"1/(1+k t), k={k_h:.3g}, MAE "
                f"{headline.get('mae_hyperbolic', float('nan')):.3f}")
    curves.set_xlabel("delay (months)")
    curves.set_ylabel("discount factor D(t)")
    curves.legend(fontsize=7)
    curves.set_title(f"{model}: best fit {headline.get('best_family')}", fontsize=9)


def format_analysis_summary(analysis, metrics: dict, headline: dict) -> str:
    lines = [f"experiment: {headline.get('experiment')}   model: {headline.get('model')}   engine: "
             f"{metrics.get('engine')} ({metrics.get('mode')})", ""]
    for key, value in headline.items():
        if key in ("experiment", "model", "settings") or key.endswith("_ci") or isinstance(value, list | dict):
            continue
        line = f"  {key:<36}{value:.4f}" if isinstance(value, float) else f"  {key:<36}{value}"
        ci = headline.get(f"{key}_ci")
        if ci and all(isinstance(v, float) for v in ci):
            line += f"  (95% CI {ci[0]:.4f} to {ci[1]:.4f})"
        lines.append(line)
    accuracy = metrics.get("holdout_accuracy")
    accuracy = accuracy if accuracy is None else round(accuracy, 4)
    lines += ["", f"  option sets {metrics.get('n_option_sets')}, options {metrics.get('n_options')}, edges "
                  f"{metrics.get('n_edges')}, mean holdout accuracy {accuracy}",
              f"  requests asked {metrics.get('asked_requests')}, served from the store "
              f"{metrics.get('reused_requests')}, failed {metrics.get('failed_requests')}"]
    if metrics.get("failure_examples"):
        lines += ["  first errors:"] + [f"    {e}" for e in metrics["failure_examples"]]
    return "\n".join(lines) + "\n"
