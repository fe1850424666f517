"""What every analysis is: option sets to fit, free-form prompts to ask, a metric over the answers (pure; no Ray).

An analysis turns its settings and the run's base outcomes into an `AnalysisPlan`: one or more `OptionSet`s (texts
shown pairwise with a template and fitted by active learning, each set on its own) and, for analyses that need them,
`FreePrompt`s (questions answered in free text). The runtime asks everything through the engine pool and the
response store, then hands the fitted utilities and the replies back to `analyse`, which returns the headline
metrics (`AnalysisResult.metrics`, with CIs) and a per-item table.

An analysis whose later sets depend on earlier fits (corrigibility samples its difference options from the base
utilities) adds them in `extend`; `simulated_truth` then covers the plan as extended so far.

For the simulated engine, `simulated_truth` gives the ground truth an agent of a named kind answers from: one
utility mean and variance per option of every set (in plan order) and the reply to each free prompt. Indices of
the concatenated sets are what the runtime sends the simulated engine, so it answers without reading prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..core.agents import ThurstonianAgent
from ..core.outcomes import OutcomeSet
from ..core.prompts import PromptTemplate

__all__ = ["OptionSet", "FreePrompt", "AnalysisPlan", "AnalysisResult", "SimulatedTruth", "Analysis",
           "base_truth", "check_int", "check_optional_int", "check_share", "evenly_spaced"]


@dataclass(frozen=True)
class OptionSet:
    """Options fitted jointly: `texts[i]` is option i; `categories[i]` says what kind of option it is."""

    name: str  # unique within the plan; names the set's checkpoint and its rows in the result files
    texts: tuple[str, ...]
    categories: tuple[str, ...]
    template: PromptTemplate | None  # None: the run's template (elicitation.template)
    # None: fitted by active learning. Else the (a, b) option pairs asked as given, each in both orders with the
    # run's K answers per order, and not fitted: the analysis reads their answer counts (direct binary choices).
    pairs: tuple[tuple[int, int], ...] | None = None
    # this set's own generation settings over the run's (`mode`, `k`, `max_tokens`, `temperature`): political
    # values asks the model itself K=10 directly and its simulated entities K=5 with reasoning, as the paper did
    generation: dict | None = None

    def __post_init__(self) -> None:
        if len(self.texts) < 2:
            raise ValueError(f"option set {self.name!r} needs at least 2 options, got {len(self.texts)}")
        if self.pairs is not None:
            pairs = np.asarray(self.pairs, np.int64).reshape(-1, 2)
            if not len(pairs) or pairs.min() < 0 or pairs.max() >= len(self.texts):
                raise ValueError(f"option set {self.name!r}: pairs must index its {len(self.texts)} options")
        elif len(set(self.texts)) != len(self.texts):
            dup = next(t for t in self.texts if self.texts.count(t) > 1)
            raise ValueError(f"option set {self.name!r} shows the option {dup!r} twice; options must be distinct")
        unknown = sorted(set(self.generation or {}) - {"mode", "k", "max_tokens", "temperature"})
        if unknown:
            raise ValueError(f"option set {self.name!r}: unknown generation settings {unknown}")
        if len(self.categories) != len(self.texts):
            raise ValueError(f"option set {self.name!r}: {len(self.categories)} categories for {len(self.texts)} "
                             "options")

    def outcome_set(self) -> OutcomeSet:
        ids = tuple(f"{self.name}:{i}" for i in range(len(self.texts)))
        return OutcomeSet(ids, self.texts, self.categories, source=f"<{self.name}>")


@dataclass(frozen=True)
class FreePrompt:
    """A question answered in free text (temperature 0, one sample); `item` says which item it belongs to."""

    item: int
    text: str


@dataclass
class AnalysisPlan:
    experiment: str
    option_sets: list[OptionSet]
    free_prompts: list[FreePrompt] = field(default_factory=list)
    items: Any = None  # the analysis's own item objects (lotteries, events, processes, questions)

    def offsets(self) -> list[int]:
        """Index of each set's first option among all options of the plan (set order)."""
        sizes = [len(s.texts) for s in self.option_sets]
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist() if sizes else []

    @property
    def n_options(self) -> int:
        return sum(len(s.texts) for s in self.option_sets)


@dataclass
class AnalysisResult:
    metrics: dict  # headline metrics (and their `<name>_ci`), json-safe
    items: pd.DataFrame  # one row per item (lottery, event, option, question)


@dataclass
class SimulatedTruth:
    """A simulated agent's ground truth for a plan: per option (plan order) a mean and a variance; per free prompt
    its reply; per free prompt the reply its judge gives (the answer it meant, which a judge shown the right
    candidates would name)."""

    mean: np.ndarray
    variance: np.ndarray
    free_replies: list[str] = field(default_factory=list)
    judge_replies: list[str] = field(default_factory=list)


def evenly_spaced(values, n: int | None) -> list:
    """`n` evenly spaced entries of `values`, the first and the last kept (reduced runs); all for None or n >= len."""
    values = list(values)
    if n is None or n >= len(values):
        return values
    if n == 0:
        return []
    return [values[i] for i in np.unique(np.round(np.linspace(0, len(values) - 1, n)).astype(int))]


def check_optional_int(section: str, name: str, value: object, low: int) -> None:
    """A reduced-run limit (`max_events`, `max_answers`, ...): null, or an integer >= `low`."""
    if value is not None and (not isinstance(value, int) or value < low):
        raise ValueError(f"`{section}.{name}` must be an integer >= {low} or null, got {value!r}")


def check_int(section: str, name: str, value: object, low: int) -> None:
    """A required integer setting (`n_bootstrap`, `fit_draws`, ...): an integer >= `low`."""
    if not isinstance(value, int) or value < low:
        raise ValueError(f"`{section}.{name}` must be an integer >= {low}, got {value!r}")


def check_share(section: str, name: str, value: object) -> None:
    """A setting in [0, 1] (a simulated agent's `strength`)."""
    if not 0 <= float(value) <= 1:
        raise ValueError(f"`{section}.{name}` must be in [0, 1], got {value!r}")


def base_truth(n: int, seed: int, scale: float) -> ThurstonianAgent:
    """The benchmark's standard truth: mu ~ N(0, 1) * scale, sigma2 ~ U(0.05, 0.5) (the simulated engine's own)."""
    return ThurstonianAgent.random_truth(n, k=1, seed=seed, scale=scale)


class Analysis:
    """One analysis: subclasses set `name`, `settings_class`, `agents` (simulated agent kinds, the first is the
    default) and implement `plan`, `analyse` and `simulated_truth`."""

    name: ClassVar[str]
    settings_class: ClassVar[type]
    agents: ClassVar[tuple[str, ...]]
    headline: ClassVar[tuple[str, ...]]  # metric keys the report plots against capability (lower/higher better)
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    # how to read a headline metric whose direction is no verdict (the report's captions): {metric: reading}
    readings: ClassVar[dict[str, str]] = {}
    needs_outcomes: ClassVar[bool] = True  # whether the base outcome set enters the plan
    # the items column naming each row's option set when every set is a run of its own: each then also gets a
    # folder `<out>/<set>/` with its utilities, edges and items (None: one folder for the analysis)
    set_column: ClassVar[str | None] = None

    def settings(self, values: dict | None):
        values = dict(values or {})
        known = set(self.settings_class.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown `{self.name}` keys {unknown}; known: {sorted(known)}")
        settings = self.settings_class(**values)
        agent = getattr(settings, "simulated_agent", None)
        if agent is not None and agent not in self.agents:
            raise ValueError(f"`{self.name}.simulated_agent` must be one of {self.agents}, got {agent!r}")
        return settings

    def plan(self, settings, outcomes: OutcomeSet, seed: int) -> AnalysisPlan:
        raise NotImplementedError

    def analyse(self, plan: AnalysisPlan, utilities: list[np.ndarray | None], replies: list[str | None],
                judged: list[str | None], seed: int, counts: list[np.ndarray | None] | None = None,
                draws: list[np.ndarray | None] | None = None) -> AnalysisResult:
        """`utilities[i]`: the fitted means of option set i (None for a set of fixed pairs); `counts[i]`: the answer
        counts of a fixed-pairs set, one row per pair (`uetool.core.edges.counts_from_choices` columns: a first,
        b first, a when flipped, b when flipped, unparseable, refusals), None for a fitted set; `draws[i]`: when
        `utility_draws` asks for them, (draws, options) replicates of set i's fitted means from an edge bootstrap
        of its fit (on the scale of `utilities[i]`), for CIs that carry the fit's own uncertainty."""
        raise NotImplementedError

    def extend(self, plan: AnalysisPlan, utilities: list[np.ndarray | None], seed: int) -> list[OptionSet]:
        """Option sets that depend on the fits so far (`utilities`, one per set of the plan, in order), asked after
        them; the runtime appends them to the plan and calls again until none come. Items they need go into
        `plan.items`. Default: none (every set is known up front)."""
        return []

    def utility_draws(self, settings) -> int:
        """How many edge-bootstrap replicates of each fit `analyse` wants (0: none)."""
        return 0

    def simulated_truth(self, plan: AnalysisPlan, settings, seed: int, scale: float) -> SimulatedTruth:
        raise NotImplementedError

    def judge_prompts(self, plan: AnalysisPlan, utilities: list[np.ndarray],
                      replies: list[str | None]) -> list[str | None]:
        """Per free prompt: the prompt a judge model is shown, or None where the reply needs no judge."""
        return [None] * len(plan.free_prompts)
