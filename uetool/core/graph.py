"""The preference graph: which pairs were asked, their counts, and the held-out split, as columnar arrays.

Pairs are stored canonically with a < b and addressed by the int64 key a * n + b, so membership tests are
`searchsorted` over sorted key arrays and nothing ever enumerates the n(n-1)/2 possible pairs for large n.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .edges import COUNT_COLUMNS, edge_probabilities

__all__ = ["PreferenceGraph", "pair_keys", "keys_to_pairs", "sample_new_pairs", "holdout_size", "TRAIN", "HOLDOUT",
           "contains"]

TRAIN, HOLDOUT = 0, 1
# Below this many possible pairs, enumerating all of them is cheap and gives exact sampling without retries.
_ENUMERATE_LIMIT = 2_000_000


def pair_keys(a: np.ndarray, b: np.ndarray, n_outcomes: int) -> np.ndarray:
    """Canonical int64 key of each unordered pair."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    return np.minimum(a, b) * n_outcomes + np.maximum(a, b)


def keys_to_pairs(keys: np.ndarray, n_outcomes: int) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.int64)
    return np.stack([keys // n_outcomes, keys % n_outcomes], axis=1)


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean mask: which `keys` are in the sorted array `sorted_keys`."""
    if sorted_keys.size == 0:
        return np.zeros(np.shape(keys), dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == sorted_keys.size] = 0
    return sorted_keys[pos] == keys


def holdout_size(n_outcomes: int, fraction: float = 0.05, max_pairs: int = 1000) -> int:
    """min(fraction of all pairs, max_pairs): the paper's held-out set size."""
    return int(min(np.floor(fraction * n_outcomes * (n_outcomes - 1) / 2), max_pairs))


def sample_new_pairs(n_outcomes: int, m: int, rng: np.random.Generator,
                     exclude: np.ndarray | None = None) -> np.ndarray:
    """`m` distinct random pairs (a < b), none of whose keys is in the sorted array `exclude`.

    Rejection sampling in batches for large n; exact enumeration when the pair space is small. Returns fewer
    than `m` pairs only if fewer remain.
    """
    exclude = np.empty(0, np.int64) if exclude is None else exclude
    total = n_outcomes * (n_outcomes - 1) // 2
    if m <= 0:
        return np.empty((0, 2), np.int64)
    if total <= _ENUMERATE_LIMIT or m > total // 4:
        if total > 50_000_000:
            raise ValueError(f"cannot draw {m} of {total} pairs by enumeration; ask for fewer pairs")
        a, b = np.triu_indices(n_outcomes, k=1)
        keys = a.astype(np.int64) * n_outcomes + b
        keys = keys[~contains(exclude, keys)]
        chosen = rng.choice(keys.size, size=min(m, keys.size), replace=False)
        return keys_to_pairs(np.sort(keys[chosen]), n_outcomes)
    found = np.empty(0, np.int64)
    while found.size < m:
        batch = int((m - found.size) * 1.2) + 64
        a = rng.integers(0, n_outcomes, batch)
        b = rng.integers(0, n_outcomes, batch)
        keep = a != b
        keys = pair_keys(a[keep], b[keep], n_outcomes)
        keys = keys[~contains(exclude, keys)]
        # keep first occurrences in draw order, so the result does not depend on sorting tricks
        merged = np.concatenate([found, keys])
        _, first = np.unique(merged, return_index=True)
        found = merged[np.sort(first)]
    return keys_to_pairs(found[:m], n_outcomes)


@dataclass
class PreferenceGraph:
    """Asked pairs with their count rows. Columns are parallel numpy arrays; `a < b` on every row."""

    n_outcomes: int
    a: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    b: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.empty((0, 6), np.float64))
    split: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    round: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))

    def __len__(self) -> int:
        return int(self.a.size)

    @property
    def keys(self) -> np.ndarray:
        return self.a * self.n_outcomes + self.b

    def add(self, pairs: np.ndarray, counts: np.ndarray, split: int, round_index: int) -> None:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        counts = np.asarray(counts, dtype=np.float64).reshape(-1, 6)
        if pairs.shape[0] != counts.shape[0]:
            raise ValueError(f"got {pairs.shape[0]} pairs but {counts.shape[0]} count rows")
        if np.any(pairs[:, 0] >= pairs[:, 1]):
            raise ValueError("pairs must be canonical (a < b)")
        m = pairs.shape[0]
        self.a = np.concatenate([self.a, pairs[:, 0]])
        self.b = np.concatenate([self.b, pairs[:, 1]])
        self.counts = np.concatenate([self.counts, counts])
        self.split = np.concatenate([self.split, np.full(m, split, np.int8)])
        self.round = np.concatenate([self.round, np.full(m, round_index, np.int32)])

    def select(self, split: int) -> PreferenceGraph:
        mask = self.split == split
        return PreferenceGraph(self.n_outcomes, self.a[mask], self.b[mask], self.counts[mask], self.split[mask],
                               self.round[mask])

    def probabilities(self, policy: str = "distribution", rng: np.random.Generator | None = None):
        return edge_probabilities(self.counts, policy, rng)

    def degrees(self) -> np.ndarray:
        return np.bincount(self.a, minlength=self.n_outcomes) + np.bincount(self.b, minlength=self.n_outcomes)

    def to_frame(self, policy: str = "distribution", rng: np.random.Generator | None = None) -> pd.DataFrame:
        p_a, _ = self.probabilities(policy, rng)
        frame = pd.DataFrame({"a": self.a, "b": self.b})
        for i, name in enumerate(COUNT_COLUMNS):
            frame[name] = self.counts[:, i]
        frame["p_a"] = p_a
        frame["split"] = np.where(self.split == HOLDOUT, "holdout", "train")
        frame["round"] = self.round
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_outcomes: int) -> PreferenceGraph:
        missing = [c for c in ("a", "b", *COUNT_COLUMNS, "split", "round") if c not in frame.columns]
        if missing:
            raise ValueError(f"edges table lacks columns {missing}")
        split = np.where(frame["split"].to_numpy() == "holdout", HOLDOUT, TRAIN).astype(np.int8)
        return cls(n_outcomes, frame["a"].to_numpy(np.int64), frame["b"].to_numpy(np.int64),
                   frame[list(COUNT_COLUMNS)].to_numpy(np.float64), split, frame["round"].to_numpy(np.int32))
