"""The one small protocol every engine implements (the engine layer): `generate(batch, settings) -> results`.

An engine receives a `RequestBatch` (columns) and returns a `ResultBatch` aligned with it. Three modes:
- "sample": `k` completions per request at `temperature` (at most `max_tokens` new tokens), for forced choices;
- "logprob": one prefill; `p_first`/`p_second` hold P(label) for each label, `other_mass` the next-token probability
  mass on everything else;
- "generate": free generation (`k` completions at `temperature`, up to `max_tokens`), for free-form answers and
  judge calls; the runtime does not parse these as choices.
What an engine can do is declared as class attributes (`modes`, `reads_text`, `answer_settings`, `options`,
`shard_size`), never decided by its name. Every result may carry its token counts (`tokens`): the prompt tokens
the engine computed, those it reused from a cache (prefix caching), and the tokens it generated over all samples.
Engines that answer request by request subclass `PerRequestEngine`, the one adapter. Engines never parse or store:
that is the runtime's job, so every engine's raw output is stored alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from .replies import Replies

__all__ = ["ElicitationRequest", "ElicitationResult", "GenerationSettings", "Engine", "EngineError", "RequestBatch",
           "ResultBatch", "PerRequestEngine", "MODES", "TOKEN_COLUMNS"]

MODES = ("sample", "logprob", "generate")


class EngineError(RuntimeError):
    """An engine failed in a way that retrying will not fix (bad key, missing model, 404, ...)."""


@dataclass(frozen=True)
class GenerationSettings:
    """Generation settings, translated to each engine's native form only inside that engine."""

    mode: str = "sample"  # "sample" | "logprob" | "generate" (free generation)
    k: int = 10
    temperature: float = 1.0
    max_tokens: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"`elicitation.mode` must be 'sample', 'logprob' or 'generate', got {self.mode!r}")
        if self.k < 1:
            raise ValueError(f"`elicitation.k` must be >= 1, got {self.k}")
        if self.temperature < 0:
            raise ValueError(f"`elicitation.temperature` must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise ValueError(f"`elicitation.max_tokens` must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class ElicitationRequest:
    """One prompt in one order. `key` identifies it in the response store (hash of everything that matters)."""

    key: str
    prompt: str  # the user turn (chat models) or raw text (base models get prompt + "\n\nAnswer:")
    labels: tuple[str, str] = ("A", "B")
    system_message: str | None = None
    # bookkeeping carried through untouched: (a, b, order) of the pair this prompt shows
    a: int = -1
    b: int = -1
    order: int = 0


@dataclass
class ElicitationResult:
    key: str
    texts: list[str | None] = field(default_factory=list)  # sample mode; None marks a failed request
    probs: tuple[float, float] | None = None  # logprob mode: P(label A), P(label B) (not renormalised)
    other_mass: float | None = None  # logprob mode: next-token mass outside the labels
    error: str | None = None  # a per-request failure that was counted, not raised
    # (prompt tokens computed, prompt tokens reused from a cache, tokens generated over all k samples); None: the
    # engine does not count them (simulated engines)
    tokens: tuple[int, int, int] | None = None


TOKEN_COLUMNS = ("prompt_tokens", "cached_tokens", "generated_tokens")  # the columns of ResultBatch.tokens


@dataclass
class RequestBatch:
    """Many requests as columns: what the runtime ships to engine replicas.

    Per-request Python objects cost more to build, pickle and unpickle than the simulated engine costs to answer
    them; columns keep the Ray path's overhead per request to a few list/array slots. Labels and system message
    are shared by every request of a job. `to_requests()` gives the per-request view engines implement.
    """

    keys: list[str]
    prompts: list[str]
    a: np.ndarray
    b: np.ndarray
    order: np.ndarray
    labels: tuple[str, str] = ("A", "B")
    system_message: str | None = None

    def __len__(self) -> int:
        return len(self.order)  # keys and prompts may be left out of a shipped shard (see EnginePool.run)

    def __getitem__(self, index: slice) -> RequestBatch:
        if not isinstance(index, slice):
            raise TypeError("RequestBatch supports slices only; use take() for index arrays")
        return RequestBatch(self.keys[index], self.prompts[index], self.a[index], self.b[index], self.order[index],
                            self.labels, self.system_message)

    def take(self, indices: Sequence[int]) -> RequestBatch:
        idx = np.asarray(indices, np.int64)
        prompts = [self.prompts[i] for i in idx.tolist()] if self.prompts else []  # [] = not rendered yet
        return RequestBatch([self.keys[i] for i in idx.tolist()], prompts,
                            self.a[idx], self.b[idx], self.order[idx], self.labels, self.system_message)

    @classmethod
    def from_requests(cls, requests: Sequence[ElicitationRequest]) -> RequestBatch:
        """Columns from per-request objects (all must share labels and system message)."""
        first = requests[0] if requests else ElicitationRequest("", "")
        if any(r.labels != first.labels or r.system_message != first.system_message for r in requests):
            raise ValueError("a RequestBatch shares one label pair and one system message across its requests")
        return cls([r.key for r in requests], [r.prompt for r in requests], np.array([r.a for r in requests], np.int64),
                   np.array([r.b for r in requests], np.int64), np.array([r.order for r in requests], np.int8),
                   tuple(first.labels), first.system_message)

    def to_requests(self) -> list[ElicitationRequest]:
        labels, system = tuple(self.labels), self.system_message
        return [ElicitationRequest(k, p, labels, system, a, b, o) for k, p, a, b, o in
                zip(self.keys, self.prompts, self.a.tolist(), self.b.tolist(), self.order.tolist(), strict=True)]


@dataclass
class ResultBatch:
    """Results as columns, aligned with the RequestBatch they answer (keys and (a, b, order) carried along).

    `texts[i]` lists request i's samples (none in logprob mode), held as one dictionary-coded column (`Replies`);
    `p_first`/`p_second`/`other_mass` are NaN in sample mode; `errors[i]` is None unless the request failed and
    was counted. `tokens`: (n, 3) float, the TOKEN_COLUMNS per request, NaN where the engine did not count them.
    """

    keys: list[str]
    a: np.ndarray
    b: np.ndarray
    order: np.ndarray
    texts: Replies
    p_first: np.ndarray
    p_second: np.ndarray
    other_mass: np.ndarray
    errors: list[str | None]
    tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = np.full((len(self.order), len(TOKEN_COLUMNS)), np.nan)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_results(cls, results: Sequence[ElicitationResult], batch: RequestBatch) -> ResultBatch:
        if len(results) != len(batch):
            raise ValueError(f"engine returned {len(results)} results for {len(batch)} requests")
        nan = float("nan")
        probs = np.array([r.probs if r.probs is not None else (nan, nan) for r in results], float).reshape(-1, 2)
        other = np.array([nan if r.other_mass is None else r.other_mass for r in results], float)
        tokens = np.array([r.tokens if r.tokens is not None else (nan, nan, nan) for r in results],
                          float).reshape(-1, len(TOKEN_COLUMNS))
        return cls(list(batch.keys), batch.a, batch.b, batch.order, Replies.from_lists([r.texts for r in results]),
                   probs[:, 0], probs[:, 1], other, [r.error for r in results], tokens)

    @classmethod
    def concat(cls, batches: Sequence[ResultBatch]) -> ResultBatch:
        if not batches:
            empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
            return cls([], empty_i, empty_i, empty_i.astype(np.int8), Replies.empty(0), empty_f, empty_f, empty_f, [])
        if len(batches) == 1:
            return batches[0]
        return cls(list(chain.from_iterable(b.keys for b in batches)),
                   *(np.concatenate([getattr(b, f) for b in batches]) for f in ("a", "b", "order")),
                   Replies.concat([b.texts for b in batches]),
                   *(np.concatenate([getattr(b, f) for b in batches]) for f in ("p_first", "p_second", "other_mass")),
                   list(chain.from_iterable(b.errors for b in batches)), np.concatenate([b.tokens for b in batches]))

    def take(self, rows: Sequence[int] | np.ndarray) -> ResultBatch:
        idx = np.asarray(rows, np.int64)
        positions = idx.tolist()
        return ResultBatch(list(map(self.keys.__getitem__, positions)), self.a[idx], self.b[idx], self.order[idx],
                           self.texts.take(idx), self.p_first[idx], self.p_second[idx], self.other_mass[idx],
                           list(map(self.errors.__getitem__, positions)), self.tokens[idx])

    def to_results(self) -> list[ElicitationResult]:
        out, texts = [], self.texts.tolist()
        for i, key in enumerate(self.keys):
            p = None if np.isnan(self.p_first[i]) else (float(self.p_first[i]), float(self.p_second[i]))
            other = None if np.isnan(self.other_mass[i]) else float(self.other_mass[i])
            tokens = None if np.isnan(self.tokens[i]).any() else tuple(int(t) for t in self.tokens[i])
            out.append(ElicitationResult(key, texts=texts[i], probs=p, other_mass=other,
                                         error=self.errors[i], tokens=tokens))
        return out


@runtime_checkable
class Engine(Protocol):
    """What every engine is. Class attributes declare its capabilities:

    - `modes`: the GenerationSettings modes it serves;
    - `reads_text`: whether it reads request keys and rendered prompts (the runtime renders and ships them only then);
    - `answer_settings`: the constructor arguments that change its answers; only these (plus `engine.kwargs`) enter
      request keys, so resources (threads, batch sizes, GPU memory, caches) never re-ask anything;
    - `options`: its own `engine.*` config keys with their defaults;
    - `shard_size`: requests per call to a replica when `pool.shard_size` is null.
    """

    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]
    reads_text: ClassVar[bool]
    answer_settings: ClassVar[tuple[str, ...]]
    options: ClassVar[dict]
    shard_size: ClassVar[int]

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        ...

    def close(self) -> None:
        ...


class PerRequestEngine:
    """The adapter for engines that answer request by request: they implement `answer_requests`, and `generate`
    turns the batch into requests and their results back into columns."""

    name: ClassVar[str] = "per-request"
    modes: ClassVar[tuple[str, ...]] = MODES
    reads_text: ClassVar[bool] = True
    answer_settings: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict] = {}
    shard_size: ClassVar[int] = 32

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        check_mode(self, settings)
        return ResultBatch.from_results(self.answer_requests(batch.to_requests(), settings), batch)

    def answer_requests(self, requests: list[ElicitationRequest],
                        settings: GenerationSettings) -> list[ElicitationResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def check_mode(engine: object, settings: GenerationSettings) -> None:
    modes = type(engine).modes  # type: ignore[attr-defined]
    if settings.mode not in modes:
        raise EngineError(f"engine '{type(engine).name}' does not serve mode {settings.mode!r}; it serves {modes}")
