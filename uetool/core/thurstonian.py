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

__all__ = ["ThurstonianFit", "fit_thurstonian", "predict_proba", "bootstrap_intervals", "bootstrap_chunks",
           "bootstrap_samples", "percentile_intervals", "thurstonian_objective"]

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


def check_edges(n_outcomes: int, a, b, p, weight=None, init=None) -> tuple[np.ndarray, ...]:
    """The edge arrays as int64/float64 arrays plus theta0, validated (shared by every fit backend)."""
    if int(n_outcomes) < 1:
        raise ValueError(f"n_outcomes must be >= 1, got {n_outcomes}")
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    if not (a.shape == b.shape == p.shape == w.shape):
        raise ValueError("a, b, p and weight must have the same length")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_outcomes):
        raise ValueError(f"edge endpoints must lie in [0, {n_outcomes}), got outcome ids outside that range")
    theta0 = np.zeros(2 * n_outcomes) if init is None else np.asarray(init, dtype=np.float64).copy()
    if theta0.shape != (2 * n_outcomes,):
        raise ValueError(f"init must have shape ({2 * n_outcomes},), got {theta0.shape}")
    return a, b, p, w, theta0


def fit_thurstonian(n_outcomes: int, a: np.ndarray, b: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None,
                    *, init: np.ndarray | None = None, prior_log_var: float = 1.0, prior_mean: float = 0.1,
                    tol: float = 1e-9, max_iter: int = 2000) -> ThurstonianFit:
    """Fit utilities to edges (a[i], b[i]) with observed P(a preferred) p[i] and weight[i] valid samples.

    `init` is the `theta` of an earlier fit (warm start); otherwise mu = 0, log sigma2 = 0. Priors are in units of
    samples: `prior_log_var` = 1 acts like one extra observation per outcome pulling log sigma2 towards 0.
    """
    a, b, p, w, theta0 = check_edges(n_outcomes, a, b, p, weight, init)
    result = _minimise(theta0, a, b, p, w, n_outcomes, prior_log_var, prior_mean, tol, max_iter)
    mean, variance = _standardise(result.x, n_outcomes)
    pred = predict_proba(mean, variance, a, b) if a.size else np.empty(0)
    return ThurstonianFit(mean=mean, variance=variance, theta=result.x, n_iter=int(result.nit),
                          converged=bool(result.success), loss=float(result.fun),
                          train_accuracy=accuracy(pred, p), train_log_loss=log_loss(pred, p),
                          n_edges=int(a.size))


def bootstrap_chunks(n_boot: int, n_edges: int, *, replicates_per_chunk: int | None = None,
                     max_stacked_edges: int = 20_000_000) -> list[tuple[int, int]]:
    """(first replicate, number of replicates) of each stacked bootstrap solve.

    By default as many replicates as fit in `max_stacked_edges` share one solve; `replicates_per_chunk` fixes the
    chunk size instead (the parallel runtime splits the work this way, and the same chunks solved one after the
    other give identical results).
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if replicates_per_chunk is not None and replicates_per_chunk < 1:
        raise ValueError(f"replicates_per_chunk must be >= 1, got {replicates_per_chunk}")
    chunk = replicates_per_chunk or max(1, min(n_boot, max_stacked_edges // max(n_edges, 1)))
    return [(start, min(chunk, n_boot - start)) for start in range(0, n_boot, chunk)]


def bootstrap_samples(fit: ThurstonianFit, a: np.ndarray, b: np.ndarray, p: np.ndarray, weight: np.ndarray, *,
                      first: int, count: int, seed: int = 0, prior_log_var: float = 1.0, prior_mean: float = 0.1,
                      tol: float = 1e-7, max_iter: int = 500) -> np.ndarray:
    """Standardised means of replicates `first .. first + count - 1`, shape (count, n), from ONE stacked solve.

    Replicate r resamples edges with Poisson(1) weights from its own generator `default_rng([seed, r])`, so a
    replicate's data does not depend on which chunk (or which process) solves it.
    """
    n = fit.mean.size
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    p, w = np.asarray(p, np.float64), np.asarray(weight, np.float64)
    if count < 1:
        return np.empty((0, n))
    offsets = (np.arange(count, dtype=np.int64) * n)[:, None]
    resample = np.stack([np.random.default_rng([seed, first + r]).poisson(1.0, size=a.size) for r in range(count)])
    stacked_w = (w[None, :] * resample).ravel()
    keep = stacked_w > 0
    sa, sb = (a[None, :] + offsets).ravel()[keep], (b[None, :] + offsets).ravel()[keep]
    sp = np.broadcast_to(p, (count, a.size)).ravel()[keep]
    theta0 = np.concatenate([np.tile(fit.theta[:n], count), np.tile(fit.theta[n:], count)])
    result = _minimise(theta0, sa, sb, sp, stacked_w[keep], count * n, prior_log_var, prior_mean, tol, max_iter)
    mus = result.x[: count * n].reshape(count, n)
    # standardise each replicate like the point estimate, so intervals are on the reported scale
    scale = mus.std(1, keepdims=True)
    return (mus - mus.mean(1, keepdims=True)) / np.where(scale > 0, scale, 1.0)


def percentile_intervals(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per-column percentile interval of bootstrap samples (replicates x outcomes)."""
    alpha = (1.0 - level) / 2.0
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1.0 - alpha, axis=0)


def bootstrap_intervals(fit: ThurstonianFit, a: np.ndarray, b: np.ndarray, p: np.ndarray, weight: np.ndarray,
                        *, n_boot: int = 100, level: float = 0.95, seed: int = 0, prior_log_var: float = 1.0,
                        prior_mean: float = 0.1, tol: float = 1e-7, max_iter: int = 500,
                        max_stacked_edges: int = 20_000_000,
                        replicates_per_chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals for the standardised means by resampling edges (Poisson bootstrap).

    Replicates are solved as stacked problems (replicate r owns parameter block r), warm-started from `fit`, so
    the work is a few vectorised passes instead of `n_boot` Python-level fits. Chunks of replicates share a solve
    and hence its stopping rule, so results depend on the chunking (`bootstrap_chunks`) as well as on `seed`.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    chunks = bootstrap_chunks(n_boot, np.asarray(a).size, replicates_per_chunk=replicates_per_chunk,
                              max_stacked_edges=max_stacked_edges)
    draws = [bootstrap_samples(fit, a, b, p, weight, first=first, count=count, seed=seed,
                               prior_log_var=prior_log_var, prior_mean=prior_mean, tol=tol, max_iter=max_iter)
             for first, count in chunks]
    return percentile_intervals(np.concatenate(draws), level)
