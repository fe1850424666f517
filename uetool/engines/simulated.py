"""Simulated engine: the core's agents answering real prompts' bookkeeping (a, b, order) with text.

It lets every job run end to end against known ground truth (tests, benchmarks, method validation). Its replies
go through the same parser and store as a model's.
"""

from __future__ import annotations

import numpy as np

from ..core.agents import make_agent
from ..core.parsing import FIRST, REFUSAL, SECOND, UNPARSEABLE
from .base import ElicitationRequest, ElicitationResult, GenerationSettings, RequestBatch, ResultBatch
from .replies import Replies

__all__ = ["SimulatedEngine"]

_REFUSAL_TEXT = "I'm sorry, but I can't choose between these options."
_UNPARSEABLE_TEXT = "Both have merits."


def _reply_vocab(labels) -> list[str]:
    """The reply text for each choice code (the list is indexed by code)."""
    vocab = [""] * 4
    vocab[FIRST], vocab[SECOND] = labels[0], labels[1]
    vocab[UNPARSEABLE], vocab[REFUSAL] = _UNPARSEABLE_TEXT, _REFUSAL_TEXT
    return vocab


class SimulatedEngine:
    name = "simulated"

    def __init__(self, agent: str = "thurstonian", n_outcomes: int = 2, seed: int = 0, scale: float = 1.0,
                 bias: float = 0.3, refusal_rate: float = 0.2, **_ignored) -> None:
        self.agent_kind = agent
        self._agents: dict[int, object] = {}
        self._params = {"n_outcomes": n_outcomes, "seed": seed, "scale": scale, "bias": bias,
                        "refusal_rate": refusal_rate}

    def _agent(self, k: int):
        if k not in self._agents:
            p = self._params
            self._agents[k] = make_agent(self.agent_kind, p["n_outcomes"], k=k, seed=p["seed"], scale=p["scale"],
                                         bias=p["bias"], refusal_rate=p["refusal_rate"])
        return self._agents[k]

    def generate(self, requests: list[ElicitationRequest], settings: GenerationSettings) -> list[ElicitationResult]:
        if not requests:
            return []
        agent = self._agent(settings.k)
        results: list[ElicitationResult | None] = [None] * len(requests)
        for order in (0, 1):
            idx = [i for i, r in enumerate(requests) if r.order == order]
            if not idx:
                continue
            pairs = np.array([[requests[i].a, requests[i].b] for i in idx], np.int64)
            if settings.mode == "logprob":
                first, second = (pairs[:, 0], pairs[:, 1]) if order == 0 else (pairs[:, 1], pairs[:, 0])
                p_first = agent.first_option_probability(first, second)
                for j, i in enumerate(idx):
                    results[i] = ElicitationResult(requests[i].key, probs=(float(p_first[j]), float(1 - p_first[j])),
                                                   other_mass=0.0)
                continue
            codes = agent.choices(pairs, order)
            for j, i in enumerate(idx):
                vocab = _reply_vocab(requests[i].labels)
                results[i] = ElicitationResult(requests[i].key, texts=[vocab[c] for c in codes[j].tolist()])
        return results  # type: ignore[return-value]

    def generate_batch(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        """The same answers as `generate`, computed on columns (the runtime's fast path for large simulations)."""
        n = len(batch)
        agent = self._agent(settings.k)
        nan = np.full(n, np.nan)
        p_first = nan.copy()
        # choice codes index the reply vocabulary directly
        codes = np.zeros((n, settings.k), np.int32)
        for order in (0, 1):
            idx = np.flatnonzero(batch.order == order)
            if not len(idx):
                continue
            pairs = np.stack([batch.a[idx], batch.b[idx]], axis=1)
            if settings.mode == "logprob":
                first, second = (pairs[:, 0], pairs[:, 1]) if order == 0 else (pairs[:, 1], pairs[:, 0])
                p_first[idx] = agent.first_option_probability(first, second)
            else:
                codes[idx] = agent.choices(pairs, order)
        if settings.mode == "logprob":
            return ResultBatch(list(batch.keys), batch.a, batch.b, batch.order, Replies.empty(n), p_first,
                               1.0 - p_first, np.zeros(n), [None] * n)
        return ResultBatch(list(batch.keys), batch.a, batch.b, batch.order,
                           Replies.uniform(_reply_vocab(batch.labels), codes), nan,
                           nan.copy(), nan.copy(), [None] * n)

    def close(self) -> None:
        self._agents.clear()
