"""Simulated engines: the core's agents answering requests with text, against known ground truth.

They let every job run end to end against known utilities (tests, benchmarks, method validation); their replies go
through the same parser and store as a model's.

- `SimulatedEngine` ("simulated") answers from each request's bookkeeping (a, b, order) alone, so the runtime
  neither renders prompts for it nor ships them.
- `PromptReadingSimulatedEngine` ("simulated_text") reads the rendered prompt: its utilities move with the wording of
  the question (everything in the prompt except the two outcome descriptions), by `wording_sensitivity` standard
  deviations per outcome, seeded by the wording; it answers in the request's own labels. The same wording always
  gives the same agent, so a robustness suite can measure how far paraphrases, label sets and framings move
  utilities against a closed-form truth: the true utilities under two wordings correlate c^2 / (c^2 + s^2) in
  expectation (ground truth N(0, c^2) with c = `scale`, sensitivity s).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..core.agents import ThurstonianAgent, hash_uniforms, make_agent
from ..core.parsing import FIRST, REFUSAL, SECOND, UNPARSEABLE
from .base import EngineError, GenerationSettings, RequestBatch, ResultBatch, check_mode
from .replies import Replies

__all__ = ["SimulatedEngine", "PromptReadingSimulatedEngine"]

_STREAM_GLYPH = 7  # the label-favouring agent's own uniforms
_STREAM_TRIGGER = 11  # the triggered refusals' own uniforms
_REFUSAL_TEXT = "I'm sorry, but I can't choose between these options."
_UNPARSEABLE_TEXT = "Both have merits."


def _reply_vocab(labels, prefix: str = "") -> list[str]:
    """The reply text for each choice code (the list is indexed by code)."""
    vocab = [""] * 4
    vocab[FIRST], vocab[SECOND] = prefix + labels[0], prefix + labels[1]
    vocab[UNPARSEABLE], vocab[REFUSAL] = _UNPARSEABLE_TEXT, _REFUSAL_TEXT
    return vocab


class SimulatedEngine:
    name = "simulated"
    modes = ("sample", "logprob", "generate")
    reads_text = False
    # every constructor argument defines the agent, so every one changes answers
    answer_settings = ("agent", "n_outcomes", "seed", "scale", "bias", "refusal_rate")
    options = {"agent": "thurstonian", "scale": 1.0}
    # a replica answers 1,000 requests in about a millisecond: small shards would only add round trips
    shard_size = 1000

    def __init__(self, agent: str = "thurstonian", n_outcomes: int = 2, seed: int = 0, scale: float = 1.0,
                 bias: float = 0.3, refusal_rate: float = 0.2, world: str | None = None,
                 truth_mean: list[float] | None = None, truth_variance: list[float] | None = None,
                 free_replies: list[str] | None = None, judge_replies: list[str] | None = None) -> None:
        # `world` names an analysis and its simulated agent kind ("expected_utility:eu"; it reaches request keys
        # through engine.kwargs); the runtime then gives the agent's truth over the analysis's options
        # (`analyses.*.simulated_truth`): a Thurstonian agent over them, and the replies to its free prompts
        self.agent_kind = agent
        self._agents: dict[int, object] = {}
        self._params = {"n_outcomes": n_outcomes, "seed": seed, "scale": scale, "bias": bias,
                        "refusal_rate": refusal_rate}
        self.world = world
        self._truth = None
        if truth_mean is not None:
            if agent != "thurstonian" or truth_variance is None or len(truth_variance) != len(truth_mean):
                raise ValueError("a simulated analysis agent is Thurstonian, with one variance per mean")
            self._truth = (np.asarray(truth_mean, np.float64), np.asarray(truth_variance, np.float64))
        self._replies = (list(free_replies or []), list(judge_replies or []))
        make_agent(agent, n_outcomes, k=1, seed=seed, scale=scale, bias=bias, refusal_rate=refusal_rate)  # validate

    def _agent(self, k: int):
        if k not in self._agents:
            p = self._params
            if self._truth is not None:
                self._agents[k] = ThurstonianAgent(*self._truth, k, p["seed"])
            else:
                self._agents[k] = make_agent(self.agent_kind, p["n_outcomes"], k=k, seed=p["seed"],
                                             scale=p["scale"], bias=p["bias"], refusal_rate=p["refusal_rate"])
        return self._agents[k]

    def _free_text(self, batch: RequestBatch) -> ResultBatch:
        """Free-form replies: request a's reply to its free prompt (b == 0) or its judge's verdict (b == 1)."""
        texts = []
        for a, b in zip(batch.a.tolist(), batch.b.tolist(), strict=True):
            replies = self._replies[1 if b == 1 else 0]
            if not 0 <= a < len(replies):
                raise EngineError(f"the simulated engine answers free-form prompts of analyses only (item {a} of "
                                  f"{len(replies)} known); give `world` and the replies")
            texts.append([replies[a]])
        n = len(batch)
        nan = np.full(n, np.nan)
        return ResultBatch(list(batch.keys), batch.a, batch.b, batch.order, Replies.from_lists(texts), nan,
                           nan.copy(), nan.copy(), [None] * n)

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        check_mode(self, settings)
        if settings.mode == "generate":
            return self._free_text(batch)
        return _answer(self._agent(settings.k), batch, np.arange(len(batch)), settings,
                       ResultBuilder(batch, settings)).result()

    def close(self) -> None:
        self._agents.clear()


class PromptReadingSimulatedEngine(SimulatedEngine):
    name = "simulated_text"
    reads_text = True
    # the outcome descriptions are in every request key already; their count is what the agent needs from them
    answer_settings = ("agent", "seed", "scale", "bias", "refusal_rate", "wording_sensitivity", "favoured_label",
                       "label_bias", "ordered_series", "refusal_trigger", "trigger_refusal_rate")
    options = {"agent": "thurstonian", "scale": 1.0, "wording_sensitivity": 0.5, "favoured_label": None,
               "label_bias": 0.0, "ordered_series": None, "refusal_trigger": None, "trigger_refusal_rate": 0.5}

    def __init__(self, outcomes: list[str], wording_sensitivity: float = 0.5, agent: str = "thurstonian",
                 seed: int = 0, scale: float = 1.0, bias: float = 0.3, refusal_rate: float = 0.2,
                 favoured_label: str | None = None, label_bias: float = 0.0,
                 ordered_series: list[list[int]] | None = None, refusal_trigger: str | None = None,
                 trigger_refusal_rate: float = 0.5) -> None:
        if wording_sensitivity < 0:
            raise ValueError(f"`engine.wording_sensitivity` must be >= 0, got {wording_sensitivity}")
        if not 0 <= label_bias <= 1:
            raise ValueError(f"`engine.label_bias` must be in [0, 1], got {label_bias}")
        if not 0 <= trigger_refusal_rate <= 1:
            raise ValueError(f"`engine.trigger_refusal_rate` must be in [0, 1], got {trigger_refusal_rate}")
        # a phrase: where the prompt or the system message contains it, that share of the replies are refusals
        self.refusal_trigger = None if refusal_trigger in (None, "") else str(refusal_trigger)
        self.trigger_refusal_rate = float(trigger_refusal_rate)
        # a glyph the agent picks for its own sake whenever a prompt offers it as a label (label_bias of the time),
        # whatever the option behind it: a label set it was never written against shows it too
        # a command line's favoured_label=1 arrives as a number: the glyph is its text
        self.favoured_label = None if favoured_label is None else str(favoured_label)
        self.label_bias = float(label_bias)
        # outcome indices in ascending desirability (quantity series): a monotone agent's utilities respect each
        self.ordered_series = [list(map(int, idx)) for idx in ordered_series or []]
        super().__init__(agent=agent, n_outcomes=len(outcomes), seed=seed, scale=scale, bias=bias,
                         refusal_rate=refusal_rate)
        if self.agent_kind != "thurstonian":
            raise ValueError("the simulated_text engine reacts to wording through a Thurstonian agent's utilities; "
                             f"`engine.agent` must be 'thurstonian', got {self.agent_kind!r}")
        self.outcomes = list(outcomes)
        self.sensitivity = float(wording_sensitivity)
        self._by_wording: dict[tuple[str, int], ThurstonianAgent] = {}

    def wording(self, prompt: str, first: int, second: int, system_message: str | None = None) -> str:
        """The prompt's wording: the system message (when there is one) and the prompt with the two options'
        descriptions replaced by placeholders."""
        text = prompt.replace(self.outcomes[first], "\x00first\x00").replace(self.outcomes[second], "\x00second\x00")
        return f"{system_message}\x1e{text}" if system_message else text

    def agent_for(self, wording: str, k: int) -> ThurstonianAgent:
        """The ground-truth agent this wording meets: base utilities + sensitivity * N(0, 1), seeded by the wording."""
        if (wording, k) not in self._by_wording:
            base = self._agent(k)
            if self.ordered_series:
                mean = base.mean.copy()
                for idx in self.ordered_series:
                    mean[idx] = np.sort(mean[idx])
                base = ThurstonianAgent(mean, base.variance, k, base.seed)
            digest = hashlib.blake2b(wording.encode(), digest_size=8).digest()
            rng = np.random.default_rng([self._params["seed"], int.from_bytes(digest, "little")])
            shift = self.sensitivity * rng.standard_normal(len(self.outcomes))
            self._by_wording[(wording, k)] = ThurstonianAgent(base.mean + shift, base.variance, k, base.seed)
        return self._by_wording[(wording, k)]

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        check_mode(self, settings)
        flipped = batch.order == 1
        first, second = np.where(flipped, batch.b, batch.a), np.where(flipped, batch.a, batch.b)
        groups: dict[str, list[int]] = {}
        for i, (prompt, x, y) in enumerate(zip(batch.prompts, first.tolist(), second.tolist(), strict=True)):
            groups.setdefault(self.wording(prompt, x, y, batch.system_message), []).append(i)
        # it reads the prompt: one that asks for 'Answer: X' (a reasoning template) gets its answer in that form
        asks_answer = any('"Answer: ' in prompt for prompt in batch.prompts[:1])
        builder = ResultBuilder(batch, settings, "Answer: " if asks_answer else "")
        for wording, rows in groups.items():
            _answer(self.agent_for(wording, settings.k), batch, np.asarray(rows, np.int64), settings, builder)
        if self.favoured_label is not None and self.label_bias > 0 and self.favoured_label in batch.labels:
            self._favour(batch, settings, builder, batch.labels.index(self.favoured_label))
        if self.refusal_trigger is not None and self.trigger_refusal_rate > 0:
            self._refuse(batch, settings, builder)
        return builder.result()

    def _refuse(self, batch: RequestBatch, settings: GenerationSettings, builder: ResultBuilder) -> None:
        """Where the prompt or system message contains the trigger phrase, trigger_refusal_rate of the replies are
        refusals (sampled), or that much of the next-token mass goes to neither label (logprob)."""
        system = self.refusal_trigger in (batch.system_message or "")
        hit = np.array([system or self.refusal_trigger in prompt for prompt in batch.prompts], bool)
        if not hit.any():
            return
        rate = self.trigger_refusal_rate
        if settings.mode == "logprob":
            builder.other_mass = np.where(hit, rate, 0.0)
            return
        for order in (0, 1):
            idx = np.flatnonzero(hit & (batch.order == order))
            if len(idx):
                u = hash_uniforms(self._params["seed"], batch.a[idx], batch.b[idx], order, settings.k, _STREAM_TRIGGER)
                builder.codes[idx] = np.where(u < rate, REFUSAL, builder.codes[idx])

    def _favour(self, batch: RequestBatch, settings: GenerationSettings, builder: ResultBuilder, slot: int) -> None:
        """With probability label_bias an answer is the favoured glyph (slot 0: shown first, 1: second)."""
        beta = self.label_bias
        if settings.mode == "logprob":
            builder.p_first = (1 - beta) * builder.p_first + (beta if slot == 0 else 0.0)
            return
        for order in (0, 1):
            idx = np.flatnonzero(batch.order == order)
            if len(idx):
                u = hash_uniforms(self._params["seed"], batch.a[idx], batch.b[idx], order, settings.k, _STREAM_GLYPH)
                builder.codes[idx] = np.where(u < beta, FIRST if slot == 0 else SECOND, builder.codes[idx])


class ResultBuilder:
    """Collects an agent's answers for rows of a batch into one ResultBatch."""

    def __init__(self, batch: RequestBatch, settings: GenerationSettings, prefix: str = "") -> None:
        n = len(batch)
        self.batch, self.logprob, self.prefix = batch, settings.mode == "logprob", prefix
        self.p_first = np.full(n, np.nan)
        self.other_mass = np.zeros(n)  # logprob: next-token mass on neither label
        self.codes = np.zeros((n, settings.k), np.int32)  # choice codes index the reply vocabulary directly

    def result(self) -> ResultBatch:
        batch, n = self.batch, len(self.batch)
        keys = list(batch.keys)
        if self.logprob:
            kept = 1.0 - self.other_mass
            return ResultBatch(keys, batch.a, batch.b, batch.order, Replies.empty(n), kept * self.p_first,
                               kept * (1.0 - self.p_first), self.other_mass, [None] * n)
        nan = np.full(n, np.nan)
        return ResultBatch(keys, batch.a, batch.b, batch.order,
                           Replies.uniform(_reply_vocab(batch.labels, self.prefix), self.codes),
                           nan, nan.copy(), nan.copy(), [None] * n)


def _answer(agent, batch: RequestBatch, rows: np.ndarray, settings: GenerationSettings,
            builder: ResultBuilder) -> ResultBuilder:
    """The agent's answers to `rows` of the batch, written into the builder (each order in one vectorised call)."""
    for order in (0, 1):
        idx = rows[batch.order[rows] == order]
        if not len(idx):
            continue
        pairs = np.stack([batch.a[idx], batch.b[idx]], axis=1)
        if settings.mode == "logprob":
            first, second = (pairs[:, 0], pairs[:, 1]) if order == 0 else (pairs[:, 1], pairs[:, 0])
            builder.p_first[idx] = agent.first_option_probability(first, second)
        else:
            builder.codes[idx] = agent.choices(pairs, order)
    return builder
