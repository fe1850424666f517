"""The paper's analyses (pure: items to ask, metrics from fitted utilities and replies); `ANALYSES` by name."""

from __future__ import annotations

from .base import Analysis, AnalysisPlan, AnalysisResult, FreePrompt, OptionSet, SimulatedTruth
from .corrigibility import Corrigibility
from .exchange_rates import ExchangeRates
from .expected_utility import ExpectedUtility
from .expected_utility_implicit import ExpectedUtilityImplicit
from .fitness import Fitness
from .instrumentality import Instrumentality
from .maximization import Maximization
from .political_values import PoliticalValues
from .power_seeking import PowerSeeking
from .time_discounting import TimeDiscounting

__all__ = ["ANALYSES", "Analysis", "AnalysisPlan", "AnalysisResult", "FreePrompt", "OptionSet", "SimulatedTruth",
           "get_analysis"]

ANALYSES: dict[str, Analysis] = {a.name: a for a in (ExpectedUtility(), ExpectedUtilityImplicit(), Instrumentality(),
                                                     Maximization(), ExchangeRates(), TimeDiscounting(),
                                                     PoliticalValues(), PowerSeeking(), Fitness(), Corrigibility())}


def get_analysis(name: str) -> Analysis:
    if name not in ANALYSES:
        raise ValueError(f"unknown experiment {name!r}; known: compute_utilities, {', '.join(sorted(ANALYSES))}")
    return ANALYSES[name]
