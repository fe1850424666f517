"""Sweep figures as PNG bytes: a metric against capability, the utility-similarity heatmap, neighbour spread.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot): no global backend switch, no
shared figure state, safe inside a Ray actor or a thread.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["trend_plot", "trend_caption", "similarity_heatmap", "neighbour_std_plot", "REFERENCE_LINES"]

# Values a metric takes for an agent with no preferences or no bias, drawn as a dashed line for orientation.
REFERENCE_LINES = {
    "holdout_accuracy": (0.5, "chance"),
    "train_accuracy": (0.5, "chance"),
    "average_confidence": (0.5, "indifferent"),
    "log10_cycle_probability": (math.log10(0.25), "fair coins (log10 0.25)"),
    "position_bias": (0.5, "no position bias"),
    "position_bias_original": (0.5, "no position bias"),
    "position_bias_flipped": (0.5, "no position bias"),
}


def _png(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _fmt_ci(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.2f}"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def trend_caption(trend: pd.Series | dict | None) -> str:
    """"Pearson r = 0.91 [0.72, 0.98], Spearman rho = ..." or why there is no trend."""
    if trend is None:
        return "no trend statistics"
    if not math.isfinite(trend["pearson_r"]):
        return str(trend["note"]) or "correlation undefined"
    return (f"Pearson r = {_fmt_ci(trend['pearson_r'], trend['pearson_ci_low'], trend['pearson_ci_high'])}, "
            f"Spearman \u03c1 = {_fmt_ci(trend['spearman_rho'], trend['spearman_ci_low'], trend['spearman_ci_high'])}"
            f" (95% bootstrap CI, n = {int(trend['n'])})")


def _scatter_with_trend(ax, x: np.ndarray, y: np.ndarray, labels: list[str], trend, capability_name: str) -> None:
    ax.scatter(x, y, s=22, color="#2b6cb0", zorder=3, label="model")
    size = 7 if len(x) <= 20 else 5.5
    for i, (xi, yi, text) in enumerate(zip(x, y, labels, strict=True)):
        # Alternate label sides so neighbouring points' names overlap less.
        ax.annotate(text, (xi, yi), xytext=(4, 4 if i % 2 == 0 else -9), textcoords="offset points",
                    fontsize=size, color="#333333")
    if trend is not None and math.isfinite(trend["slope"]):
        grid = np.linspace(x.min(), x.max(), 2)
        ax.plot(grid, trend["intercept"] + trend["slope"] * grid, color="#c53030", lw=1.5, zorder=2,
                label=f"least squares: slope {trend['slope']:.3g} per {capability_name} point")
    ax.set_xlabel(capability_name)
    ax.grid(alpha=0.3)


def trend_plot(table: pd.DataFrame, metric: str, trend: pd.Series | dict | None, capability_name: str) -> bytes:
    """`metric` against capability for finished models, points labelled by model, with the least-squares line."""
    done = table[(table["status"] == "done") & np.isfinite(table["capability"]) & np.isfinite(table[metric])]
    fig = Figure(figsize=(7.2, 4.8))
    ax = fig.subplots()
    _scatter_with_trend(ax, done["capability"].to_numpy(float), done[metric].to_numpy(float),
                        done["model"].tolist(), trend, capability_name)
    if metric in REFERENCE_LINES:
        value, text = REFERENCE_LINES[metric]
        ax.axhline(value, color="grey", ls="--", lw=1, label=text)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {capability_name}\n{trend_caption(trend)}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def similarity_heatmap(similarity: pd.DataFrame, capability: dict[str, float], capability_name: str) -> bytes:
    """Cosine similarity of standardised utility vectors, models ordered by capability (low to high)."""
    n = len(similarity)
    side = max(5.5, 0.2 * n + 3.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(similarity.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    labels = [f"{m} ({capability[m]:.1f})" if math.isfinite(capability[m]) else f"{m} (n/a)"
              for m in similarity.index]
    size = 8 if n <= 15 else max(4.5, 8 - 0.06 * n)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=size)
    ax.set_yticks(range(n), labels, fontsize=size)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                value = similarity.iat[i, j]
                ax.text(j, i, "" if not math.isfinite(value) else f"{value:.2f}", ha="center", va="center",
                        fontsize=7, color="white" if abs(value) > 0.6 else "black")
    shared = similarity.attrs.get("n_shared_outcomes", "?")
    ax.set_title(f"Utility similarity ({shared} shared outcomes; models by {capability_name}, low to high)",
                 fontsize=10)
    fig.tight_layout()
    return _png(fig)


def neighbour_std_plot(spread: pd.DataFrame, trend: pd.Series | dict | None, capability_name: str) -> bytes:
    """Mean element-wise std between each model's utilities and its nearest neighbours in capability."""
    rows = spread[np.isfinite(spread["capability"].astype(float)) & np.isfinite(spread["neighbour_std"].astype(float))]
    fig = Figure(figsize=(7.2, 4.8))
    ax = fig.subplots()
    _scatter_with_trend(ax, rows["capability"].to_numpy(float), rows["neighbour_std"].to_numpy(float),
                        rows["model"].tolist(), trend, capability_name)
    k = int(rows["n_neighbours"].max()) if len(rows) else 0
    ax.set_ylabel("mean element-wise std (standardised utilities)")
    ax.set_title(f"Utility spread among each model and its {k} nearest neighbours in {capability_name}\n"
                 f"{trend_caption(trend)}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def category_heatmap(means: pd.DataFrame) -> bytes:
    """Mean standardised utility per category (rows) and model (columns, by capability)."""
    fig = Figure(figsize=(max(6.0, 0.9 * means.shape[1] + 4.5), max(3.5, 0.28 * means.shape[0] + 1.5)))
    ax = fig.subplots()
    values = means.to_numpy(float)
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(means.shape[1]), means.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(means.shape[0]), means.index, fontsize=7)
    fig.colorbar(image, ax=ax, label="mean standardised utility")
    fig.tight_layout()
    return _png(fig)
