"""Per-run outputs for people: a PNG of utilities by category and a short text summary."""

from __future__ import annotations

import io
import textwrap

import pandas as pd

from ..io.files import write_atomic

__all__ = ["write_utility_plot", "write_summary", "format_summary"]


LABELLED_UP_TO = 60  # outcome sets up to this size get one labelled row per outcome; larger ones a strip per category


def write_utility_plot(fs, out_dir: str, utilities: pd.DataFrame, title: str, verdict: str | None = None) -> str:
    """utilities_by_category.png: small sets one labelled row per outcome with its CI, grouped by category (the
    categories ordered by their median utility); large sets one strip of points per category. A verdict (the model
    prefers nothing, answers off-label or by position) is printed over the picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = utilities.copy()
    frame["category"] = frame["category"].replace("", "uncategorised")
    order = frame.groupby("category")["mean"].median().sort_values().index.tolist()
    if len(frame) <= LABELLED_UP_TO:
        fig, ax = _labelled_rows(plt, frame, order)
    else:
        fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(order) + 1.2)))
        for y, category in enumerate(order):
            rows = frame[frame["category"] == category]
            ax.scatter(rows["mean"], [y] * len(rows), s=14, alpha=0.75)
            if rows["ci_low"].notna().any():
                ax.hlines([y] * len(rows), rows["ci_low"], rows["ci_high"], alpha=0.25)
        ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("utility (standardised mean; bars: 95% bootstrap CI)")
    ax.set_title(title, fontsize=10)
    if verdict:
        fig.text(0.5, 0.995, "\n".join(textwrap.wrap(verdict, 110)), ha="center", va="top", fontsize=8,
                 color="darkred", bbox={"facecolor": "mistyrose", "edgecolor": "darkred", "boxstyle": "round"})
    fig.tight_layout(rect=(0, 0, 1, 0.96 if verdict else 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # long outcome labels are never cut off
    plt.close(fig)
    path = f"{out_dir}/utilities_by_category.png"
    write_atomic(fs, path, buf.getvalue())
    return path


def _labelled_rows(plt, frame: pd.DataFrame, order: list[str]):
    """One row per outcome, labelled with its (shortened) description, best category on top, a gap and a
    coloured name between categories."""
    colours = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    rows, y, ticks, labels, headers = [], 0.0, [], [], []
    for i, category in enumerate(order):  # drawn bottom up: the lowest category first
        block = frame[frame["category"] == category].sort_values("mean")
        for _, row in block.iterrows():
            rows.append((y, row, colours(i % colours.N)))
            ticks.append(y)
            text = str(row["description"])
            labels.append(text if len(text) <= 60 else text[:57] + "...")
            y += 1
        headers.append((y - 0.35, category, colours(i % colours.N)))
        y += 1.2
    fig, ax = plt.subplots(figsize=(11, max(4.0, 0.24 * y + 1.5)))
    for position, row, colour in rows:
        if pd.notna(row.get("ci_low")):
            ax.hlines(position, row["ci_low"], row["ci_high"], color=colour, alpha=0.45, lw=2)
        ax.plot(row["mean"], position, "o", color=colour, ms=4)
    for position, category, colour in headers:
        ax.text(0.0, position, category.replace("_", " "), transform=ax.get_yaxis_transform(), fontsize=8,
                fontweight="bold", color=colour, va="bottom", ha="left")
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_ylim(-1, y)
    return fig, ax


def format_summary(utilities: pd.DataFrame, metrics: dict, n_show: int = 5) -> str:
    ranked = utilities.sort_values("mean", ascending=False)
    mode = metrics.get("elicitation_mode")
    lines = [f"model: {metrics.get('model')}   outcomes: {metrics.get('outcomes')}   engine: {metrics.get('engine')}"
             f" ({mode})", ""]
    if metrics.get("verdict"):
        lines += [f"VERDICT: {metrics['verdict']}", ""]
    lines.append("does it prefer anything?")
    for key in ("preference_strength", "decided_share", "decided_share_chance", "off_label_share", "position_bias"):
        value = metrics.get(key)
        lines.append(f"  {key:<32}{value:.4f}" if isinstance(value, float) else f"  {key:<32}{value}")
    lines += ["", "coherence:"]
    keys = ["n_outcomes", "n_edges", "n_triads", "holdout_accuracy", "holdout_log_loss", "average_confidence",
            "average_confidence_random_pairs", "log10_cycle_probability", "hard_cycle_rate", "unparseable_rate",
            "refusal_rate", "failed_request_rate"]
    for key in keys:
        value = metrics.get(key)
        if key == "failed_request_rate" and value is None:
            continue  # per invocation: printed by the job, not in a re-read metrics.json
        line = f"  {key:<32}{value:.4f}" if isinstance(value, float) else f"  {key:<32}{value}"
        if key == "holdout_accuracy" and mode == "logprob":
            line += "  (logprob: sign agreement of the fit with exact P(A), not sampled accuracy)"
        ci = metrics.get(f"{key}_ci")
        if ci and all(isinstance(v, float) for v in ci):
            line += f"  (95% CI {ci[0]:.4f} to {ci[1]:.4f})"
        lines.append(line)
    if metrics.get("engine_retries"):
        lines += ["", f"engine retries: {metrics['engine_retries']} (transient API errors retried with backoff)"]
    if metrics.get("failed_requests"):
        lines += ["", f"failed requests: {metrics['failed_requests']} ({metrics.get('given_up_requests', 0)} given up "
                      f"after elicitation.max_attempts); they count nothing in their edges. First errors:"]
        lines += [f"  {error}" for error in metrics.get("failure_examples", [])]
    lines += ["", "top outcomes:"]
    lines += [f"  {r['mean']:+.2f}  {r['description']}" for _, r in ranked.head(n_show).iterrows()]
    lines += ["bottom outcomes:"]
    lines += [f"  {r['mean']:+.2f}  {r['description']}" for _, r in ranked.tail(n_show).iterrows()]
    return "\n".join(lines) + "\n"


def write_summary(fs, out_dir: str, utilities: pd.DataFrame, metrics: dict) -> str:
    text = format_summary(utilities, metrics)
    write_atomic(fs, f"{out_dir}/summary.txt", text.encode())
    return text
