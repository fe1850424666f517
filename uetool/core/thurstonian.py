"""Thurstonian utility model: U(o) ~ N(mu_o, sigma2_o), P(a > b) = Phi((mu_a - mu_b) / sqrt(sigma2_a + sigma2_b)).

Maximum likelihood on soft labels (METHOD.md section 2) with the reference's weaknesses fixed:
- the log-likelihood uses log_ndtr, so it stays finite and accurate for |z| far beyond 5.5;
- each edge is weighted by its number of valid samples;
- L-BFGS with an analytic gradient and a convergence tolerance (not 1000 fixed Adam epochs);
- warm start from a previous fit; deterministic (no random init, no shuffling);
- a weak Gaussian prior on log sigma2 (pins the scale, which the likelihood leaves free) and a very weak one on mu
  (keeps perfectly separated outcomes finite).
Reported utilities are standardised to mean 0, std 1, with sigma2 rescaled by the same factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr, ndtr

from .metrics import accuracy, log_loss

__all__ = ["ThurstonianFit", "fit_thurstonian", "predict_proba", "bootstrap_intervals", "thurstonian_objective"]

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass
class ThurstonianFit:
    mean: np.ndarray  # standardised mu (mean 0, std 1)
    variance: np.ndarray  # sigma2 on the standardised scale
    theta: np.ndarray  # raw parameters [mu, log sigma2], for warm starts
    n_iter: int
    converged: bool
    loss: float
    train_accuracy: float
    train_log_loss: float
    n_edges: int

    def predict(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return predict_proba(self.mean, self.variance, a, b)


def predict_proba(mean: np.ndarray, variance: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(a preferred over b) under the model."""
    return ndtr((mean[a] - mean[b]) / np.sqrt(variance[a] + variance[b]))


def thurstonian_objective(theta: np.ndarray, a: np.ndarray, b: np.ndarray, p: np.ndarray, w: np.ndarray,
                          n_outcomes: int, prior_log_var: float, prior_mean: float) -> tuple[float, np.ndarray]:
    """Weighted soft-label negative log-likelihood plus priors, divided by the total weight; and its gradient.

    `n_outcomes` may cover several independent problems stacked side by side (the bootstrap does that).
    """
    mu, log_var = theta[:n_outcomes], theta[n_outcomes:]
    var = np.exp(log_var)
    var_a, var_b = var[a], var[b]
    s2 = var_a + var_b
    inv_s = 1.0 / np.sqrt(s2)
    z = (mu[a] - mu[b]) * inv_s
    # one log_ndtr per edge: the tail side is exact from log_ndtr(-|z|), the other side is log1p(-tail)
    tail = log_ndtr(-np.abs(z))
    head = np.log1p(-np.exp(tail))
    positive = z > 0
    lp, lq = np.where(positive, head, tail), np.where(positive, tail, head)
    q = 1.0 - p
    loss = -np.dot(w, p * lp + q * lq)
    log_pdf = -0.5 * z * z - _HALF_LOG_2PI
    # d(-loglik)/dz, using the Mills ratios phi/Phi computed in log space (no 0/0 in the tails)
    g_z = -w * (p * np.exp(log_pdf - lp) - q * np.exp(log_pdf - lq))
    g_mu_edge = g_z * inv_s
    g_mu = np.bincount(a, g_mu_edge, n_outcomes) - np.bincount(b, g_mu_edge, n_outcomes)
    g_s2 = g_z * (-0.5 * z / s2)
    g_log_var = np.bincount(a, g_s2 * var_a, n_outcomes) + np.bincount(b, g_s2 * var_b, n_outcomes)
    loss += 0.5 * prior_log_var * np.dot(log_var, log_var) + 0.5 * prior_mean * np.dot(mu, mu)
    g_mu += prior_mean * mu
    g_log_var += prior_log_var * log_var
    total = max(float(w.sum()), 1.0)
    return float(loss) / total, np.concatenate([g_mu, g_log_var]) / total


def _minimise(theta0, a, b, p, w, n, prior_log_var, prior_mean, tol, max_iter):
    result = minimize(thurstonian_objective, theta0, args=(a, b, p, w, n, prior_log_var, prior_mean), jac=True,
                      method="L-BFGS-B", options={"maxiter": max_iter, "ftol": tol, "gtol": tol * 1e-2,
                                                  "maxcor": 20})
    return result


def _standardise(theta: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    mu, var = theta[:n], np.exp(theta[n:])
    scale = mu.std()
    scale = scale if scale > 0 else 1.0
    return (mu - mu.mean()) / scale, var / scale**2


def fit_thurstonian(n_outcomes: int, a: np.ndarray, b: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None,
                    *, init: np.ndarray | None = None, prior_log_var: float = 1.0, prior_mean: float = 0.1,
                    tol: float = 1e-9, max_iter: int = 2000) -> ThurstonianFit:
    """Fit utilities to edges (a[i], b[i]) with observed P(a preferred) p[i] and weight[i] valid samples.

    `init` is the `theta` of an earlier fit (warm start); otherwise mu = 0, log sigma2 = 0. Priors are in units of
    samples: `prior_log_var` = 1 acts like one extra observation per outcome pulling log sigma2 towards 0.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    if not (a.shape == b.shape == p.shape == w.shape):
        raise ValueError("a, b, p and weight must have the same length")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_outcomes):
        raise ValueError(f"edge endpoints must lie in [0, {n_outcomes}), got outcome ids outside that range")
    theta0 = np.zeros(2 * n_outcomes) if init is None else np.asarray(init, dtype=np.float64).copy()
    if theta0.shape != (2 * n_outcomes,):
        raise ValueError(f"init must have shape ({2 * n_outcomes},), got {theta0.shape}")
    result = _minimise(theta0, a, b, p, w, n_outcomes, prior_log_var, prior_mean, tol, max_iter)
    mean, variance = _standardise(result.x, n_outcomes)
    pred = predict_proba(mean, variance, a, b) if a.size else np.empty(0)
    return ThurstonianFit(mean=mean, variance=variance, theta=result.x, n_iter=int(result.nit),
                          converged=bool(result.success), loss=float(result.fun),
                          train_accuracy=accuracy(pred, p), train_log_loss=log_loss(pred, p),
                          n_edges=int(a.size))


def bootstrap_intervals(fit: ThurstonianFit, a: np.ndarray, b: np.ndarray, p: np.ndarray, weight: np.ndarray,
                        *, n_boot: int = 100, level: float = 0.95, seed: int = 0, prior_log_var: float = 1.0,
                        prior_mean: float = 0.1, tol: float = 1e-7, max_iter: int = 500,
                        max_stacked_edges: int = 20_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals for the standardised means by resampling edges (Poisson bootstrap).

    All replicates are solved as ONE stacked problem (replicate r owns parameter block r), warm-started from
    `fit`, so the work is a few vectorised passes instead of `n_boot` Python-level fits.
    """
    n = fit.mean.size
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    p, w = np.asarray(p, np.float64), np.asarray(weight, np.float64)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_stacked_edges // max(a.size, 1)))
    draws = []
    for start in range(0, n_boot, chunk):
        reps = min(chunk, n_boot - start)
        offsets = (np.arange(reps, dtype=np.int64) * n)[:, None]
        stacked_w = (w[None, :] * rng.poisson(1.0, size=(reps, a.size))).ravel()
        keep = stacked_w > 0
        sa, sb = (a[None, :] + offsets).ravel()[keep], (b[None, :] + offsets).ravel()[keep]
        sp = np.broadcast_to(p, (reps, a.size)).ravel()[keep]
        theta0 = np.concatenate([np.tile(fit.theta[:n], reps), np.tile(fit.theta[n:], reps)])
        result = _minimise(theta0, sa, sb, sp, stacked_w[keep], reps * n, prior_log_var, prior_mean, tol, max_iter)
        mus = result.x[: reps * n].reshape(reps, n)
        # standardise each replicate like the point estimate, so intervals are on the reported scale
        draws.append((mus - mus.mean(1, keepdims=True)) / np.where(mus.std(1, keepdims=True) > 0,
                                                                   mus.std(1, keepdims=True), 1.0))
    samples = np.concatenate(draws)
    alpha = (1.0 - level) / 2.0
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)
