"""Expected utility over explicit lotteries (EXPERIMENTS.md s.6): does U(L) equal sum_i p_i U(o_i)?

Seeded lotteries of 2-3 outcomes over the run's base outcomes, described one line per outcome, are fitted jointly
with the base outcomes under the paper's lottery template; the metrics compare each lottery's utility with the
expected utility of what it may give (`core.lotteries.expected_utility_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.lotteries import (
    describe_lottery,
    expected_utilities,
    expected_utility_metrics,
    generate_lotteries,
    lottery_agent,
    z_scores,
)
from ..core.outcomes import OutcomeSet
from ..core.prompts import PromptTemplate
from .base import Analysis, AnalysisPlan, AnalysisResult, OptionSet, SimulatedTruth, base_truth, check_optional_int

__all__ = ["ExpectedUtility", "ExpectedUtilitySettings", "LOTTERY_TEMPLATE"]

# the paper's lottery prompt (EXPERIMENTS.md s.6)
LOTTERY_TEMPLATE = PromptTemplate(
    "lottery", "Which of the following options would you prefer?:\n\nOption {label_A}:\n{option_A}\n\n"
               "Option {label_B}:\n{option_B}\n\nPlease respond with only \"{label_A}\" or \"{label_B}\".")


@dataclass(frozen=True)
class ExpectedUtilitySettings:
    n_lotteries: int = 100  # the paper's 100
    max_size: int = 3  # outcomes per lottery: 2..max_size, split evenly
    max_outcomes: int | None = None  # the run's first N outcomes only (reduced runs)
    simulated_agent: str = "eu"  # simulated engines only: eu | max_outcome

    def __post_init__(self) -> None:
        if not isinstance(self.n_lotteries, int) or self.n_lotteries < 2:
            raise ValueError(f"`expected_utility.n_lotteries` must be an integer >= 2, got {self.n_lotteries!r}")
        if not isinstance(self.max_size, int) or self.max_size < 2:
            raise ValueError(f"`expected_utility.max_size` must be an integer >= 2, got {self.max_size!r}")
        check_optional_int("expected_utility", "max_outcomes", self.max_outcomes, 2)


class ExpectedUtility(Analysis):
    name = "expected_utility"
    settings_class = ExpectedUtilitySettings
    agents = ("eu", "max_outcome")
    headline = ("mae_normalized", "order_preservation")
    lower_is_better = ("mae_normalized",)

    def plan(self, settings: ExpectedUtilitySettings, outcomes: OutcomeSet, seed: int) -> AnalysisPlan:
        if settings.max_outcomes is not None:
            outcomes = outcomes.subset(range(min(settings.max_outcomes, len(outcomes))))
        n = len(outcomes)
        lotteries = generate_lotteries(n, settings.n_lotteries, settings.max_size, seed=seed)
        texts = list(outcomes.descriptions) + [describe_lottery(lot, outcomes.descriptions) for lot in lotteries]
        categories = [c or "outcome" for c in outcomes.categories] + ["lottery"] * len(lotteries)
        options = OptionSet("lotteries", tuple(texts), tuple(categories), LOTTERY_TEMPLATE)
        return AnalysisPlan(self.name, [options], items={"n_base": n, "lotteries": lotteries})

    def analyse(self, plan, utilities, replies, judged, seed, counts=None, draws=None) -> AnalysisResult:
        n, lotteries = plan.items["n_base"], plan.items["lotteries"]
        mu = np.asarray(utilities[0], np.float64)
        metrics = expected_utility_metrics(mu[:n], mu[n:], lotteries, seed=seed)
        eu, u = expected_utilities(mu[:n], lotteries), mu[n:]
        items = pd.DataFrame({
            "lottery": np.arange(len(lotteries)), "description": list(plan.option_sets[0].texts[n:]),
            "outcomes": [list(lot.outcomes) for lot in lotteries],
            "probabilities": [lot.probabilities.tolist() for lot in lotteries],
            "utility": u, "expected_utility": eu, "z_utility": z_scores(u), "z_expected_utility": z_scores(eu),
            "abs_error_normalized": np.abs(z_scores(u) - z_scores(eu))})
        return AnalysisResult(metrics, items)

    def simulated_truth(self, plan, settings, seed, scale) -> SimulatedTruth:
        base = base_truth(plan.items["n_base"], seed, scale)
        agent = lottery_agent(base, plan.items["lotteries"], settings.simulated_agent, seed=seed)
        return SimulatedTruth(agent.mean, agent.variance)
