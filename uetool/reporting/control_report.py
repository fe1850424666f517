"""The control job's report page: loss curve, throughput, agreement before and after, capability, the political
position before and after (one HTML file with its PNGs beside it, readable without uetool)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..io.files import write_atomic
from .plots import _png

__all__ = ["write_control_report"]


def _loss_figure(steps: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(9, 3.4))
    left, right = fig.subplots(1, 2)
    left.plot(steps["step"], steps["loss"], marker=".", color="tab:blue")
    left.set(xlabel="step", ylabel="training loss (completion tokens)", title="loss")
    rates = steps.dropna(subset=["tokens_per_s_per_worker"])
    right.plot(rates["step"], rates["tokens_per_s_per_worker"], marker=".", color="tab:green")
    right.set(xlabel="step", ylabel="tokens/s per worker", title="throughput")
    fig.tight_layout()
    return fig


def _agreement_figure(headline: dict, frame: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(9, 3.4))
    bars, scatter = fig.subplots(1, 2)
    values = [headline["agreement_before"], headline["agreement_after"]]
    means = [v["agreement"] for v in values]
    errors = np.array([[m - v["agreement_ci"][0], v["agreement_ci"][1] - m] for m, v in zip(means, values,
                                                                                          strict=True)]).T
    bars.bar(["before", "after"], means, yerr=errors, color=["tab:gray", "tab:blue"], capsize=6)
    bars.axhline(0.5, color="k", lw=0.8, ls=":")
    bars.set(ylim=(0, 1), ylabel="agreement with the assembly majority", title="held-out questions (95% CI)")
    scatter.scatter(frame["assembly_p_a"], frame["p_a_before"], s=12, alpha=0.6, label="before", color="tab:gray")
    scatter.scatter(frame["assembly_p_a"], frame["p_a_after"], s=12, alpha=0.6, label="after", color="tab:blue")
    scatter.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
    scatter.set(xlabel="assembly's share of votes for a", ylabel="model's P(a)", title="per question")
    scatter.legend()
    fig.tight_layout()
    return fig


def _political_figure(political: dict, items: pd.DataFrame, model: str) -> Figure:
    """The base model's entity PCA: entities by party, the model before (hollow star) and after tuning (filled),
    an arrow between them."""
    from .analysis_plots import draw_entities, political_axes

    fig = Figure(figsize=(8.8, 6.2))
    ax = fig.subplots()
    agents = items.drop_duplicates("option_set")
    draw_entities(ax, agents[agents["kind"] != "ai"])
    (x0, x1), (y0, y1) = political["ai_pc1"], political["ai_pc2"]
    ax.scatter([x0], [y0], s=180, marker="*", facecolor="white", edgecolor="black", zorder=5,
               label=f"{model} before")
    ax.scatter([x1], [y1], s=180, marker="*", color="black", zorder=6, label=f"{model} after tuning")
    ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
    political_axes(ax, political["pc1_explained"], political["pc2_explained"], political["anchor"])
    ax.set_title(f"political position before and after tuning (PCA of {political['n_entities']} entities "
                 f"simulated by the base model, {political['n_policies']} policies)", fontsize=8)
    fig.tight_layout()
    return fig


def write_control_report(fs, out_dir: str, headline: dict, steps: pd.DataFrame, frame: pd.DataFrame,
                         political_items: pd.DataFrame | None = None) -> str:
    write_atomic(fs, f"{out_dir}/loss.png", _png(_loss_figure(steps)))
    write_atomic(fs, f"{out_dir}/agreement.png", _png(_agreement_figure(headline, frame)))
    political = headline.get("political")
    political_html = ""
    if political and political_items is not None:
        write_atomic(fs, f"{out_dir}/political.png", _png(_political_figure(political, political_items,
                                                                           headline["model"])))
        political_html = (f"<h2>Political position</h2><p>The tuned model's own utilities over "
                          f"{political['n_policies']} policies, placed in the PCA of {political['n_entities']} "
                          "politicians and platforms as the base model simulates them (PC1 oriented so that "
                          f"{html.escape(political['anchor'])} is negative).</p>"
                          '<img src="political.png" width="880">')
    rows = []

    def row(name: str, before, after) -> None:
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{before}</td><td>{after}</td></tr>")

    def agreement(x: dict) -> str:
        return f"{x['agreement']:.3f} [{x['agreement_ci'][0]:.3f}, {x['agreement_ci'][1]:.3f}] (n={x['n_questions']})"

    row("agreement with the assembly majority", agreement(headline["agreement_before"]),
        agreement(headline["agreement_after"]))
    if headline.get("capability_before"):
        cb, ca = headline["capability_before"], headline["capability_after"]
        row("held-out text loss", f"{cb['text_loss']:.3f}", f"{ca['text_loss']:.3f}")
        row("two-option accuracy", f"{cb['mc_accuracy']:.2f}", f"{ca['mc_accuracy']:.2f}")
    for name, values in (headline.get("coherence") or {}).items():
        row(name, f"{values[0]:.3f}", f"{values[1]:.3f}")
    for name, values in (headline.get("maximization") or {}).items():
        row(f"utility maximisation: {name}", f"{values[0]:.3f}", f"{values[1]:.3f}")
    if political:
        row("political position PC1", f"{political['ai_pc1'][0]:.3f}", f"{political['ai_pc1'][1]:.3f}")
        row("political position PC2", f"{political['ai_pc2'][0]:.3f}", f"{political['ai_pc2'][1]:.3f}")
        row("nearest entity (cosine)", html.escape(f"{political['nearest_entity'][0]} "
                                                   f"({political['nearest_cosine'][0]:.2f})"),
            html.escape(f"{political['nearest_entity'][1]} ({political['nearest_cosine'][1]:.2f})"))
    title = f"Utility control: {headline['model']} toward assembly {headline['assembly']}"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
td,th{{padding:4px 12px;border-bottom:1px solid #ddd}}</style></head><body><h1>{html.escape(title)}</h1>
<p>{headline['n_train_questions']} training questions ({headline['n_train_examples']} examples labelled in proportion
to the assembly's votes), {headline['n_test_questions']} held-out questions; assembly answered by
{html.escape(str(headline['assembly_model']))}. Ties of the assembly are left out of agreement.</p>
<table><tr><th></th><th>before</th><th>after</th></tr>{''.join(rows)}</table>
<h2>Agreement</h2><img src="agreement.png" width="900">
<h2>Training</h2><p>loss {headline['train_loss_first']:.3f} &rarr; {headline['train_loss_last']:.3f} over
{headline['train_steps']} steps on {headline['num_workers']} workers; median {headline['train_tokens_per_s']:.0f}
tokens/s per worker.</p><img src="loss.png" width="900">{political_html}
</body></html>"""
    write_atomic(fs, f"{out_dir}/report.html", page.encode())
    return f"{out_dir}/report.html"
