"""The one small protocol every engine implements (DESIGN.md layer 2).

An engine receives a batch of `ElicitationRequest`s and returns one `ElicitationResult` per request, in order.
- mode "sample": `k` completions per request at `temperature` (max `max_tokens` new tokens); `texts` holds them.
- mode "logprob": one prefill; `probs` holds P(label) for each label (in label order), `other_mass` the
  next-token probability mass on everything else.
Engines never parse or store: that is the runtime's job, so every engine's raw output is stored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["ElicitationRequest", "ElicitationResult", "GenerationSettings", "Engine", "EngineError"]


class EngineError(RuntimeError):
    """An engine failed in a way that retrying will not fix (bad key, missing model, 404, ...)."""


@dataclass(frozen=True)
class GenerationSettings:
    """Generation settings, translated to each engine's native form only inside that engine."""

    mode: str = "sample"  # "sample" | "logprob"
    k: int = 10
    temperature: float = 1.0
    max_tokens: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("sample", "logprob"):
            raise ValueError(f"`elicitation.mode` must be 'sample' or 'logprob', got {self.mode!r}")
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


@runtime_checkable
class Engine(Protocol):
    name: str

    def generate(self, requests: list[ElicitationRequest], settings: GenerationSettings) -> list[ElicitationResult]:
        ...

    def close(self) -> None:
        ...
