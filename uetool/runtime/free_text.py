"""Free-form prompts (an analysis's open questions, a judge's matching calls) through the pool and the store.

Like the Elicitor for forced choices: a prompt the store holds an answer for is never asked again, every reply is
stored before it is used, and a failed request is recorded, asked again by later runs until it has failed
`max_attempts` times, and counted (its reply is None).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..engines.base import GenerationSettings, RequestBatch
from ..io.store import ResponseStore, key_prefix
from .elicit import ShardWriter, sampling_key

__all__ = ["FreeTextAsker", "FreeTextStats"]


@dataclass
class FreeTextStats:
    requests: int = 0
    reused: int = 0
    asked: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)


class FreeTextAsker:
    """`ask(prompts, items, role) -> replies`: one stripped reply per prompt (None where the request failed).

    `purpose` ("free_answer", "judge") enters every key, so the same text asked for another purpose is another
    request; `items` and `role` travel as (a, b) bookkeeping (the simulated engine answers from them)."""

    def __init__(self, *, pool, store: ResponseStore, settings: GenerationSettings, model_id: str,
                 revision: str | None, engine_settings: dict, system_message: str | None, purpose: str,
                 max_attempts: int = 3) -> None:
        if settings.mode != "generate":
            raise ValueError(f"free-form prompts are asked in generate mode, got {settings.mode!r}")
        self.pool, self.store, self.settings = pool, store, settings
        self.system_message, self.max_attempts = system_message, int(max_attempts)
        self.stats = FreeTextStats()
        digest = hashlib.sha256(f"free-text:{purpose}".encode()).hexdigest()[:16]
        self._keys = key_prefix(model=model_id, revision=revision, engine_settings=engine_settings,
                                template_digest=digest, system_message=system_message, k=settings.k,
                                seed=settings.seed, mode=settings.mode, **sampling_key(settings))

    def keys(self, prompts: list[str]) -> list[str]:
        values = self._keys.outcome_values(list(prompts) + [""])  # the prompt as the first option, nothing second
        n = len(prompts)
        return self._keys.keys(values, np.arange(n), np.full(n, n), np.zeros(n, np.int8))

    def __call__(self, prompts: list[str], items: list[int], role: int = 0) -> list[str | None]:
        n = len(prompts)
        if n == 0:
            return []
        keys = self.keys(prompts)
        batch = RequestBatch(keys, list(prompts), np.asarray(items, np.int64), np.full(n, role, np.int64),
                             np.zeros(n, np.int8), ("A", "B"), self.system_message)
        rows = self.store.rows(keys)
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            attempts = self.store.attempts([keys[i] for i in missing.tolist()])
            missing = missing[attempts < self.max_attempts]
        self.stats.requests += n
        self.stats.reused += int((rows >= 0).sum())
        if missing.size:
            asked = batch.take(missing)
            distinct = len(set(asked.keys)) == len(asked)
            try:
                self.pool.run(asked, self.settings, on_shard=ShardWriter(self.store, len(asked), distinct))
            except BaseException:
                self.store.flush(raise_errors=False)  # the shards that did arrive stay stored for a resumed job
                raise
            self.store.flush()  # every reply is durable before it is used
            self.stats.asked += int(missing.size)
            rows = self.store.rows(keys)
        replies: list[str | None] = [None] * n
        answered = np.flatnonzero(rows >= 0)
        if answered.size:
            texts = self.store.get([keys[i] for i in answered.tolist()], rows[answered]).texts.tolist()
            for i, samples in zip(answered.tolist(), texts, strict=True):
                replies[i] = samples[0].strip() if samples and samples[0] is not None else None
        for i in np.flatnonzero(rows < 0).tolist():
            self.stats.failed += 1
            error = self.store.last_error(keys[i])
            if error is not None and error not in self.stats.errors and len(self.stats.errors) < 5:
                self.stats.errors.append(error)
        return replies
