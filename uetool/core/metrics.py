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

__all__ = ["accuracy", "log_loss", "average_confidence", "cosine_similarity"]


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


def cosine_similarity(u: pd.Series, v: pd.Series) -> float:
    """Cosine similarity of two utility vectors over the outcomes (index labels) they share."""
    shared = u.index.intersection(v.index)
    if len(shared) == 0:
        raise ValueError("the two utility vectors share no outcomes")
    x, y = u.loc[shared].to_numpy(np.float64), v.loc[shared].to_numpy(np.float64)
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / denom) if denom > 0 else float("nan")
