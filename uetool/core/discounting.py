"""Time discounting (EXPERIMENTS.md s.12), pure and vectorised: $1,000 now against a larger amount later.

Per (delay, amount) cell the share of answers choosing the delayed amount; per delay the indifference multiplier
m*(t) where that share crosses 0.5 (a binomial logistic fit P = sigmoid(alpha + beta ln m), m* = exp(-alpha / beta),
or linear interpolation in ln m between the first bracketing pair); the empirical discount factor D(t) = 1 / m*(t);
and least-squares fits of an exponential D = exp(-k t) and a hyperbolic D = 1 / (1 + k t) discounter (k >= 0)
with their MAE, R^2 and AIC (Gaussian errors: n ln(SSR / n) + 2 x one parameter), and which family wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = ["time_delays", "amount_multipliers", "delayed_amounts", "fitted_shares", "indifference_points",
           "DiscountFit", "fit_discount_curves", "exponential", "hyperbolic"]


def time_delays() -> np.ndarray:
    """The paper's 60 delays in months: int(linspace(0, 60, 60)), i.e. 0..58 and 60 (59 is missing)."""
    return np.linspace(0, 60, num=60, dtype=int)


def amount_multipliers() -> np.ndarray:
    """30 multipliers of the $1,000 baseline, log-spaced from 0.5 to 30."""
    return np.logspace(np.log10(0.5), np.log10(30), 30)


def delayed_amounts(baseline: float = 1000.0) -> np.ndarray:
    """The delayed amounts: baseline x multiplier, rounded to the nearest hundred ($500 ... $30,000)."""
    return np.round(baseline * amount_multipliers(), -2)


def exponential(t: np.ndarray, k: float) -> np.ndarray:
    return np.exp(-k * np.asarray(t, float))


def hyperbolic(t: np.ndarray, k: float) -> np.ndarray:
    return 1.0 / (1.0 + k * np.asarray(t, float))


def _logistic_fits(x: np.ndarray, n_delayed: np.ndarray, n_total: np.ndarray, iters: int = 50):
    """Binomial maximum-likelihood logistic regression of every row on the shared x, by Newton's method (vectorised
    over rows), with a tiny ridge so that separable rows stay finite. Returns alpha, beta (rows,)."""
    rows = n_delayed.shape[0]
    X = np.stack([np.ones_like(x), x], 1)  # (P, 2)
    theta = np.zeros((rows, 2))
    ridge = 1e-6 * np.eye(2)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(theta @ X.T)))  # (rows, P)
        grad = (n_delayed - n_total * p) @ X - theta @ ridge
        w = n_total * p * (1 - p)
        hess = np.einsum("rp,pi,pj->rij", w, X, X) + ridge
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        theta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return theta[:, 0], theta[:, 1]


def fitted_shares(multipliers: np.ndarray, n_delayed: np.ndarray, n_total: np.ndarray) -> np.ndarray:
    """Each delay's logistic fit P = sigmoid(alpha + beta ln m) evaluated at every multiplier: the smoothed share
    choosing the delayed amount, (delays, amounts). A parametric bootstrap draws from these rather than from the
    observed shares, which would give every cell answered one way all n times no variance at all."""
    x = np.log(np.asarray(multipliers, float))
    alpha, beta = _logistic_fits(x, np.nan_to_num(np.asarray(n_delayed, float)), np.asarray(n_total, float))
    with np.errstate(over="ignore"):  # a separable delay has a huge beta: its shares are 0 and 1, as observed
        return 1 / (1 + np.exp(-(alpha[:, None] + beta[:, None] * x[None, :])))


def indifference_points(multipliers: np.ndarray, n_delayed: np.ndarray, n_total: np.ndarray,
                        method: str = "logistic") -> np.ndarray:
    """Per delay (rows of the (delays, amounts) count arrays) the indifference multiplier m*; NaN where the share
    choosing the delayed amount never crosses 0.5 (or, for the logistic fit, where it falls with the amount)."""
    m = np.asarray(multipliers, float)
    n_delayed, n_total = np.asarray(n_delayed, float), np.asarray(n_total, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = n_delayed / n_total
    crosses = (np.nanmin(share, 1) < 0.5) & (np.nanmax(share, 1) > 0.5)
    x = np.log(m)
    if method == "logistic":
        alpha, beta = _logistic_fits(x, np.nan_to_num(n_delayed), n_total)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            star = np.exp(-alpha / beta)
        return np.where(crosses & (beta > 0), star, np.nan)
    if method != "interpolate":
        raise ValueError(f"indifference method must be logistic or interpolate, got {method!r}")
    out = np.full(len(share), np.nan)
    for r, row in enumerate(share):
        above = row >= 0.5
        j = np.flatnonzero(above[1:] != above[:-1])
        if crosses[r] and len(j):
            j = j[0]
            y0, y1 = row[j], row[j + 1]
            frac = (0.5 - y0) / (y1 - y0)
            out[r] = np.exp(x[j] + frac * (x[j + 1] - x[j]))
    return out


@dataclass(frozen=True)
class DiscountFit:
    """Both families' k, MAE, R^2 and AIC over the delays with a defined discount factor; `winner` has the lower
    AIC (one parameter each, so also the lower squared error)."""

    k_exponential: float
    k_hyperbolic: float
    mae_exponential: float
    mae_hyperbolic: float
    r2_exponential: float
    r2_hyperbolic: float
    aic_exponential: float
    aic_hyperbolic: float
    n_delays: int

    @property
    def winner(self) -> str:
        if not np.isfinite(self.aic_exponential) or not np.isfinite(self.aic_hyperbolic):
            return "undetermined"
        return "hyperbolic" if self.aic_hyperbolic < self.aic_exponential else "exponential"


def fit_discount_curves(delays: np.ndarray, discount: np.ndarray) -> DiscountFit:
    """Least-squares k >= 0 of each family over the delays where `discount` (D(t) = 1 / m*(t)) is defined."""
    t, d = np.asarray(delays, float), np.asarray(discount, float)
    keep = np.isfinite(d)
    t, d = t[keep], d[keep]
    if len(t) < 2:
        nan = float("nan")
        return DiscountFit(nan, nan, nan, nan, nan, nan, nan, nan, int(len(t)))
    out = {}
    total = float(np.sum((d - d.mean()) ** 2))
    for name, curve in (("exponential", exponential), ("hyperbolic", hyperbolic)):
        # k on a log scale: the fits span many orders of magnitude (1e-4 per month to 10)
        best = minimize_scalar(lambda lk, c=curve: float(np.sum((d - c(t, np.exp(lk))) ** 2)), bounds=(-16, 5),
                               method="bounded", options={"xatol": 1e-10})
        k = float(np.exp(best.x))
        k = 0.0 if np.sum((d - curve(t, 0.0)) ** 2) <= best.fun else k  # no discounting fits at least as well
        resid = d - curve(t, k)
        ssr = float(np.sum(resid ** 2))
        out[name] = (k, float(np.mean(np.abs(resid))), 1 - ssr / total if total > 0 else float("nan"),
                     len(t) * np.log(max(ssr, 1e-300) / len(t)) + 2)
    (ke, me, re, ae), (kh, mh, rh, ah) = out["exponential"], out["hyperbolic"]
    return DiscountFit(ke, kh, me, mh, re, rh, float(ae), float(ah), int(len(t)))
