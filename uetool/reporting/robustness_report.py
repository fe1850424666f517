"""The robustness suite's page: each variant's agreement with the base utilities, flagged variants in red, and the
per-variant and per-category tables (one HTML file with its PNG beside it, readable without uetool)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..io.files import write_atomic
from .plots import _png

__all__ = ["write_robustness_report"]


def write_robustness_report(fs, out_dir: str, headline: dict, variants: pd.DataFrame, categories: pd.DataFrame) -> None:
    """robustness.png (each variant's Spearman with the base, flagged in red) and report.html beside it."""
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
                      "cross_accuracy", "position_shift", "flagged", "why", "rank_movers"]]
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
            f"<h2>Stability per category</h2>{categories.to_html(index=False, float_format=numbers)}</body></html>")
    write_atomic(fs, f"{out_dir}/report.html", page.encode())
