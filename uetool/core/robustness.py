"""Are the utilities a property of the model or of the prompt? Variant-against-base comparisons (pure; no Ray).

A robustness suite fits the same outcomes under a base configuration and under declared variants (paraphrased
question, other labels, system prompts, K, temperature, logprob against sampling, ...). Per variant, against the
base:

- `spearman`, `pearson`: of the two utility vectors, with percentile-bootstrap CIs over outcomes;
- `cross_accuracy`: the base fit's accuracy on the variant's held-out edges (and `cross_accuracy_reverse`, the
  variant fit on the base's held-out edges): does one prompt's fit predict the other's answers?
- `position_shift`: |P(first shown) - 0.5| of the variant minus that of the base (a label or framing that makes
  the model answer by position);
- `rank_movers`: the outcomes whose rank moves most.

Per outcome, `spread`: the standard deviation of its standardised utility over the base and every variant (0: the
same under every prompt); `stability` = 1 - spread^2 (1: identical under every prompt; for two runs its mean over
outcomes is exactly the Pearson correlation of their utilities, so 0 means unrelated). Per category, their means.

Monotonicity (`monotonicity`): over the outcome set's quantity series (outcome attributes: "$10, $100, $1,000"),
the share of ordered pairs within each series whose utilities are ordered as the series' direction says, and the
violating pairs.

A variant is flagged when its Spearman CI lies below `FLAG_SPEARMAN` or its position shift exceeds
`FLAG_POSITION_SHIFT`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .correlation import correlation_ci

__all__ = ["FLAG_SPEARMAN", "FLAG_POSITION_SHIFT", "compare_variant", "cross_accuracy", "outcome_stability",
           "monotonicity", "standardise", "flag_reasons", "refusals_per_outcome"]

FLAG_SPEARMAN = 0.8  # a variant whose whole Spearman CI lies below this reorders the utilities
FLAG_POSITION_SHIFT = 0.15  # |P(first) - 0.5| grows by more than this under the variant


def standardise(mean: np.ndarray) -> np.ndarray:
    mean = np.asarray(mean, np.float64)
    sd = mean.std()
    return (mean - mean.mean()) / (sd if sd > 0 else 1.0)


def cross_accuracy(mean: np.ndarray, variance: np.ndarray, a: np.ndarray, b: np.ndarray, p_a: np.ndarray) -> float:
    """Share of edges (a, b, observed P(a)) whose side of 0.5 the Thurstonian fit (mean, variance) predicts; edges
    at exactly 0.5 are left out; NaN when none is left."""
    a, b, p_a = np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(p_a, np.float64)
    keep = np.isfinite(p_a) & (p_a != 0.5)
    if not keep.any():
        return float("nan")
    a, b, p_a = a[keep], b[keep], p_a[keep]
    predicted = ndtr((mean[a] - mean[b]) / np.sqrt(np.maximum(variance[a] + variance[b], 1e-12)))
    return float(np.mean((predicted > 0.5) == (p_a > 0.5)))


def compare_variant(base: pd.DataFrame, variant: pd.DataFrame, *, base_edges: pd.DataFrame | None = None,
                    variant_edges: pd.DataFrame | None = None, base_position: float = float("nan"),
                    variant_position: float = float("nan"), seed: int = 0, n_boot: int = 1000,
                    n_movers: int = 5) -> dict:
    """One variant against the base. `base`, `variant`: utilities frames (id, description, mean, variance) over the
    same outcomes; edges frames: (a, b, p_a, split) with `split == "holdout"` rows used for cross-prediction."""
    if list(base["id"]) != list(variant["id"]):
        raise ValueError("a variant must be fitted over the base's outcomes, in the same order")
    mu_b, mu_v = base["mean"].to_numpy(np.float64), variant["mean"].to_numpy(np.float64)
    rho, rho_ci = correlation_ci(mu_b, mu_v, seed=seed, method="spearman", n_boot=n_boot)
    r, r_ci = correlation_ci(mu_b, mu_v, seed=seed, method="pearson", n_boot=n_boot)
    out = {"spearman": rho, "spearman_ci": rho_ci, "pearson": r, "pearson_ci": r_ci}

    def held_out(edges: pd.DataFrame | None):
        if edges is None:
            return None
        rows = edges[edges["split"] == "holdout"]
        return rows["a"].to_numpy(), rows["b"].to_numpy(), rows["p_a"].to_numpy()

    var_b, var_v = base["variance"].to_numpy(np.float64), variant["variance"].to_numpy(np.float64)
    v_hold, b_hold = held_out(variant_edges), held_out(base_edges)
    out["cross_accuracy"] = cross_accuracy(mu_b, var_b, *v_hold) if v_hold is not None else float("nan")
    out["cross_accuracy_reverse"] = cross_accuracy(mu_v, var_v, *b_hold) if b_hold is not None else float("nan")
    out["position_shift"] = float(abs(variant_position - 0.5) - abs(base_position - 0.5))
    ranks_b = pd.Series(mu_b).rank(ascending=False).to_numpy()
    ranks_v = pd.Series(mu_v).rank(ascending=False).to_numpy()
    moved = np.argsort(-np.abs(ranks_v - ranks_b), kind="stable")[:n_movers]
    out["rank_movers"] = [{"description": str(base["description"].iloc[i]), "rank_base": float(ranks_b[i]),
                           "rank_variant": float(ranks_v[i])} for i in moved]
    return out


def flag_reasons(comparison: dict) -> list[str]:
    """Why a variant is flagged (empty: it is not)."""
    reasons = []
    high = (comparison.get("spearman_ci") or [np.nan, np.nan])[1]
    if np.isfinite(high) and high < FLAG_SPEARMAN:
        reasons.append(f"reorders the utilities (Spearman {comparison['spearman']:.2f}, CI up to {high:.2f})")
    shift = comparison.get("position_shift", np.nan)
    if np.isfinite(shift) and shift > FLAG_POSITION_SHIFT:
        reasons.append(f"answers more by position (|P(first) - 0.5| up by {shift:.2f})")
    return reasons


def outcome_stability(means: np.ndarray, categories: list[str] | np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`means`: (runs, outcomes), the base first. (per outcome: spread, stability; per category: their means)."""
    z = np.stack([standardise(m) for m in np.atleast_2d(np.asarray(means, np.float64))])
    spread = z.std(axis=0, ddof=1) if len(z) > 1 else np.zeros(z.shape[1])
    per_outcome = pd.DataFrame({"category": list(categories), "spread": spread,
                                "stability": 1.0 - spread ** 2})
    per_category = per_outcome.groupby("category", sort=True)[["spread", "stability"]].mean().reset_index()
    return per_outcome, per_category


def monotonicity(mean: np.ndarray, series: dict[str, np.ndarray], direction: dict[str, int],
                 descriptions: list[str]) -> dict:
    """Share of ordered pairs within each quantity series that the utilities respect, and the violations.
    `series`: name -> outcome indices ordered by quantity; `direction`: name -> +1 (more is better) or -1."""
    mean = np.asarray(mean, np.float64)
    respected = total = 0
    violations = []
    for name, idx in series.items():
        sign = direction[name]
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):  # series are short (a handful of amounts): pairs within one series
                total += 1
                if sign * (mean[idx[j]] - mean[idx[i]]) > 0:
                    respected += 1
                else:
                    violations.append({"series": name, "smaller": descriptions[idx[i]],
                                       "larger": descriptions[idx[j]]})
    return {"monotonicity_rate": respected / total if total else float("nan"), "n_pairs": total,
            "violations": violations}


def refusals_per_outcome(edges: pd.DataFrame, n_outcomes: int) -> np.ndarray:
    """Per outcome, the share of the replies to questions about it that were refusals (NaN: never asked).
    `edges`: a, b and the answer counts (n_a_orig, n_b_orig, n_a_flip, n_b_flip, n_unparseable, n_refusal)."""
    counts = edges[["n_a_orig", "n_b_orig", "n_a_flip", "n_b_flip", "n_unparseable", "n_refusal"]].to_numpy(float)
    total, refused = counts.sum(1), counts[:, 5]
    a, b = edges["a"].to_numpy(np.int64), edges["b"].to_numpy(np.int64)
    replies = np.bincount(a, total, n_outcomes) + np.bincount(b, total, n_outcomes)
    refusals = np.bincount(a, refused, n_outcomes) + np.bincount(b, refused, n_outcomes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(replies > 0, refusals / np.where(replies > 0, replies, 1), np.nan)
