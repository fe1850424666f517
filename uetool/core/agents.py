"""Simulated agents with known ground truth, for validating the statistics (not a stand-in for engines).

Each agent is a callable `agent(pairs) -> counts` (COUNT_COLUMNS rows) answering K samples per order, exactly as
a model's replies would be counted. Randomness is counter-based: every sample's uniform number is a hash of
(seed, a, b, order, sample index, stream). So an agent gives the same answers for a pair however requests are
batched, sharded, retried or reordered, which is what resumable and distributed runs need to be reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from .edges import counts_from_choices
from .parsing import FIRST, REFUSAL, SECOND
from .prompts import FLIPPED, ORIGINAL

__all__ = ["ThurstonianAgent", "RandomAgent", "PositionBiasedAgent", "RefusingAgent", "hash_uniforms",
           "make_agent", "AGENT_KINDS"]

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_STREAM_CHOICE, _STREAM_BIAS, _STREAM_REFUSE = 1, 2, 3


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 with good avalanche."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M2
    x = x ^ (x >> np.uint64(27))
    x = x * _M3
    return x ^ (x >> np.uint64(31))


def hash_uniforms(seed: int, a: np.ndarray, b: np.ndarray, order: int, k: int, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers of shape (len(a), k), a pure function of its arguments."""
    with np.errstate(over="ignore"):
        base = _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _M1 + np.uint64(stream))
        h = _mix(base ^ (np.asarray(a, np.uint64) * _M2))
        h = _mix(h ^ (np.asarray(b, np.uint64) * _M3 + np.uint64(order)))
        x = _mix(h[:, None] + np.arange(1, k + 1, dtype=np.uint64)[None, :] * _M1)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


class _Agent:
    """Shared machinery: subclasses give P(first option chosen) per order and may add refusals or bias."""

    k: int
    seed: int

    def first_option_probability(self, shown_first: np.ndarray, shown_second: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def choices(self, pairs: np.ndarray, order: int) -> np.ndarray:
        """Choice codes (m, k) for showing each pair in `order`."""
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        first, second = (pairs[:, 0], pairs[:, 1]) if order == ORIGINAL else (pairs[:, 1], pairs[:, 0])
        p_first = self.first_option_probability(first, second)
        u = hash_uniforms(self.seed, pairs[:, 0], pairs[:, 1], order, self.k, _STREAM_CHOICE)
        return np.where(u < p_first[:, None], FIRST, SECOND).astype(np.int8)

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        return counts_from_choices(self.choices(pairs, ORIGINAL), self.choices(pairs, FLIPPED))


@dataclass
class ThurstonianAgent(_Agent):
    """Answers from ground-truth utilities: P(x chosen over y) = Phi((mu_x - mu_y) / sqrt(s2_x + s2_y))."""

    mean: np.ndarray
    variance: np.ndarray
    k: int = 10
    seed: int = 0

    def first_option_probability(self, shown_first, shown_second):
        return self.true_probability(shown_first, shown_second)

    def true_probability(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ndtr((self.mean[a] - self.mean[b]) / np.sqrt(self.variance[a] + self.variance[b]))

    @classmethod
    def random_truth(cls, n_outcomes: int, *, k: int = 10, seed: int = 0, scale: float = 1.0,
                     variance_range: tuple[float, float] = (0.05, 0.5)) -> ThurstonianAgent:
        """mu ~ N(0, 1) * scale, sigma2 ~ U(variance_range): the benchmark's default ground truth."""
        rng = np.random.default_rng(seed)
        return cls(rng.normal(size=n_outcomes) * scale, rng.uniform(*variance_range, size=n_outcomes), k, seed)


@dataclass
class RandomAgent(_Agent):
    """Fair coin per sample: no preferences at all."""

    k: int = 10
    seed: int = 0

    def first_option_probability(self, shown_first, shown_second):
        return np.full(np.shape(shown_first), 0.5)

    def true_probability(self, a, b):
        return np.full(np.shape(a), 0.5)


@dataclass
class PositionBiasedAgent(_Agent):
    """With probability `bias` answers the first-shown option, otherwise defers to `base`."""

    base: _Agent
    bias: float = 0.3

    @property
    def k(self):
        return self.base.k

    @property
    def seed(self):
        return self.base.seed

    def choices(self, pairs, order):
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        inner = self.base.choices(pairs, order)
        u = hash_uniforms(self.seed, pairs[:, 0], pairs[:, 1], order, self.k, _STREAM_BIAS)
        return np.where(u < self.bias, FIRST, inner).astype(np.int8)

    def true_probability(self, a, b):
        return self.base.true_probability(a, b)


@dataclass
class RefusingAgent(_Agent):
    """Refuses with probability `rate` per sample, otherwise defers to `base`."""

    base: _Agent
    rate: float = 0.2

    @property
    def k(self):
        return self.base.k

    @property
    def seed(self):
        return self.base.seed

    def choices(self, pairs, order):
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        inner = self.base.choices(pairs, order)
        u = hash_uniforms(self.seed, pairs[:, 0], pairs[:, 1], order, self.k, _STREAM_REFUSE)
        return np.where(u < self.rate, REFUSAL, inner).astype(np.int8)

    def true_probability(self, a, b):
        return self.base.true_probability(a, b)


AGENT_KINDS = ("thurstonian", "random", "position_biased", "refusing")


def make_agent(kind: str, n_outcomes: int, *, k: int = 10, seed: int = 0, scale: float = 1.0,
               bias: float = 0.3, refusal_rate: float = 0.2) -> _Agent:
    """Build a simulated agent by name (used by configs and benchmarks)."""
    if kind == "thurstonian":
        return ThurstonianAgent.random_truth(n_outcomes, k=k, seed=seed, scale=scale)
    if kind == "random":
        return RandomAgent(k=k, seed=seed)
    if kind == "position_biased":
        return PositionBiasedAgent(ThurstonianAgent.random_truth(n_outcomes, k=k, seed=seed, scale=scale), bias)
    if kind == "refusing":
        return RefusingAgent(ThurstonianAgent.random_truth(n_outcomes, k=k, seed=seed, scale=scale), refusal_rate)
    raise ValueError(f"unknown simulated agent '{kind}'; known: {AGENT_KINDS}")
