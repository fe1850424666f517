"""Coherence and structure metrics (METHOD.md section 4) on columnar edges.

Definitions (also in the README):
- held-out accuracy: share of held-out pairs where [P_model >= 0.5] == [P_observed >= 0.5];
- log-loss: binary cross-entropy of P_model against the observed P(a preferred);
- average confidence: mean over asked edges of max(P, 1 - P);
- cycle probability and hard cycle rate: on triads asked for the purpose, see `uetool.core.transitivity`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["accuracy", "log_loss", "accuracy_items", "log_loss_items", "average_confidence", "cosine_similarity",
           "bootstrap_mean_ci", "N_BOOT_METRICS"]

N_BOOT_METRICS = 1000  # bootstrap replicates behind every `<metric>_ci` of metrics.json
_CHUNK_CELLS = 4_000_000  # replicates x items resampled at once (bounds memory at ~32 MB whatever n is)


def accuracy(pred: np.ndarray, observed: np.ndarray) -> float:
    pred, observed = np.asarray(pred), np.asarray(observed)
    if pred.size == 0:
        return float("nan")
    return float(np.mean((pred >= 0.5) == (observed >= 0.5)))


def log_loss(pred: np.ndarray, observed: np.ndarray, eps: float = 1e-7) -> float:
    pred = np.asarray(pred, np.float64)
    if pred.size == 0:
        return float("nan")
    return float(np.mean(log_loss_items(pred, observed, eps)))


def accuracy_items(pred: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per edge: 1.0 where the model's and the observed majority agree (the items `accuracy` averages)."""
    return ((np.asarray(pred) >= 0.5) == (np.asarray(observed) >= 0.5)).astype(np.float64)


def log_loss_items(pred: np.ndarray, observed: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Per edge: cross-entropy of the model's P against the observed P (the items `log_loss` averages)."""
    q = np.clip(np.asarray(pred, np.float64), eps, 1 - eps)
    observed = np.asarray(observed, np.float64)
    return -(observed * np.log(q) + (1 - observed) * np.log(1 - q))


def average_confidence(p: np.ndarray) -> float:
    p = np.asarray(p, np.float64)
    return float(np.mean(np.maximum(p, 1 - p))) if p.size else float("nan")


def bootstrap_mean_ci(values: np.ndarray, *, seed: int, n_boot: int = N_BOOT_METRICS, level: float = 0.95,
                      transform=None) -> list[float]:
    """Percentile-bootstrap CI of the mean of per-item `values` (items resampled with replacement), as [low, high].

    `transform` maps a mean to the reported statistic (monotone, e.g. log10 for the cycle probability). Items are
    edges for accuracy, log-loss and confidence, triads for the cycle metrics; NaN items are left out first.
    """
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng([seed, 29])
    chunk = max(1, _CHUNK_CELLS // values.size)
    means = np.concatenate([values[rng.integers(0, values.size, (min(chunk, n_boot - start), values.size))].mean(1)
                            for start in range(0, n_boot, chunk)])
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    if transform is not None:
        with np.errstate(divide="ignore"):
            low, high = transform(low), transform(high)
    return [float(low), float(high)]


def cosine_similarity(u: pd.Series, v: pd.Series) -> float:
    """Cosine similarity of two utility vectors over the outcomes (index labels) they share."""
    shared = u.index.intersection(v.index)
    if len(shared) == 0:
        raise ValueError("the two utility vectors share no outcomes")
    x, y = u.loc[shared].to_numpy(np.float64), v.loc[shared].to_numpy(np.float64)
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / denom) if denom > 0 else float("nan")
