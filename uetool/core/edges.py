"""Per-pair answer counts and what they imply: P(a preferred), weights, position bias, refusal rates.

A count row for pair (a, b) holds six numbers (COUNT_COLUMNS; see README, "Data conventions"):
  n_a_orig, n_b_orig : a chosen / b chosen when a was shown first (ORIGINAL order)
  n_a_flip, n_b_flip : a chosen / b chosen when b was shown first (FLIPPED order)
  n_unparseable      : replies in either order that named no option
  n_refusal          : replies in either order that declined to choose
Counts are floats so that logprob elicitation can store expected counts (K * probability).
"""

from __future__ import annotations

import numpy as np

from .parsing import FIRST, REFUSAL, SECOND, UNPARSEABLE

__all__ = ["COUNT_COLUMNS", "UNPARSEABLE_POLICIES", "edge_probabilities", "counts_from_choices", "position_bias",
           "response_rates", "off_label_majority_rate", "logprob_other_mass"]

COUNT_COLUMNS = ("n_a_orig", "n_b_orig", "n_a_flip", "n_b_flip", "n_unparseable", "n_refusal")
UNPARSEABLE_POLICIES = ("distribution", "skip", "random")


def counts_from_choices(choices_orig: np.ndarray, choices_flip: np.ndarray) -> np.ndarray:
    """Count rows from parsed choice codes, shape (m, k_orig) and (m, k_flip) (codes from `parsing`)."""
    orig, flip = np.atleast_2d(choices_orig), np.atleast_2d(choices_flip)
    counts = np.empty((orig.shape[0], 6), dtype=np.float64)
    counts[:, 0] = (orig == FIRST).sum(1)
    counts[:, 1] = (orig == SECOND).sum(1)
    counts[:, 2] = (flip == SECOND).sum(1)  # in the flipped order outcome a is the second option
    counts[:, 3] = (flip == FIRST).sum(1)
    counts[:, 4] = (orig == UNPARSEABLE).sum(1) + (flip == UNPARSEABLE).sum(1)
    counts[:, 5] = (orig == REFUSAL).sum(1) + (flip == REFUSAL).sum(1)
    return counts


def edge_probabilities(counts: np.ndarray, policy: str = "distribution",
                       rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(P(a preferred over b), weight) per row.

    The weight is the number of valid (parsed) samples, so an edge made of unparseable replies carries no
    evidence whatever the policy. Policies for invalid replies (unparseable + refusal):
      distribution: each counts as half a vote for each side (the paper's default);
      skip:         ignored;
      random:       each is a fair coin flip (needs `rng`).
    """
    if policy not in UNPARSEABLE_POLICIES:
        raise ValueError(f"unparseable policy must be one of {UNPARSEABLE_POLICIES}, got {policy!r}")
    counts = np.asarray(counts, dtype=np.float64)
    n_a = counts[:, 0] + counts[:, 2]
    valid = counts[:, :4].sum(1)
    invalid = counts[:, 4] + counts[:, 5]
    if policy == "distribution":
        total = valid + invalid
        p = np.divide(n_a + 0.5 * invalid, total, out=np.full_like(total, 0.5), where=total > 0)
    elif policy == "skip":
        p = np.divide(n_a, valid, out=np.full_like(valid, 0.5), where=valid > 0)
    else:
        if rng is None:
            raise ValueError("unparseable policy 'random' needs an rng (seeded from config)")
        coins = rng.binomial(np.rint(invalid).astype(np.int64), 0.5)
        total = valid + invalid
        p = np.divide(n_a + coins, total, out=np.full_like(total, 0.5), where=total > 0)
    return p, valid


def position_bias(counts: np.ndarray) -> dict[str, float]:
    """P(the first-shown option is chosen), per order and pooled, over valid replies. 0.5 means no bias."""
    counts = np.asarray(counts, dtype=np.float64)
    first_orig, valid_orig = counts[:, 0].sum(), counts[:, :2].sum()
    first_flip, valid_flip = counts[:, 3].sum(), counts[:, 2:4].sum()

    def ratio(x: float, y: float) -> float:
        return float(x / y) if y > 0 else float("nan")

    return {"p_first_original": ratio(first_orig, valid_orig), "p_first_flipped": ratio(first_flip, valid_flip),
            "p_first": ratio(first_orig + first_flip, valid_orig + valid_flip)}


def response_rates(counts: np.ndarray) -> dict[str, float]:
    """Shares of all replies that were unparseable and that were refusals."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return {"unparseable_rate": float("nan"), "refusal_rate": float("nan")}
    return {"unparseable_rate": float(counts[:, 4].sum() / total), "refusal_rate": float(counts[:, 5].sum() / total)}


def logprob_other_mass(counts: np.ndarray) -> float:
    """Logprob mode: the mean next-token mass on neither label over the asked edges (each edge's two orders
    averaged); NaN when no edge was asked."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 6)
    asked = counts[:, :5].sum(1)
    ok = asked > 0
    return float(np.mean(counts[ok, 4] / asked[ok])) if ok.any() else float("nan")


def off_label_majority_rate(counts: np.ndarray) -> float:
    """Logprob mode (where n_unparseable is K x the off-label mass): share of asked edges whose next-token mass falls
    mostly (> 0.5) on neither label; NaN when no edge was asked."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 6)
    asked = counts[:, :5].sum(1)
    ok = asked > 0
    return float(np.mean(counts[ok, 4] / asked[ok] > 0.5)) if ok.any() else float("nan")
