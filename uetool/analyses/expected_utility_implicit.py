"""Expected utility over implicit lotteries (EXPERIMENTS.md s.7): is an uncertain event worth the probability-
weighted worth of its resolutions?

Each event is followed by its resolutions, then the run's base outcomes as background (the reference's order), all
fitted jointly under the run's template; the metrics of s.6 over the events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.lotteries import events_from_json, expected_utilities, expected_utility_metrics
from ..core.outcomes import OutcomeSet
from .base import Analysis, AnalysisPlan, AnalysisResult, OptionSet, SimulatedTruth, base_truth, check_optional_int
from .data import load_json

__all__ = ["ExpectedUtilityImplicit", "ImplicitSettings"]


@dataclass(frozen=True)
class ImplicitSettings:
    events: str = "builtin"  # builtin (uetool's 20 events) or a path to a file in the paper's format
    max_events: int | None = None  # the first N events only (reduced runs)
    background: bool = True  # fit the run's base outcomes alongside (the paper's 510)
    max_outcomes: int | None = None  # the run's first N outcomes only as background (reduced runs)
    simulated_agent: str = "eu"  # simulated engines only: eu | max_outcome

    def __post_init__(self) -> None:
        check_optional_int("expected_utility_implicit", "max_events", self.max_events, 2)
        check_optional_int("expected_utility_implicit", "max_outcomes", self.max_outcomes, 1)


class ExpectedUtilityImplicit(Analysis):
    name = "expected_utility_implicit"
    settings_class = ImplicitSettings
    agents = ("eu", "max_outcome")
    headline = ("mae_normalized", "order_preservation")
    lower_is_better = ("mae_normalized",)

    def plan(self, settings: ImplicitSettings, outcomes: OutcomeSet, seed: int) -> AnalysisPlan:
        data = load_json(settings.events, "implicit_lotteries.json", "`expected_utility_implicit.events`")
        if settings.max_events is not None and isinstance(data, dict) and isinstance(data.get("base_options"), list):
            data = {"base_options": data["base_options"][:settings.max_events]}
        texts, events = events_from_json(data)
        if len(events) < 2:
            raise ValueError(f"`expected_utility_implicit.events`: needs at least 2 events, got {len(events)}")
        is_event = {e.event for e in events}
        categories = ["event" if i in is_event else "resolution" for i in range(len(texts))]
        n_events_part = len(texts)
        if settings.background:
            if settings.max_outcomes is not None:
                outcomes = outcomes.subset(range(min(settings.max_outcomes, len(outcomes))))
            texts += list(outcomes.descriptions)
            categories += [c or "background" for c in outcomes.categories]
        options = OptionSet("implicit_lotteries", tuple(texts), tuple(categories), None)  # the run's template
        return AnalysisPlan(self.name, [options], items={"events": events, "n_event_options": n_events_part,
                                                         "n_background": len(texts) - n_events_part})

    def analyse(self, plan, utilities, replies, judged, seed, counts=None, draws=None) -> AnalysisResult:
        events = plan.items["events"]
        mu = np.asarray(utilities[0], np.float64)
        ids = [e.event for e in events]
        metrics = expected_utility_metrics(mu, mu[ids], events, seed=seed)
        texts = plan.option_sets[0].texts
        eu = expected_utilities(mu, events)
        items = pd.DataFrame({"event": [texts[i] for i in ids], "n_resolutions": [len(e.outcomes) for e in events],
                              "probabilities": [e.probabilities.tolist() for e in events],
                              "utility": mu[ids], "expected_utility": eu})
        return AnalysisResult(metrics, items)

    def simulated_truth(self, plan, settings, seed, scale) -> SimulatedTruth:
        n_events_part, n_background = plan.items["n_event_options"], plan.items["n_background"]
        rng = np.random.default_rng([seed, 89])
        mean = rng.normal(size=n_events_part) * scale
        variance = rng.uniform(0.05, 0.5, n_events_part)
        for event in plan.items["events"]:
            resolutions = mean[list(event.outcomes)]
            mean[event.event] = (float(resolutions @ event.probabilities) if settings.simulated_agent == "eu"
                                 else float(resolutions.max()))
        background = base_truth(n_background, seed, scale)
        return SimulatedTruth(np.concatenate([mean, background.mean]),
                              np.concatenate([variance, background.variance]))
