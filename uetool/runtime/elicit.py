"""Pairs -> prompts in both orders -> stored or newly asked responses -> parsed counts.

`Elicitor` is the `ask(pairs) -> counts` callable that the core's active learning drives. It asks the engine pool
only for requests the store holds no answer for, stores every response before using it, and counts API failures,
unparseable replies and refusals separately.

A failed request is no answer: it counts nothing in its edge, is stored as a record of the attempt and is asked
again by later calls (and later runs) until it has failed `max_attempts` times; then it is given up and counted.
A call in which more than `max_failure_rate` of the requests end failed raises `ElicitationFailed` after storing
what did arrive, so that an outage stops the job (non-zero) instead of thinning its edges; the next run asks the
failed requests again and, the engine healthy, ends as an uninterrupted run would.
"""

from __future__ import annotations

import logging
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

__all__ = ["Elicitor", "ElicitationStats", "ElicitationFailed", "ShardWriter", "sampling_key"]

log = logging.getLogger(__name__)
_ERROR_EXAMPLES = 5  # distinct error messages kept for the summary and the failure message


class ElicitationFailed(RuntimeError):
    """Too many requests of one elicitation call failed; what arrived is stored, the failures are asked again."""


@dataclass
class ElicitationStats:
    requests: int = 0
    reused: int = 0
    asked: int = 0
    failed_requests: int = 0  # requests whose result was a failure (failed now, or given up after max_attempts)
    given_up: int = 0  # of those: failed max_attempts times, not asked again
    errors: list = field(default_factory=list)  # the first distinct error messages
    logprob_other_mass: list = field(default_factory=list)
    engine_seconds: float = 0.0  # wall time waiting on the engine pool
    elicit_seconds: float = 0.0  # wall time of whole elicitation rounds (engine + render, store, parse)


class Elicitor:
    def __init__(self, outcomes: OutcomeSet, template: PromptTemplate, settings: GenerationSettings, *, pool,
                 store: ResponseStore, model_id: str, revision: str | None, engine_settings: dict,
                 system_message: str | None, parser_style: str = "uetool", thinking_end: str | None = None,
                 max_attempts: int = 3, max_failure_rate: float = 0.05, index_offset: int = 0) -> None:
        self.outcomes, self.template, self.settings = outcomes, template, settings
        # added to the (a, b) bookkeeping the engine sees: an analysis fits several option sets, and the simulated
        # engine answers from indices into all of them (keys come from the descriptions, never from indices)
        self.index_offset = int(index_offset)
        self.max_attempts, self.max_failure_rate = int(max_attempts), float(max_failure_rate)
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
        off = self.index_offset
        batch = RequestBatch(keys, [], a + off, b + off, order, tuple(self.template.labels), self.system_message)
        return self._render(batch) if render else batch

    def _render(self, batch: RequestBatch) -> RequestBatch:
        d, render = self.outcomes.descriptions, self.template.render
        first, second = _shown(batch.a - self.index_offset, batch.b - self.index_offset, batch.order)
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
        n = len(batch)
        rows = self.store.rows(batch.keys)  # answers only: a stored failure is no answer
        missing = np.flatnonzero(rows < 0)
        given_up = np.zeros(0, np.int64)
        if missing.size:
            attempts = self.store.attempts([batch.keys[i] for i in missing.tolist()])
            given_up, missing = missing[attempts >= self.max_attempts], missing[attempts < self.max_attempts]
        self.stats.requests += n
        self.stats.reused += n - missing.size - given_up.size
        results = None
        if missing.size:
            asked_at = time.perf_counter()
            asked = batch.take(missing)
            distinct = len(set(asked.keys)) == len(asked)
            if getattr(self.pool, "reads_text", True):
                self._render(asked)
            answers = self.pool.run(asked, self.settings, on_shard=ShardWriter(self.store, len(asked), distinct))
            self.stats.engine_seconds += time.perf_counter() - asked_at
            self.stats.asked += missing.size
            if missing.size == n and distinct and answers.errors.count(None) == n:
                results = answers  # all asked just now, each once, none failed: what the store now holds, in order
            else:  # stored and new answers mixed, failures, or a request twice (the store serves its first answer)
                rows[missing] = self.store.rows(asked.keys)
        answered = np.ones(n, bool) if results is not None else rows >= 0
        failed = np.flatnonzero(~answered)
        if failed.size:
            self._count_failures([batch.keys[i] for i in failed.tolist()], given_up.size, n)
        if results is None:
            keys = batch.keys if not failed.size else [batch.keys[i] for i in np.flatnonzero(answered).tolist()]
            results = self.store.get(keys, rows[answered])
        if self.settings.mode == "logprob":
            return self._logprob_counts(results, answered)
        codes = np.full((n, self.settings.k), FAILED, np.int8)
        codes[answered] = self._choices(results.texts)
        codes = codes.reshape(len(pairs), 2, self.settings.k)
        return counts_from_choices(codes[:, 0, :], codes[:, 1, :])

    def stored_tokens(self, pairs: np.ndarray) -> np.ndarray:
        """(computed, reused, generated) of the stored answers to both orders of each distinct pair (NaN rows where
        the engine did not count them): what the run's answers cost, whoever asked them and whenever."""
        pairs = np.unique(np.sort(np.asarray(pairs, np.int64).reshape(-1, 2), axis=1), axis=0)
        batch = self.requests_for(pairs, render=False)
        rows = self.store.rows(batch.keys)
        answered = rows >= 0
        if not answered.any():
            return np.empty((0, 3))
        return self.store.get([k for k, ok in zip(batch.keys, answered.tolist(), strict=True) if ok],
                              rows[answered]).tokens

    def _count_failures(self, keys: list[str], given_up: int, requests: int) -> None:
        """Count this call's failed requests, keep the first distinct errors, and stop the job past the threshold."""
        stats = self.stats
        stats.failed_requests += len(keys)
        stats.given_up += given_up
        for key in keys:
            if len(stats.errors) >= _ERROR_EXAMPLES:
                break
            error = self.store.last_error(key)
            if error is not None and error not in stats.errors:
                stats.errors.append(error)
        log.warning("%d of %d requests failed (%d given up after %d attempts); first errors: %s", len(keys),
                    requests, given_up, self.max_attempts, "; ".join(stats.errors[:3]))
        if len(keys) > self.max_failure_rate * requests:
            raise ElicitationFailed(
                f"{len(keys)} of {requests} requests failed in one elicitation call ({len(keys) / requests:.1%}, "
                f"more than elicitation.max_failure_rate={self.max_failure_rate:g}); {given_up} of them have failed "
                f"elicitation.max_attempts={self.max_attempts} times and are no longer asked. First errors: "
                f"{' | '.join(stats.errors) or 'none recorded'}. Every answer that arrived is stored and every failure "
                f"recorded: run the job again once the engine is healthy and it asks the failed requests again "
                f"(raise elicitation.max_attempts for those given up, or elicitation.max_failure_rate to go on "
                f"without them).")

    def _choices(self, replies: Replies) -> np.ndarray:
        """(n, k) choice codes; each distinct reply is parsed once, and a missing reply (a failed request, or one
        with fewer than k samples) is FAILED: counted apart, never as unparseable."""
        memo = self._parsed
        for text in replies.vocab:
            if text not in memo:
                memo[text] = FAILED if text is None else self._parse_reply(text)
        table = np.array([memo[t] for t in replies.vocab] + [FAILED], np.int8)
        return table[replies.matrix(self.settings.k)]  # code -1 takes the last entry

    def _logprob_counts(self, results: ResultBatch, answered: np.ndarray) -> np.ndarray:
        """Expected counts of K samples per order: K * P(label) for each label and K * (off-label mass) as
        unparseable replies, so that `unparseable_policy` decides what the off-label mass means (distribution and
        random: half a vote each way, their expectation; skip: renormalised over the labels) and the edge's weight
        is its on-label mass. `results` holds the answered requests (`answered`); a failed request counts nothing."""
        k = self.settings.k
        probs = np.zeros((answered.size, 2))
        probs[answered] = np.nan_to_num(np.stack([results.p_first, results.p_second], axis=1))
        other = results.other_mass[~np.isnan(results.other_mass)]
        self.stats.logprob_other_mass.extend(other.tolist())
        off_label = np.where(answered, np.clip(1.0 - probs.sum(-1), 0.0, 1.0), 0.0).reshape(-1, 2)
        probs = probs.reshape(-1, 2, 2)
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

