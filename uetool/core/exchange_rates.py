"""Exchange rates between groups (EXPERIMENTS.md s.11), pure and vectorised.

The model's utilities over "N <units> of group X" options are read through a log-utility model per group,
mu = a_X ln N + b_X (ordinary least squares over that group's N grid). The two-way geometric exchange rate of group j
against a pivot group i asks, for every N of the grid, how many units of i have the utility of N units of j (forward)
and how many units of j have the utility of N units of i (backward), and takes the geometric mean of the per-unit
ratios from both directions: rate > 1 means one unit of j is worth `rate` units of the pivot. With equal slopes it
is exp((b_j - b_i) / a). A group whose slope is not positive has no rate (its utility does not grow with N): it is
reported as such, never dropped. Dollar anchors ("You receive $D ...") get the same regression, mu = a_$ ln D + b_$,
so that N units of any group have a dollar value D with a_$ ln D + b_$ = a_X ln N + b_X.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = ["dollar_anchors", "LogUtilityFit", "fit_log_utility", "exchange_rate", "exchange_rates",
           "bootstrap_exchange_rates", "dollar_values", "render_option", "quantity_text"]


def dollar_anchors() -> np.ndarray:
    """The 92 dollar amounts of the paper's code: 100 log-spaced values from $1 to $1e9, rounded (amounts up to 10
    kept, else to 2 significant figures, at least to the nearest 10), deduplicated and sorted."""
    out = set()
    for x in np.logspace(0, 9, 100):
        if x <= 10:
            out.add(int(x))
        else:
            out.add(int(round(x, -max(1, int(np.floor(np.log10(x))) - 1))))
    return np.array(sorted(out), dtype=np.int64)


@dataclass(frozen=True)
class LogUtilityFit:
    """Per group: slope a, intercept b and residual mean square (SSR / (n - 2); NaN with 2 points) of
    mu = a ln N + b, and the number of distinct N it saw (a group needs 2)."""

    groups: tuple[str, ...]
    slope: np.ndarray
    intercept: np.ndarray
    mse_resid: np.ndarray
    n_points: np.ndarray


def _weighted_ols(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise weighted least squares of y = a x + b: x (P,) shared, y (P,) or (..., P), w (..., P) weights
    (bootstrap counts)."""
    sw = w.sum(-1)
    mx, my = (w * x).sum(-1) / sw, (w * y).sum(-1) / sw
    sxx = (w * x * x).sum(-1) - sw * mx * mx
    sxy = (w * x * y).sum(-1) - sw * mx * my
    with np.errstate(invalid="ignore", divide="ignore"):  # a draw of one distinct N has no slope: NaN
        a = sxy / sxx
        b = my - a * mx
        resid = y - (a[..., None] * x + b[..., None])
        return a, b, (w * resid * resid).sum(-1)


def fit_log_utility(mu: np.ndarray, n: np.ndarray, group: np.ndarray, groups: list[str] | None = None) -> LogUtilityFit:
    """OLS of mu on ln N per group. `mu`, `n` (> 0) and `group` (labels) are per option; dollar anchors are a group
    like any other (label them, e.g. "$"). Groups with fewer than 2 distinct N get NaN slope and intercept."""
    mu, n, group = np.asarray(mu, float), np.asarray(n, float), np.asarray(group)
    if np.any(n <= 0):
        raise ValueError("exchange rates need quantities N > 0 (ln N)")
    names = list(dict.fromkeys(group.tolist())) if groups is None else list(groups)
    slope, intercept, mse = (np.full(len(names), np.nan) for _ in range(3))
    points = np.zeros(len(names), int)
    ln = np.log(n)
    for g, name in enumerate(names):
        rows = group == name
        points[g] = len(np.unique(n[rows]))
        if points[g] < 2:
            continue
        a, b, ssr = _weighted_ols(ln[rows], mu[rows], np.ones(int(rows.sum())))
        slope[g], intercept[g] = a, b
        mse[g] = ssr / (rows.sum() - 2) if rows.sum() > 2 else np.nan
    return LogUtilityFit(tuple(names), slope, intercept, mse, points)


def exchange_rate(a_i, b_i, a_j, b_j, grid: np.ndarray) -> np.ndarray:
    """The two-way geometric exchange rate of group j against pivot i over the quantity grid (broadcasts over
    the slopes and intercepts); NaN where either slope is not positive."""
    a_i, b_i, a_j, b_j = (np.asarray(v, float)[..., None] for v in (a_i, b_i, a_j, b_j))
    ln = np.log(np.asarray(grid, float))
    valid = (a_i > 0) & (a_j > 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # forward: ln M_i = (b_j - b_i + a_j ln N) / a_i, ratio M_i / N;
        # backward: ln M_j = (b_i - b_j + a_i ln N) / a_j,
        # ratio N / M_j; the geometric mean of both is the mean of the log ratios
        forward = (b_j - b_i + a_j * ln) / a_i - ln
        backward = ln - (b_i - b_j + a_i * ln) / a_j
        rate = np.exp(np.concatenate([forward, backward], axis=-1).mean(-1))
    return np.where(valid[..., 0], rate, np.nan)


def exchange_rates(fit: LogUtilityFit, pivot: str, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Every group's rate against `pivot`, with a status: "ok", "negative_slope" (its slope, or the pivot's, is not
    positive: no rate) or "too_few_points"."""
    if pivot not in fit.groups:
        raise ValueError(f"pivot {pivot!r} is not among the groups {list(fit.groups)}")
    p = fit.groups.index(pivot)
    rate = exchange_rate(fit.slope[p], fit.intercept[p], fit.slope, fit.intercept, grid)
    status = np.where(fit.n_points < 2, "too_few_points",
                      np.where((fit.slope > 0) & (fit.slope[p] > 0), "ok", "negative_slope"))
    return {"group": np.array(fit.groups), "rate": rate, "status": status}


def bootstrap_exchange_rates(mu: np.ndarray, n: np.ndarray, group: np.ndarray, pivot: str, grid: np.ndarray, *,
                             n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                             mu_draws: np.ndarray | None = None, interval: str = "basic") -> dict[str, np.ndarray]:
    """Bootstrap CIs on every group's rate: each group's (ln N, mu) points resampled with replacement (the pivot's
    too, independently), its regression and the rate recomputed. With `mu_draws` (D, P), replicates of the fitted
    utilities from an edge bootstrap of the fit, replicate b regresses draw b mod D instead of the point estimate:
    the pairs resampling alone sees only the scatter around each group's line, not the error a group's utilities
    share (its level against the pivot's, set through few edges), and is too narrow.

    `interval`: "basic" (default) reflects the replicates' log rates about the estimate, [2 ln r - q_hi,
    2 ln r - q_lo]; "percentile" takes [q_lo, q_hi] as they are. The fit inflates the utilities of a category's
    extreme options (few wins or losses to pin them), so a group at the edge of the range, often the pivot, gets
    too steep a slope; a replicate fitted to the fit inflates it again, and the reflection undoes that where the
    percentile interval would carry it twice (measured on the log-utility agent: README, benchmarks/analyses.py).
    Bootstrap draws with a non-positive slope have no rate (`valid_draws` is the share with one); the CI is over
    the others, NaN when more than (1 - level) of the draws have none."""
    if interval not in ("basic", "percentile"):
        raise ValueError(f"interval must be basic or percentile, got {interval!r}")
    mu, n, group = np.asarray(mu, float), np.asarray(n, float), np.asarray(group)
    fit = fit_log_utility(mu, n, group)
    rng = np.random.default_rng(seed)
    slopes, intercepts = np.full((len(fit.groups), n_boot), np.nan), np.full((len(fit.groups), n_boot), np.nan)
    ln = np.log(n)
    for g, name in enumerate(fit.groups):
        rows = np.flatnonzero(group == name)
        if fit.n_points[g] < 2:
            continue
        counts = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=n_boot).astype(float)
        y = mu[rows] if mu_draws is None else mu_draws[np.arange(n_boot) % len(mu_draws)][:, rows]
        slopes[g], intercepts[g], _ = _weighted_ols(ln[rows], y, counts)
    p = fit.groups.index(pivot)
    draws = exchange_rate(slopes[p], intercepts[p], slopes, intercepts, grid)  # (groups, n_boot)
    out = exchange_rates(fit, pivot, grid)
    alpha = (1 - level) / 2
    low, high = np.full(len(fit.groups), np.nan), np.full(len(fit.groups), np.nan)
    for g in range(len(fit.groups)):
        finite = draws[g][np.isfinite(draws[g])]
        if len(finite) < level * n_boot:
            continue
        q_low, q_high = np.quantile(np.log(finite), [alpha, 1 - alpha])
        if interval == "percentile":
            low[g], high[g] = np.exp(q_low), np.exp(q_high)
        elif np.isfinite(out["rate"][g]):  # basic: reflected about the estimate, on the log scale (rates are > 0)
            centre = 2 * np.log(out["rate"][g])
            low[g], high[g] = np.exp(centre - q_high), np.exp(centre - q_low)
    out.update({"ci_low": low, "ci_high": high, "valid_draws": np.isfinite(draws).mean(1)})
    return out


def dollar_values(fit: LogUtilityFit, dollars: str, quantity: float = 1.0) -> np.ndarray:
    """Per group, the dollar amount D whose anchor utility equals that of `quantity` units of the group:
    a_$ ln D + b_$ = a_X ln N + b_X. NaN where the anchors' slope is not positive."""
    d = fit.groups.index(dollars)
    a_d, b_d = fit.slope[d], fit.intercept[d]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        value = np.exp((fit.slope * np.log(quantity) + fit.intercept - b_d) / a_d)
    return value if a_d > 0 else np.full(len(fit.groups), np.nan)


_FIELD = re.compile(r"\{(v:)?([^{}|]+)\|([nx])\}")


def quantity_text(n: float) -> str:
    """5 -> "5", 1.0 -> "1", 0.5 -> "0.5" (as the paper's options print their N)."""
    return str(int(n)) if float(n) == int(n) else f"{float(n):g}"


@cache
def _inflector():
    import inflect

    return inflect.engine()


def render_option(template: str, n: float, x: str) -> str:
    """One option's text: `{n}` the quantity, `{x}` the group, `{noun|n}` a noun agreeing with the quantity,
    `{x|n}` the group's name agreeing with it ("10 foxes"), `{v:verb|n}` / `{v:verb|x}` a verb (written in the third
    person singular) agreeing with the quantity / the group ("You" takes the plural: "You gain"). Inflection by the
    `inflect` library: "1 person from India is saved", "2 people from India are saved"."""
    e = _inflector()
    count_n = 1 if float(n) == 1 else 2
    count_x = 2 if x == "You" else 1

    def inflected(m: re.Match) -> str:
        verb, word, agree = m.groups()
        count = count_n if agree == "n" else count_x
        if word == "x":
            return x if count == 1 else e.plural_noun(x, count)
        if verb:
            return word if count == 1 else e.plural_verb(word, count)
        return word if count == 1 else e.plural_noun(word, count)

    return _FIELD.sub(inflected, template).replace("{n}", quantity_text(n)).replace("{x}", x)
