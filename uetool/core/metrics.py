"""Coherence and structure metrics (METHOD.md section 4) on columnar edges.

Definitions (also in the README):
- held-out accuracy: share of held-out pairs where [P_model >= 0.5] == [P_observed >= 0.5];
- log-loss: binary cross-entropy of P_model against the observed P(a preferred);
- average confidence: mean over asked edges of max(P, 1 - P);
- cycle probability: over seeded random triads (a, b, c) whose three edges were all asked,
  mean of P_ab*P_bc*(1-P_ac) + (1-P_ab)*(1-P_bc)*P_ac, reported as log10 (the paper's formula, taken as the
  definition: for independent fair coins it gives log10(0.25) = -0.602);
- hard cycle rate: share of those triads whose majority directions form a cycle (ties count as no cycle).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["accuracy", "log_loss", "average_confidence", "cycle_statistics", "cosine_similarity"]


def accuracy(pred: np.ndarray, observed: np.ndarray) -> float:
    pred, observed = np.asarray(pred), np.asarray(observed)
    if pred.size == 0:
        return float("nan")
    return float(np.mean((pred >= 0.5) == (observed >= 0.5)))


def log_loss(pred: np.ndarray, observed: np.ndarray, eps: float = 1e-7) -> float:
    pred, observed = np.asarray(pred, np.float64), np.asarray(observed, np.float64)
    if pred.size == 0:
        return float("nan")
    q = np.clip(pred, eps, 1 - eps)
    return float(-np.mean(observed * np.log(q) + (1 - observed) * np.log(1 - q)))


def average_confidence(p: np.ndarray) -> float:
    p = np.asarray(p, np.float64)
    return float(np.mean(np.maximum(p, 1 - p))) if p.size else float("nan")


def cycle_statistics(a: np.ndarray, b: np.ndarray, p: np.ndarray, n_outcomes: int, *, n_triads: int = 1000,
                     seed: int = 0, max_draws_factor: int = 50) -> dict[str, float]:
    """Cycle probability (log10) and hard cycle rate over random triads of fully observed edges.

    Triads are drawn by picking a random asked edge (x, y) and a random common neighbour c, so the cost is
    O(n_triads * degree) regardless of n_outcomes.
    """
    a, b, p = np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(p, np.float64)
    rng = np.random.default_rng(seed)
    keys = np.minimum(a, b) * n_outcomes + np.maximum(a, b)
    p_low_first = np.where(a < b, p, 1 - p)  # P(min id preferred)
    order = np.argsort(keys)
    keys, p_low_first = keys[order], p_low_first[order]
    # adjacency in CSR form (both directions)
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    adj_order = np.lexsort((dst, src))
    dst_sorted = dst[adj_order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_outcomes))])

    def prob(x: int, y: int) -> float:
        key = min(x, y) * n_outcomes + max(x, y)
        value = p_low_first[np.searchsorted(keys, key)]
        return float(value if x < y else 1 - value)

    cyc, hard = [], []
    for _ in range(n_triads * max_draws_factor):
        if len(cyc) >= n_triads or a.size == 0:
            break
        e = rng.integers(a.size)
        x, y = int(a[e]), int(b[e])
        common = np.intersect1d(dst_sorted[indptr[x]:indptr[x + 1]], dst_sorted[indptr[y]:indptr[y + 1]],
                                assume_unique=True)
        if common.size == 0:
            continue
        c = int(common[rng.integers(common.size)])
        p_ab, p_bc, p_ac = prob(x, y), prob(y, c), prob(x, c)
        cyc.append(p_ab * p_bc * (1 - p_ac) + (1 - p_ab) * (1 - p_bc) * p_ac)
        hard.append((p_ab > 0.5 and p_bc > 0.5 and p_ac < 0.5) or (p_ab < 0.5 and p_bc < 0.5 and p_ac > 0.5))
    if not cyc:
        return {"log10_cycle_probability": float("nan"), "hard_cycle_rate": float("nan"), "n_triads": 0}
    mean = float(np.mean(cyc))
    return {"log10_cycle_probability": float(np.log10(mean)) if mean > 0 else float("-inf"),
            "hard_cycle_rate": float(np.mean(hard)), "n_triads": len(cyc)}


def cosine_similarity(u: pd.Series, v: pd.Series) -> float:
    """Cosine similarity of two utility vectors over the outcomes (index labels) they share."""
    shared = u.index.intersection(v.index)
    if len(shared) == 0:
        raise ValueError("the two utility vectors share no outcomes")
    x, y = u.loc[shared].to_numpy(np.float64), v.loc[shared].to_numpy(np.float64)
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / denom) if denom > 0 else float("nan")
