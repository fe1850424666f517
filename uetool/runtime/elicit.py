"""Pairs -> prompts in both orders -> stored or newly asked responses -> parsed counts.

`Elicitor` is the `ask(pairs) -> counts` callable that the core's active learning drives. It asks the engine pool
only for requests the store does not hold, stores every response before using it, and counts API failures,
unparseable replies and refusals separately.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..core.edges import counts_from_choices
from ..core.outcomes import OutcomeSet
from ..core.parsing import FAILED, parse_reply
from ..core.prompts import FLIPPED, ORIGINAL, PromptTemplate
from ..engines.base import GenerationSettings, RequestBatch, ResultBatch
from ..engines.replies import Replies
from ..io.store import ResponseStore, key_prefix

__all__ = ["Elicitor", "ElicitationStats", "ShardWriter", "sampling_key"]


@dataclass
class ElicitationStats:
    requests: int = 0
    reused: int = 0
    asked: int = 0
    failed_requests: int = 0
    logprob_other_mass: list = field(default_factory=list)
    engine_seconds: float = 0.0  # wall time waiting on the engine pool
    elicit_seconds: float = 0.0  # wall time of whole elicitation rounds (engine + render, store, parse)


class Elicitor:
    def __init__(self, outcomes: OutcomeSet, template: PromptTemplate, settings: GenerationSettings, *, pool,
                 store: ResponseStore, model_id: str, revision: str | None, engine_settings: dict,
                 system_message: str | None, parser_style: str = "uetool", thinking_end: str | None = None) -> None:
        self.outcomes, self.template, self.settings = outcomes, template, settings
        self.pool, self.store = pool, store
        self.system_message, self.parser_style = system_message, parser_style
        self.stats = ElicitationStats()
        self._parsed: dict = {}
        self._parse_reply = partial(parse_reply, reasoning=template.reasoning, labels=template.labels,
                                    style=parser_style, thinking_end=thinking_end)
        self._keys = key_prefix(model=model_id, revision=revision, engine_settings=engine_settings,
                                template_digest=template.digest, system_message=system_message, k=settings.k,
                                seed=settings.seed, mode=settings.mode, **sampling_key(settings))
        self._key_values = self._keys.outcome_values(list(outcomes.descriptions))

    def requests_for(self, pairs: np.ndarray, render: bool = True) -> RequestBatch:
        """Both orders of every pair, as columns: rows 2i (original) and 2i+1 (flipped) belong to pair i.

        With `render=False` the prompts are left empty (keys do not need them: see `key_prefix`).
        """
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        a, b = np.repeat(pairs[:, 0], 2), np.repeat(pairs[:, 1], 2)
        order = np.tile(np.array([ORIGINAL, FLIPPED], np.int8), len(pairs))
        keys = self._keys.keys(self._key_values, *_shown(a, b, order), order)
        batch = RequestBatch(keys, [], a, b, order, tuple(self.template.labels), self.system_message)
        return self._render(batch) if render else batch

    def _render(self, batch: RequestBatch) -> RequestBatch:
        d, render = self.outcomes.descriptions, self.template.render
        first, second = _shown(batch.a, batch.b, batch.order)
        batch.prompts = [render(d[x], d[y]) for x, y in zip(first.tolist(), second.tolist(), strict=True)]
        return batch

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            counts = self._counts(pairs)
            self.store.flush()  # every response is durable before the caller uses any of it
            return counts
        except BaseException:
            self.store.flush(raise_errors=False)  # the shards that did arrive stay stored for a resumed job
            raise
        finally:
            self.stats.elicit_seconds += time.perf_counter() - started

    def _counts(self, pairs: np.ndarray) -> np.ndarray:
        batch = self.requests_for(pairs, render=False)  # only prompts the engine is asked for get rendered
        rows = self.store.rows(batch.keys)
        missing = np.flatnonzero(rows < 0).tolist()
        self.stats.requests += len(batch)
        self.stats.reused += len(batch) - len(missing)
        if missing:
            asked_at = time.perf_counter()
            asked = batch.take(missing)
            distinct = len(set(asked.keys)) == len(asked)
            if getattr(self.pool, "reads_text", True):
                self._render(asked)
            answers = self.pool.run(asked, self.settings, on_shard=ShardWriter(self.store, len(asked), distinct))
            self.stats.engine_seconds += time.perf_counter() - asked_at
            self.stats.asked += len(missing)
            if len(missing) == len(batch) and distinct:
                results = answers  # all asked just now, each once: exactly what the store now holds, in order
            else:  # stored and new answers mixed (or a request twice: the store keeps, and serves, its first answer)
                rows[missing] = self.store.rows(asked.keys)
                results = self.store.get(batch.keys, rows)
        else:
            results = self.store.get(batch.keys, rows)
        self.stats.failed_requests += len(results.errors) - results.errors.count(None)
        if self.settings.mode == "logprob":
            return self._logprob_counts(results)
        codes = self._choices(results.texts).reshape(len(pairs), 2, self.settings.k)
        return counts_from_choices(codes[:, 0, :], codes[:, 1, :])

    def _choices(self, replies: Replies) -> np.ndarray:
        """(n, k) choice codes; each distinct reply is parsed once, and a missing reply (a failed request, or one
        with fewer than k samples) is FAILED: counted apart, never as unparseable."""
        memo = self._parsed
        for text in replies.vocab:
            if text not in memo:
                memo[text] = FAILED if text is None else self._parse_reply(text)
        table = np.array([memo[t] for t in replies.vocab] + [FAILED], np.int8)
        return table[replies.matrix(self.settings.k)]  # code -1 takes the last entry

    def _logprob_counts(self, results: ResultBatch) -> np.ndarray:
        """Expected counts of K samples per order: K * P(label) for each label and K * (off-label mass) as
        unparseable replies, so that `unparseable_policy` decides what the off-label mass means (distribution and
        random: half a vote each way, their expectation; skip: renormalised over the labels) and the edge's weight
        is its on-label mass. A failed request counts nothing."""
        k = self.settings.k
        probs = np.nan_to_num(np.stack([results.p_first, results.p_second], axis=1)).reshape(-1, 2, 2)
        other = results.other_mass[~np.isnan(results.other_mass)]
        self.stats.logprob_other_mass.extend(other.tolist())
        failed = np.array([e is not None for e in results.errors], bool).reshape(-1, 2)
        off_label = np.where(failed, 0.0, np.clip(1.0 - probs.sum(-1), 0.0, 1.0))
        counts = np.zeros((probs.shape[0], 6))
        counts[:, 0], counts[:, 1] = k * probs[:, 0, 0], k * probs[:, 0, 1]
        counts[:, 2], counts[:, 3] = k * probs[:, 1, 1], k * probs[:, 1, 0]  # flipped: b is shown first
        counts[:, 4] = k * off_label.sum(1)
        return counts


class ShardWriter:
    """Stores each shard as it arrives: in the background while more shards are due (the pool goes on receiving
    them), the last one on the calling thread, which has nothing left to do until it is durable (handing it to
    the writer thread cost ~0.3 ms per call, measured on 2 cores)."""

    def __init__(self, store: ResponseStore, expected: int, distinct: bool) -> None:
        # `distinct`: the asked keys are all missing from the store (checked just before) and none repeats
        self.store, self.remaining, self.distinct = store, expected, distinct

    def __call__(self, shard: ResultBatch) -> None:
        self.remaining -= len(shard)
        self.store.append(shard, background=self.remaining > 0, new=self.distinct)


def sampling_key(settings: GenerationSettings) -> dict:
    """The sampling settings that change answers: temperature and max_tokens, except in logprob mode."""
    if settings.mode == "logprob":
        return {"temperature": None, "max_tokens": None}
    return {"temperature": float(settings.temperature), "max_tokens": int(settings.max_tokens)}


def _shown(a: np.ndarray, b: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) outcome shown by each request: a then b in the original order, b then a flipped."""
    flipped = order == FLIPPED
    return np.where(flipped, b, a), np.where(flipped, a, b)

