"""The robustness suite's page: each variant's agreement with the base utilities, flagged variants in red, the
least stable outcomes under every variant, the per-variant, per-category and per-analysis tables (one HTML file with
its PNGs beside it, readable without uetool)."""

from __future__ import annotations

import html

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..io.files import write_atomic
from .plots import _png

__all__ = ["write_robustness_report"]


LEAST_STABLE_SHOWN = 15


def _least_stable_png(outcomes: pd.DataFrame) -> bytes:
    """The least stable outcomes: each one's standardised utility under the base (black) and every variant."""
    columns = [c for c in outcomes.columns if c.startswith("utility_")]
    z = outcomes[columns].astype(float)
    z = (z - z.mean()) / z.std(ddof=0).replace(0, 1)
    shown = outcomes["stability"].astype(float).nsmallest(min(LEAST_STABLE_SHOWN, len(outcomes))).index
    fig = Figure(figsize=(10, 0.32 * len(shown) + 2.0))
    ax = fig.subplots()
    y = np.arange(len(shown))[::-1]
    cmap = matplotlib.colormaps["tab20"]
    for j, column in enumerate(columns[1:]):
        ax.scatter(z.loc[shown, column], y, s=14, color=cmap(j % 20), label=column.removeprefix("utility_"))
    ax.scatter(z.loc[shown, "utility_base"], y, s=40, marker="D", color="black", label="base", zorder=3)
    labels = [f"{str(d)[:60]} (stability {s:.2f})" for d, s in zip(outcomes.loc[shown, "description"],
                                                                   outcomes.loc[shown, "stability"], strict=True)]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("standardised utility under each run (the base: black diamonds)")
    ax.set_title(f"The {len(shown)} least stable outcomes across the variants", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _png(fig)


def write_robustness_report(fs, out_dir: str, headline: dict, variants: pd.DataFrame, categories: pd.DataFrame,
                            outcomes: pd.DataFrame | None = None, analyses: pd.DataFrame | None = None) -> None:
    """robustness.png (each variant's Spearman with the base, flagged in red), least_stable.png and report.html."""
    shown = variants[~variants["variant"].str.startswith("seed_")]
    fig = Figure(figsize=(9, 0.35 * len(shown) + 1.8))
    ax = fig.subplots()
    y = np.arange(len(shown))
    colours = ["tab:red" if f else "tab:blue" for f in shown["flagged"]]
    err = np.abs(np.stack([shown["spearman"] - shown["spearman_low"], shown["spearman_high"] - shown["spearman"]]))
    ax.barh(y, shown["spearman"], xerr=err, color=colours, capsize=3)
    ax.axvline(0.8, color="grey", ls="--", lw=0.8, label="flag threshold (CI below 0.8)")
    ax.set_yticks(y, shown["variant"], fontsize=8)
    ax.set_xlim(-1, 1.05)
    ax.set_xlabel("Spearman correlation with the base utilities (95% CI over outcomes); red: flagged")
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_atomic(fs, f"{out_dir}/robustness.png", _png(fig))
    table = variants[["variant", "about", "spearman", "spearman_low", "spearman_high", "stability",
                      "cross_accuracy", "position_shift", "refusal_shift", "flagged", "why", "rank_movers"]]
    least = ""
    if outcomes is not None and len(outcomes) > 1:
        write_atomic(fs, f"{out_dir}/least_stable.png", _least_stable_png(outcomes))
        least = ('<h2>The least stable outcomes</h2><p>Where a variant moves an outcome far from the base, its '
                 'utility belongs to the prompt rather than to the model.</p><img src="least_stable.png" width="1000">')
    analysis_html = ""
    if analyses is not None and len(analyses):
        for name, rows in analyses.groupby("analysis", sort=False):
            shown = rows.drop(columns=["analysis"])
            analysis_html += (f"<h2>{html.escape(str(name))} under the variants</h2>"
                              + shown.to_html(index=False, float_format=lambda x: f"{x:.3f}"))
    verdict = headline.get("base_verdict")
    model, suite, outcomes = (html.escape(headline[k]) for k in ("model", "suite", "outcomes"))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd;font-size:13px}")
    flagged = html.escape(", ".join(headline["flagged_variants"]) or "none")
    numbers = lambda x: f"{x:.3f}"  # noqa: E731 - one formatter for both tables
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>Robustness: {model}</title>'
            f"<style>{style}</style></head><body><h1>Robustness of {model} on {outcomes} (suite {suite})</h1>"
            + (f'<p style="color:darkred">Base run: {html.escape(verdict)}</p>' if verdict else "")
            + f"<p>Flagged variants: {flagged}. Lowest stability {headline['min_stability']:.3f}; monotonicity "
            f"over quantity series {headline['monotonicity_rate']:.3f} ({headline['monotonicity_pairs']} ordered "
            f"pairs); position bias of the base run {headline['position_bias_base']:.3f}.</p>"
            f'<img src="robustness.png" width="900">{table.to_html(index=False, float_format=numbers)}'
            f"{least}<h2>Stability per category</h2>{categories.to_html(index=False, float_format=numbers)}"
            f"{analysis_html}</body></html>")
    write_atomic(fs, f"{out_dir}/report.html", page.encode())
