"""Per-run outputs for people: a PNG of utilities by category and a short text summary."""

from __future__ import annotations

import io

import pandas as pd

from ..io.files import write_atomic

__all__ = ["write_utility_plot", "write_summary", "format_summary"]


def write_utility_plot(fs, out_dir: str, utilities: pd.DataFrame, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = utilities.copy()
    frame["category"] = frame["category"].replace("", "uncategorised")
    order = frame.groupby("category")["mean"].median().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(order) + 1.2)))
    for y, category in enumerate(order):
        rows = frame[frame["category"] == category]
        ax.scatter(rows["mean"], [y] * len(rows), s=14, alpha=0.75)
        if rows["ci_low"].notna().any():
            ax.hlines([y] * len(rows), rows["ci_low"], rows["ci_high"], alpha=0.25)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("utility (standardised mean)")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = f"{out_dir}/utilities_by_category.png"
    write_atomic(fs, path, buf.getvalue())
    return path


def format_summary(utilities: pd.DataFrame, metrics: dict, n_show: int = 5) -> str:
    ranked = utilities.sort_values("mean", ascending=False)
    lines = [f"model: {metrics.get('model')}   outcomes: {metrics.get('outcomes')}   engine: {metrics.get('engine')}"
             f" ({metrics.get('elicitation_mode')})", ""]
    keys = ["n_outcomes", "n_edges", "n_triads", "holdout_accuracy", "holdout_log_loss", "average_confidence",
            "average_confidence_random_pairs", "log10_cycle_probability", "hard_cycle_rate", "unparseable_rate",
            "refusal_rate", "failed_request_rate", "position_bias"]
    for key in keys:
        value = metrics.get(key)
        line = f"  {key:<32}{value:.4f}" if isinstance(value, float) else f"  {key:<32}{value}"
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
