"""Instrumental values (EXPERIMENTS.md s.8): do utilities of states reflect where the states lead?

Per world (`natural`: the processes as written; `unnatural`: the control with the two actions' transition rows
swapped) one option set holds every process's rollout prefixes, fitted jointly under the run's template; the
score is the mean |Bellman error| of the R/V fit per process, averaged over processes (lower: more instrumental).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.instrumentality import (
    GAMMA,
    fit_rewards_values,
    instrumental_utilities,
    prefix_options,
    processes_from_json,
    rollouts,
    unnatural,
)
from ..core.metrics import bootstrap_mean_ci
from ..core.outcomes import OutcomeSet
from .base import Analysis, AnalysisPlan, AnalysisResult, OptionSet, SimulatedTruth, check_optional_int
from .data import load_json

__all__ = ["Instrumentality", "InstrumentalitySettings", "WORLDS"]

WORLDS = ("natural", "unnatural")
GOOD_END, BAD_END = 2, 3  # the paper's 4-state shape: actions 0 and 1, then a good and a bad end


@dataclass(frozen=True)
class InstrumentalitySettings:
    processes: str = "both"  # natural | unnatural | both (the report shows both when both ran)
    source: str = "builtin"  # builtin (uetool's 21 processes) or a path to a file in the paper's format
    max_processes: int | None = None  # the first N processes only (reduced runs)
    n_rollouts: int = 100
    max_steps: int = 10
    gamma: float = GAMMA
    simulated_agent: str = "instrumental"  # simulated engines only: instrumental | anti_instrumental

    def __post_init__(self) -> None:
        if self.processes not in (*WORLDS, "both"):
            raise ValueError(f"`instrumentality.processes` must be natural, unnatural or both, got {self.processes!r}")
        check_optional_int("instrumentality", "max_processes", self.max_processes, 1)
        if not isinstance(self.n_rollouts, int) or self.n_rollouts < 1:
            raise ValueError(f"`instrumentality.n_rollouts` must be an integer >= 1, got {self.n_rollouts!r}")
        if not 0 < float(self.gamma) <= 1:
            raise ValueError(f"`instrumentality.gamma` must be in (0, 1], got {self.gamma!r}")

    @property
    def worlds(self) -> tuple[str, ...]:
        return WORLDS if self.processes == "both" else (self.processes,)


class Instrumentality(Analysis):
    name = "instrumentality"
    settings_class = InstrumentalitySettings
    agents = ("instrumental", "anti_instrumental")
    headline = ("score_natural", "score_unnatural")
    lower_is_better = ("score_natural", "score_unnatural")
    needs_outcomes = False

    def plan(self, settings: InstrumentalitySettings, outcomes: OutcomeSet, seed: int) -> AnalysisPlan:
        processes = processes_from_json(load_json(settings.source, "markov_processes.json",
                                                  "`instrumentality.source`"))
        processes = processes[:settings.max_processes] if settings.max_processes else processes
        for process in processes:
            if len(process.observations) != 4 or not (process.terminal[GOOD_END] and process.terminal[BAD_END]):
                raise ValueError(f"Markov process {process.name!r}: instrumentality takes the paper's shape (states "
                                 "0 and 1 actions, 2 the good end, 3 the bad end)")
        sets, worlds = [], []
        for world in settings.worlds:
            per_process, texts, categories = [], [], []
            for i, process in enumerate(processes):
                shown = process if world == "natural" else unnatural(process)
                opts = prefix_options(shown, rollouts(shown, settings.n_rollouts, settings.max_steps,
                                                      seed=seed * 1000 + i))
                per_process.append((process, shown, opts))
                texts += opts.texts
                categories += [process.name] * len(opts.texts)
            sets.append(OptionSet(world, tuple(texts), tuple(categories), None))
            worlds.append((world, per_process))
        return AnalysisPlan(self.name, sets, items={"worlds": worlds, "gamma": float(settings.gamma)})

    def analyse(self, plan, utilities, replies, judged, seed, counts=None, draws=None) -> AnalysisResult:
        metrics, rows = {}, []
        for (world, per_process), mu in zip(plan.items["worlds"], utilities, strict=True):
            losses, start = [], 0
            for process, _, opts in per_process:
                u = np.asarray(mu[start:start + len(opts.texts)], np.float64)
                start += len(opts.texts)
                reward, value, errors = fit_rewards_values(u, opts, plan.items["gamma"])
                losses.append(float(np.mean(np.abs(errors))))
                rows += [{"world": world, "process": process.name, "option": text, "start": bool(is_start),
                          "utility": float(u[j]), "reward": float(reward[j]), "value": float(value[j]),
                          "bellman_error": float(errors[j]), "process_loss": losses[-1]}
                         for j, (text, is_start) in enumerate(zip(opts.texts, opts.starts, strict=True))]
            metrics[f"score_{world}"] = float(np.mean(losses))
            metrics[f"score_{world}_ci"] = bootstrap_mean_ci(np.asarray(losses), seed=seed)
            metrics[f"n_options_{world}"] = int(start)
        metrics["n_processes"] = len(plan.items["worlds"][0][1])
        if "score_natural" in metrics and "score_unnatural" in metrics:
            metrics["natural_minus_unnatural"] = metrics["score_natural"] - metrics["score_unnatural"]
        return AnalysisResult(metrics, pd.DataFrame(rows))

    def simulated_truth(self, plan, settings, seed, scale) -> SimulatedTruth:
        means = []
        for _, per_process in plan.items["worlds"]:
            for process, _, opts in per_process:
                believed = process if settings.simulated_agent == "instrumental" else unnatural(process)
                means.append(instrumental_utilities(opts, believed, {GOOD_END: scale, BAD_END: -scale},
                                                    plan.items["gamma"]))
        mean = np.concatenate(means)
        return SimulatedTruth(mean, np.random.default_rng([seed, 79]).uniform(0.05, 0.5, mean.size))
