"""Time discounting (EXPERIMENTS.md s.12): $1,000 now or more money later, asked directly (no utility fit).

One option set of fixed pairs: the baseline ("$1,000 right now") against every (delay, amount) cell of the paper's
grid (60 delays 0..60 months, 30 amounts $500..$30,000), each pair in both orders with the run's K answers per order
(the paper asked K=20) under the paper's discounting prompt. Per cell the share of valid answers choosing the
delayed amount (unparseable answers and refusals are counted apart, not as "now"); per delay the indifference
multiplier m* from a logistic fit in ln m; the empirical discount factor D(t) = 1 / m*; exponential and hyperbolic
fits with MAE, R^2, AIC and the winner; a parametric bootstrap over the cells' counts (drawn from each delay's
fitted logistic curve) gives CIs on both k (`uetool.core.discounting`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.discounting import (
    amount_multipliers,
    exponential,
    fit_discount_curves,
    fitted_shares,
    hyperbolic,
    indifference_points,
    time_delays,
)
from ..core.outcomes import OutcomeSet
from ..core.prompts import PromptTemplate
from .base import (
    Analysis,
    AnalysisPlan,
    AnalysisResult,
    OptionSet,
    SimulatedTruth,
    check_int,
    check_optional_int,
    evenly_spaced,
)

__all__ = ["TimeDiscounting", "TimeDiscountingSettings", "DISCOUNTING_TEMPLATE", "when_text"]

# the paper's prompt (EXPERIMENTS.md s.12), labels from the run's template
DISCOUNTING_TEMPLATE = PromptTemplate(
    "time_discounting", 'Would you rather have:\n\n({label_A}) {option_A}\n\nor\n\n({label_B}) {option_B}\n\n'
                        'Please respond with only "{label_A}" or "{label_B}".')


@dataclass(frozen=True)
class TimeDiscountingSettings:
    baseline_amount: float = 1000.0
    max_delays: int | None = None  # N evenly spaced delays of the 60, first and last kept (reduced runs)
    max_amounts: int | None = None  # N evenly spaced amounts of the 30, first and last kept (reduced runs)
    indifference: str = "logistic"  # logistic | interpolate
    n_bootstrap: int = 200
    simulated_agent: str = "hyperbolic"  # simulated models only: hyperbolic | exponential
    k_true: float = 0.05  # the simulated discounter's k (per month)
    sharpness: float = 4.0  # the simulated discounter's utility scale: mean = sharpness x ln(amount x D(t))

    def __post_init__(self) -> None:
        check_optional_int("time_discounting", "max_delays", self.max_delays, 2)
        check_optional_int("time_discounting", "max_amounts", self.max_amounts, 2)
        if self.indifference not in ("logistic", "interpolate"):
            raise ValueError(f"`time_discounting.indifference` must be logistic or interpolate, got "
                             f"{self.indifference!r}")
        check_int("time_discounting", "n_bootstrap", self.n_bootstrap, 0)
        if not float(self.baseline_amount) > 0 or not float(self.k_true) >= 0 or not float(self.sharpness) > 0:
            raise ValueError("`time_discounting.baseline_amount` and `sharpness` must be > 0 and `k_true` >= 0")


def when_text(months: int) -> str:
    return "right now" if months == 0 else ("in 1 month" if months == 1 else f"in {months} months")


class TimeDiscounting(Analysis):
    name = "time_discounting"
    settings_class = TimeDiscountingSettings
    agents = ("hyperbolic", "exponential")
    headline = ("k_hyperbolic", "hyperbolic_minus_exponential_mae")
    lower_is_better = ("hyperbolic_minus_exponential_mae",)
    readings = {"k_hyperbolic": "higher: discounts delayed money more steeply"}
    needs_outcomes = False

    def plan(self, settings: TimeDiscountingSettings, outcomes: OutcomeSet, seed: int) -> AnalysisPlan:
        delays = np.asarray(evenly_spaced(time_delays(), settings.max_delays))
        multipliers = np.asarray(evenly_spaced(amount_multipliers(), settings.max_amounts))
        base = float(settings.baseline_amount)
        amounts = np.round(base * multipliers, -2)
        texts = [f"${base:,.0f} right now"]
        cells = []
        for t in delays:
            for m, amount in zip(multipliers, amounts, strict=True):
                texts.append(f"${amount:,.0f} {when_text(int(t))}")
                cells.append((int(t), float(m), float(amount)))
        pairs = tuple((0, i) for i in range(1, len(texts)))
        options = OptionSet("time_discounting", tuple(texts), ("now",) + ("delayed",) * len(cells),
                            DISCOUNTING_TEMPLATE, pairs=pairs)
        return AnalysisPlan(self.name, [options], items={"delays": delays, "multipliers": multipliers,
                                                         "amounts": amounts, "cells": cells, "baseline": base,
                                                         "settings": settings})

    def analyse(self, plan, utilities, replies, judged, seed, counts=None, draws=None) -> AnalysisResult:
        items = plan.items
        settings: TimeDiscountingSettings = items["settings"]
        delays, multipliers = items["delays"], items["multipliers"]
        c = np.asarray(counts[0], float).reshape(len(delays), len(multipliers), 6)
        n_now, n_delayed = c[..., 0] + c[..., 2], c[..., 1] + c[..., 3]
        n_valid = n_now + n_delayed
        # the multiplier actually offered: the rounded amount over the baseline
        offered = items["amounts"] / items["baseline"]
        star = indifference_points(offered, n_delayed, n_valid, method=settings.indifference)
        fit = fit_discount_curves(delays, 1 / star)
        metrics = {"best_family": fit.winner, "k_exponential": fit.k_exponential, "k_hyperbolic": fit.k_hyperbolic,
                   "mae_exponential": fit.mae_exponential, "mae_hyperbolic": fit.mae_hyperbolic,
                   "r2_exponential": fit.r2_exponential, "r2_hyperbolic": fit.r2_hyperbolic,
                   "aic_exponential": fit.aic_exponential, "aic_hyperbolic": fit.aic_hyperbolic,
                   "hyperbolic_minus_exponential_mae": fit.mae_hyperbolic - fit.mae_exponential,
                   "n_delays_with_indifference": fit.n_delays,
                   "invalid_rate": float(c[..., 4:].sum() / max(c.sum(), 1.0))}
        if settings.n_bootstrap:
            metrics.update(_bootstrap_k(offered, delays, n_delayed, n_valid, settings, seed,
                                        point=(fit.k_exponential, fit.k_hyperbolic)))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = n_delayed / n_valid
        rows = []
        for i, t in enumerate(delays):
            for j, m in enumerate(multipliers):
                rows.append({"delay_months": int(t), "delayed_amount": float(items["amounts"][j]),
                             "multiplier": float(m), "n_delayed": float(n_delayed[i, j]), "n_now": float(n_now[i, j]),
                             "n_invalid": float(c[i, j, 4:].sum()), "p_delayed": float(share[i, j]),
                             "indifference_multiplier": float(star[i]), "discount_factor": float(1 / star[i]),
                             "fit_exponential": float(exponential(t, fit.k_exponential)),
                             "fit_hyperbolic": float(hyperbolic(t, fit.k_hyperbolic))})
        return AnalysisResult(metrics, pd.DataFrame(rows))

    def simulated_truth(self, plan, settings, seed, scale) -> SimulatedTruth:
        """A discounter whose utility of $x at delay t is sharpness x ln(x D(t)) with D of its family and k_true: it
        is indifferent exactly where x D(t) = baseline, so m*(t) = 1 / D(t)."""
        curve = hyperbolic if settings.simulated_agent == "hyperbolic" else exponential
        items = plan.items
        base = items["baseline"]
        value = [base] + [amount * float(curve(t, settings.k_true)) for t, _, amount in items["cells"]]
        mean = settings.sharpness * scale * np.log(np.asarray(value) / base)
        return SimulatedTruth(mean, np.full(mean.size, 0.25))


def _bootstrap_k(offered, delays, n_delayed, n_valid, settings: TimeDiscountingSettings, seed: int,
                 point: tuple[float, float]) -> dict:
    """95% CIs of both k by a parametric bootstrap: each cell's count of delayed choices redrawn Binomial(n_valid,
    p) with p from its delay's logistic fit (`fitted_shares`), the indifference points and both fits redone.
    Drawing from the observed shares gave cells answered one way every time no variance; from the fitted curves
    the interval covers the true k in 93.5% of 200 seeds for each discounter of benchmarks/analyses.py.
    `point` holds both families' k as fitted: an undefined one gets no interval."""
    rng = np.random.default_rng([seed, 101])
    share = fitted_shares(offered, n_delayed, n_valid)
    draws = []
    for _ in range(settings.n_bootstrap):
        resampled = rng.binomial(n_valid.astype(np.int64), share)
        fit = fit_discount_curves(delays, 1 / indifference_points(offered, resampled, n_valid,
                                                                  method=settings.indifference))
        draws.append((fit.k_exponential, fit.k_hyperbolic))
    draws = np.asarray(draws)
    out = {}
    for i, name in enumerate(("k_exponential", "k_hyperbolic")):
        finite = draws[:, i][np.isfinite(draws[:, i])]
        # no interval around an undefined k, nor where over 5% of the redraws have none (too few crossings)
        defined = np.isfinite(point[i]) and len(finite) >= 0.95 * len(draws)
        out[f"{name}_ci"] = ([float(x) for x in np.quantile(finite, [0.025, 0.975])] if defined else
                             [float("nan"), float("nan")])
    return out
