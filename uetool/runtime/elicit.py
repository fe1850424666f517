"""Pairs -> prompts in both orders -> stored or newly asked responses -> parsed counts.

`Elicitor` is the `ask(pairs) -> counts` callable that the core's active learning drives. It asks the engine pool
only for requests the store does not hold, stores every response before using it, and counts API failures,
unparseable replies and refusals separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.edges import counts_from_choices
from ..core.outcomes import OutcomeSet
from ..core.parsing import parse_reply
from ..core.prompts import FLIPPED, ORIGINAL, PromptTemplate
from ..engines.base import ElicitationRequest, GenerationSettings
from .store import ResponseStore, key_prefix

__all__ = ["Elicitor", "ElicitationStats"]


@dataclass
class ElicitationStats:
    requests: int = 0
    reused: int = 0
    asked: int = 0
    failed_requests: int = 0
    logprob_other_mass: list = field(default_factory=list)


class Elicitor:
    def __init__(self, outcomes: OutcomeSet, template: PromptTemplate, settings: GenerationSettings, *, pool,
                 store: ResponseStore, model_id: str, revision: str | None, engine_settings: dict,
                 system_message: str | None, parser_style: str = "uetool") -> None:
        self.outcomes, self.template, self.settings = outcomes, template, settings
        self.pool, self.store = pool, store
        self.system_message, self.parser_style = system_message, parser_style
        self.stats = ElicitationStats()
        self._keys = key_prefix(model=model_id, revision=revision, engine_settings=engine_settings,
                                template_digest=template.digest, system_message=system_message, k=settings.k,
                                seed=settings.seed, mode=settings.mode)

    def requests_for(self, pairs: np.ndarray) -> list[ElicitationRequest]:
        out = []
        d = self.outcomes.descriptions
        for a, b in np.asarray(pairs, np.int64).tolist():
            for order, (first, second) in ((ORIGINAL, (a, b)), (FLIPPED, (b, a))):
                prompt = self.template.render(d[first], d[second])
                key = self._keys.key(prompt, order)
                out.append(ElicitationRequest(key, prompt, self.template.labels, self.system_message, a, b, order))
        return out

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        requests = self.requests_for(pairs)
        stored = self.store.load()
        missing = [r for r in requests if r.key not in stored]
        self.stats.requests += len(requests)
        self.stats.reused += len(requests) - len(missing)
        if missing:
            bookkeeping = {r.key: (r.a, r.b, r.order) for r in missing}
            # every shard is written durably as soon as it arrives, before anything uses it
            self.pool.run(missing, self.settings, on_shard=lambda res: self.store.append(res, bookkeeping))
            self.stats.asked += len(missing)
        stored = self.store.load()
        results = [stored[r.key] for r in requests]
        self.stats.failed_requests += sum(1 for r in results if r.error)
        if self.settings.mode == "logprob":
            return self._logprob_counts(results)
        k = self.settings.k
        codes = np.array([[parse_reply(t, reasoning=self.template.reasoning, labels=self.template.labels,
                                       style=self.parser_style) for t in _pad(r.texts, k)] for r in results],
                         dtype=np.int8).reshape(len(pairs), 2, k)
        return counts_from_choices(codes[:, 0, :], codes[:, 1, :])

    def _logprob_counts(self, results) -> np.ndarray:
        """Expected counts K * P(label) renormalised over the two labels; other mass is reported, not counted."""
        k = self.settings.k
        probs = np.array([r.probs if r.probs is not None else (0.0, 0.0) for r in results], float).reshape(-1, 2, 2)
        self.stats.logprob_other_mass.extend(r.other_mass for r in results if r.other_mass is not None)
        total = probs.sum(-1, keepdims=True)
        norm = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
        counts = np.zeros((probs.shape[0], 6))
        counts[:, 0], counts[:, 1] = k * norm[:, 0, 0], k * norm[:, 0, 1]
        counts[:, 2], counts[:, 3] = k * norm[:, 1, 1], k * norm[:, 1, 0]  # flipped: b is shown first
        counts[:, 4] = k * ((total[:, 0, 0] == 0).astype(float) + (total[:, 1, 0] == 0).astype(float))
        return counts


def _pad(texts: list, k: int) -> list:
    """Exactly k replies per request: a failed request (fewer texts) is padded with None = unparseable."""
    texts = list(texts)[:k]
    return texts + [None] * (k - len(texts))
