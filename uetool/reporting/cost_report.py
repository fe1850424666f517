"""The sweep report's cost section: tokens per model and experiment against the paper's method, and the planner's
prediction (jobs.plan's cost model, recorded when the sweep started) against what each run measured."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .page import table_html
from .plots import _png

__all__ = ["cost_section", "COST_COLUMNS"]

COST_COLUMNS = ("model", "experiment", "tokens_computed", "tokens_prompt_reused", "reference_method_tokens",
                "share_of_reference", "predicted_tokens", "tokens_vs_predicted", "predicted_wall_s", "measured_wall_s",
                "wall_vs_predicted")


def _ratio(a, b) -> float:
    return float(a) / float(b) if a is not None and b not in (None, 0) and np.isfinite(float(b)) else float("nan")


def cost_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        metrics = r.get("metrics") or {}
        predicted = r.get("predicted") or {}
        measured_wall = (r.get("seconds") or {}).get("total")
        tokens = metrics.get("tokens_computed")
        rows.append({"model": r["model"], "experiment": r.get("experiment", "compute_utilities"),
                     "tokens_computed": tokens, "tokens_prompt_reused": metrics.get("tokens_prompt_reused"),
                     "reference_method_tokens": metrics.get("reference_method_tokens"),
                     "share_of_reference": metrics.get("tokens_computed_share_of_reference"),
                     "predicted_tokens": predicted.get("tokens_computed"),
                     "tokens_vs_predicted": _ratio(tokens, predicted.get("tokens_computed")),
                     "predicted_wall_s": predicted.get("wall_s"), "measured_wall_s": measured_wall,
                     "wall_vs_predicted": _ratio(measured_wall, predicted.get("wall_s"))})
    table = pd.DataFrame(rows, columns=list(COST_COLUMNS))
    for column in ("tokens_computed", "tokens_prompt_reused", "reference_method_tokens", "predicted_tokens"):
        table[column] = table[column].astype("Int64")  # counts, with <NA> where an engine counts none
    return table


def _plot(table: pd.DataFrame) -> bytes | None:
    both = table.dropna(subset=["predicted_wall_s", "measured_wall_s"])
    both = both[(both["predicted_wall_s"] > 0) & (both["measured_wall_s"] > 0)]
    if both.empty:
        return None
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    x, y = both["predicted_wall_s"].to_numpy(float), both["measured_wall_s"].to_numpy(float)
    ax.scatter(x, y, color="tab:blue")
    for xi, yi, label in zip(x, y, both["model"] + " / " + both["experiment"], strict=True):
        ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
    low, high = min(x.min(), y.min()) / 1.5, max(x.max(), y.max()) * 1.5
    ax.plot([low, high], [low, high], color="grey", lw=0.8, label="measured = predicted")
    ax.fill_between([low, high], [low / 1.2, high / 1.2], [low * 1.2, high * 1.2], color="grey", alpha=0.15,
                    label="within 20%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted wall time (s, jobs.plan's cost model)")
    ax.set_ylabel("measured wall time (s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _counts_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Token counts with thousands separators, a dash where an engine counted none (for the page; the CSV keeps
    the numbers)."""
    shown = frame.copy()
    for column in shown.columns:
        if str(shown[column].dtype) == "Int64":
            shown[column] = ["\u2014" if pd.isna(v) else f"{int(v):,}" for v in shown[column]]
    return shown


def cost_section(records: list[dict]) -> tuple[dict[str, bytes], str]:
    """({file name: bytes}, html) of the cost section; empty when no record carries tokens or a prediction."""
    table = cost_table(records)
    if table.empty or (table["tokens_computed"].isna().all() and table["predicted_wall_s"].isna().all()):
        return {}, ""
    files = {"cost.csv": table.to_csv(index=False).encode()}
    by_experiment = table.groupby("experiment", sort=True)[["tokens_computed", "reference_method_tokens"]].sum(
        min_count=1).reset_index()
    by_experiment["share_of_reference"] = (by_experiment["tokens_computed"].astype(float)
                                           / by_experiment["reference_method_tokens"].astype(float))
    html = ("<p>Tokens each run computed (prompt tokens after prefix-cache reuse plus generated tokens, summed over "
            "its stored answers) against the paper's method on its own budget (int(2 n log2 n) pairs, both orders, "
            "K=10 samples of up to 10 tokens, every prompt recomputed), and the planner's prediction (jobs.plan, "
            "recorded when the sweep started) against what each run took. Ratios far from 1 say which part of the "
            "cost model (conf/cost/default.yaml) to fix.</p>")
    png = _plot(table)
    if png is not None:
        files["cost_predicted_vs_measured.png"] = png
        html += ('<figure><img src="cost_predicted_vs_measured.png" alt="predicted against measured wall time">'
                 "<figcaption>wall time per run: the planner's prediction against the measurement</figcaption>"
                 "</figure>")
    html += "<h3>Per experiment</h3>" + table_html(_counts_as_text(by_experiment))
    html += "<h3>Per model and experiment</h3>" + table_html(_counts_as_text(table))
    missing = table.loc[table["tokens_computed"].isna(), "model"].unique().tolist()
    if missing:
        html += (f'<p class="muted">No token counts (their engines count none, e.g. simulated agents): '
                 f"{escape(', '.join(missing))}.</p>")
    return files, html
