"""Correlations between two per-item scores with bootstrap CIs over the items (pure, vectorised; no Ray)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["pearson", "spearman", "correlation_ci", "METHODS"]

METHODS = ("pearson", "spearman")
_CHUNK_CELLS = 4_000_000  # replicates x items resampled at once


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two (m, n) arrays; NaN for a row with no spread."""
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denom = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (x * y).sum(-1) / np.where(denom > 0, denom, 1.0), np.nan)


def pearson(x, y) -> float:
    x, y = _finite_pairs(x, y)
    return float(_rowwise_pearson(x[None], y[None])[0]) if x.size >= 2 else float("nan")


def spearman(x, y) -> float:
    x, y = _finite_pairs(x, y)
    return pearson(rankdata(x), rankdata(y)) if x.size >= 2 else float("nan")


def _finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"correlation of {x.size} against {y.size} values")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def correlation_ci(x, y, *, seed: int, method: str = "pearson", n_boot: int = 1000,
                   level: float = 0.95) -> tuple[float, list[float]]:
    """(r, [low, high]): the correlation of the finite (x, y) pairs and its percentile-bootstrap interval, items
    resampled with replacement (replicates without spread are left out). Spearman ranks within each replicate.
    NaN with fewer than 3 pairs."""
    if method not in METHODS:
        raise ValueError(f"correlation method must be one of {METHODS}, got {method!r}")
    x, y = _finite_pairs(x, y)
    n = x.size
    if n < 3:
        return float("nan"), [float("nan"), float("nan")]
    r = pearson(x, y) if method == "pearson" else spearman(x, y)
    rng = np.random.default_rng([seed, 31])
    chunk = max(1, _CHUNK_CELLS // n)
    reps = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, (min(chunk, n_boot - start), n))
        xs, ys = x[idx], y[idx]
        if method == "spearman":
            xs, ys = rankdata(xs, axis=1), rankdata(ys, axis=1)
        reps.append(_rowwise_pearson(xs, ys))
    reps = np.concatenate(reps)
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return r, [float("nan"), float("nan")]
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return r, [float(low), float(high)]
