"""Does the model prefer anything? Strength of preference, off-label answers and position bias, with a verdict
(pure; no Ray).

A fit always returns utilities, and its held-out accuracy can look high for a model with no preferences at all: in
logprob mode every P(A) is exact, so an edge at 0.51 "agrees" with a fit at 0.502. These numbers say, before any
utility is read, whether there was anything to fit:

- `preference_strength`: mean |P(A) - 0.5| over the asked edges, P(A) pooled over both orders among the valid
  replies (0: indifferent everywhere, 0.5: every answer certain).
- `decided_share`: share of those edges decided beyond 0.6 / 0.4; `decided_share_chance`: the share fair coins
  would reach with the same number of sampled replies per edge (0 in logprob mode, where P(A) is exact).
- `off_label_share`: logprob mode, the mean next-token mass on neither label; sample mode, the share of replies
  that were unparseable or refusals.
- `position_bias` (`uetool.core.edges.position_bias`, already in every run's metrics): P(the first-shown option is
  chosen) among valid replies.

Verdict (each reason a sentence; thresholds in `THRESHOLDS`, documented in the README):
indifferent when `decided_share` <= `decided_share_chance` + 0.10; off-label when `off_label_share` > 0.5; by
position when |`position_bias` - 0.5| > 0.3.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

__all__ = ["THRESHOLDS", "decisiveness_metrics", "verdict_reasons", "format_verdict", "verdict_flags"]

THRESHOLDS = {"decided_beyond": 0.1,  # |P(A) - 0.5| >= 0.1: the edge is decided (P >= 0.6 or <= 0.4)
              "indifferent_margin": 0.10,  # decided_share at most this far above the fair-coin share: indifferent
              "off_label": 0.5,  # more than half the answer mass on neither label
              "position": 0.3}  # |P(first) - 0.5| above this: answers by position


def _chance_decided(valid: np.ndarray, beyond: float) -> float:
    """Expected share of edges whose pooled P(A) lands beyond 0.5 +- `beyond` when every reply is a fair coin."""
    n = np.round(valid).astype(np.int64)
    n = n[n > 0]
    if not len(n):
        return float("nan")
    shares = []
    for size in np.unique(n):  # a few distinct sizes (K per order x 2): exact binomial tails
        low = np.floor(size * (0.5 - beyond) + 1e-9)
        high = np.ceil(size * (0.5 + beyond) - 1e-9)
        tail = binom.cdf(low, size, 0.5) + binom.sf(high - 1, size, 0.5)
        shares.append((min(tail, 1.0), int(np.sum(n == size))))
    weights = np.array([w for _, w in shares], np.float64)
    return float(np.dot([s for s, _ in shares], weights) / weights.sum())


def decisiveness_metrics(counts: np.ndarray, *, mode: str) -> dict:
    """The metrics above but position bias, from answer counts (rows: n_a_orig, n_b_orig, n_a_flip, n_b_flip,
    n_unparseable, n_refusal; in logprob mode K x probabilities)."""
    counts = np.asarray(counts, np.float64).reshape(-1, 6)
    votes_a = counts[:, 0] + counts[:, 2]  # option a chosen, in either order
    valid = counts[:, :4].sum(1)
    asked = valid > 0
    p = votes_a[asked] / valid[asked]
    beyond = THRESHOLDS["decided_beyond"]
    total = counts.sum()
    out = {"preference_strength": float(np.mean(np.abs(p - 0.5))) if len(p) else float("nan"),
           "decided_share": float(np.mean(np.abs(p - 0.5) >= beyond - 1e-12)) if len(p) else float("nan"),
           "decided_share_chance": 0.0 if mode == "logprob" else _chance_decided(valid[asked], beyond)}
    if mode == "logprob":
        shown = counts[:, :5].sum(1)
        ok = shown > 0
        out["off_label_share"] = float(np.mean(counts[ok, 4] / shown[ok])) if ok.any() else float("nan")
    else:
        out["off_label_share"] = float(counts[:, 4:].sum() / total) if total > 0 else float("nan")
    return out


def verdict_reasons(metrics: dict, *, mode: str) -> list[str]:
    """Why the utilities are not meaningful (empty: nothing found)."""
    reasons = []
    t = THRESHOLDS
    decided, chance = metrics.get("decided_share"), metrics.get("decided_share_chance")
    if decided is not None and chance is not None and np.isfinite(decided) and decided <= chance + \
            t["indifferent_margin"]:
        strength = metrics.get("preference_strength", float("nan"))
        reasons.append(f"the model is effectively indifferent ({decided:.0%} of edges decided beyond "
                       f"{0.5 + t['decided_beyond']:.1f}/{0.5 - t['decided_beyond']:.1f}"
                       + (f", {chance:.0%} by chance" if chance > 0 else "")
                       + f"; mean |P(A) - 0.5| = {strength:.3f})")
    off = metrics.get("off_label_share")
    if off is not None and np.isfinite(off) and off > t["off_label"]:
        what = ("of the next-token mass falls on neither label" if mode == "logprob"
                else "of the replies are unparseable or refusals")
        reasons.append(f"it answers off-label ({off:.0%} {what})")
    bias = metrics.get("position_bias")
    if bias is not None and np.isfinite(bias) and abs(bias - 0.5) > t["position"]:
        reasons.append(f"it answers by position (picks the {'first' if bias > 0.5 else 'second'}-shown option "
                       f"{max(bias, 1 - bias):.0%} of the time)")
    return reasons


def verdict_flags(reasons: list[str]) -> list[str]:
    """Short names of the reasons (indifferent, off-label, by position), for tables."""
    names = (("indifferent", "indifferent"), ("off-label", "off-label"), ("by position", "by position"))
    return [short for reason in reasons for key, short in names if key in reason]


def format_verdict(reasons: list[str]) -> str | None:
    return "utilities below are not meaningful: " + "; ".join(reasons) if reasons else None
