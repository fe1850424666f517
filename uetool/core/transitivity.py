"""Transitivity as asked triads (the paper's cycle metric, EXPERIMENTS.md s.5; METHOD.md s.4).

Triads are drawn uniformly from all C(N, 3) outcome triples (seeded, without materialising them), each triad's three
pairs (a, b), (b, c), (a, c) with a < b < c are asked like any edge (both orders, K samples), and

    P_cycle(triad) = P(a>b) P(b>c) (1 - P(a>c)) + (1 - P(a>b)) (1 - P(b>c)) P(a>c)

is averaged over the triads whose three probabilities are defined; `log10_cycle_probability` is log10 of that mean
(independent fair coins give log10(1/4) = -0.602). `hard_cycle_rate` is the share of triads whose majority
directions (each P thresholded at 0.5; a tie is no direction) form a cycle.

Why not the triangles among the active-learning edges: active learning asks near-indifferent pairs on purpose, so
cycles there are inflated (a Thurstonian agent at N=200 read -0.67 that way against -1.24 on uniform triads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb

import numpy as np
import pandas as pd

from .edges import edge_probabilities
from .graph import keys_to_pairs, pair_keys
from .metrics import average_confidence, bootstrap_mean_ci

__all__ = ["sample_triads", "triad_pairs", "cycle_probabilities", "hard_cycles", "cycle_metrics",
           "TransitivityResult", "measure_transitivity", "pair_probabilities", "confidence_metrics"]


def sample_triads(n_outcomes: int, n_triads: int, seed: int) -> np.ndarray:
    """(t, 3) distinct triads a < b < c drawn uniformly from all C(n, 3) triples; t = min(n_triads, C(n, 3)).

    Three distinct indices drawn uniformly and sorted give a uniform 3-subset; repeated triads are drawn again. The
    cost is O(n_triads), whatever n is (C(510, 3) is 22 million).
    """
    if n_outcomes < 3 or n_triads <= 0:
        return np.empty((0, 3), np.int64)
    total = comb(n_outcomes, 3)
    target = min(int(n_triads), total)
    if total <= 4 * target:  # small n: every triple fits in memory, choose among them
        all_triads = np.array([(a, b, c) for a in range(n_outcomes) for b in range(a + 1, n_outcomes)
                               for c in range(b + 1, n_outcomes)], np.int64)
        rng = np.random.default_rng([seed, 17])
        return all_triads[np.sort(rng.choice(total, size=target, replace=False))]
    rng = np.random.default_rng([seed, 17])
    seen: dict[int, None] = {}  # insertion-ordered: the draw order is kept, so a seed gives one sequence
    n = np.int64(n_outcomes)
    while len(seen) < target:
        draw = rng.integers(0, n_outcomes, size=(2 * (target - len(seen)) + 16, 3))
        draw = draw[(draw[:, 0] != draw[:, 1]) & (draw[:, 1] != draw[:, 2]) & (draw[:, 0] != draw[:, 2])]
        draw.sort(axis=1)
        for key in ((draw[:, 0] * n + draw[:, 1]) * n + draw[:, 2]).tolist():
            if len(seen) == target:
                break
            seen.setdefault(key, None)
    keys = np.fromiter(seen, np.int64, len(seen))
    return np.stack([keys // (n * n), (keys // n) % n, keys % n], axis=1)


def triad_pairs(triads: np.ndarray, n_outcomes: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, index): the distinct pairs (a < b) the triads need, and for each triad the rows of its (a, b),
    (b, c) and (a, c) pairs."""
    triads = np.asarray(triads, np.int64).reshape(-1, 3)
    a, b, c = triads[:, 0], triads[:, 1], triads[:, 2]
    keys = np.stack([pair_keys(a, b, n_outcomes), pair_keys(b, c, n_outcomes), pair_keys(a, c, n_outcomes)], 1)
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    return keys_to_pairs(unique, n_outcomes), inverse.reshape(-1, 3)


def cycle_probabilities(p_ab: np.ndarray, p_bc: np.ndarray, p_ac: np.ndarray) -> np.ndarray:
    """Per triad: P(a>b>c>a) + P(a>c>b>a) for independent edges (NaN where a probability is undefined)."""
    return p_ab * p_bc * (1 - p_ac) + (1 - p_ab) * (1 - p_bc) * p_ac


def hard_cycles(p_ab: np.ndarray, p_bc: np.ndarray, p_ac: np.ndarray) -> np.ndarray:
    """Per triad: whether the majority directions form a cycle (a P of exactly 0.5 is no direction)."""
    return ((p_ab > 0.5) & (p_bc > 0.5) & (p_ac < 0.5)) | ((p_ab < 0.5) & (p_bc < 0.5) & (p_ac > 0.5))


def cycle_metrics(p_ab: np.ndarray, p_bc: np.ndarray, p_ac: np.ndarray, seed: int = 0) -> dict:
    """log10 of the mean cycle probability, hard cycle rate (each with a 95% bootstrap CI over triads) and the
    number of triads with all three P defined."""
    p_ab, p_bc, p_ac = (np.asarray(x, np.float64) for x in (p_ab, p_bc, p_ac))
    ok = np.isfinite(p_ab) & np.isfinite(p_bc) & np.isfinite(p_ac)
    if not ok.any():
        nan = float("nan")
        return {"log10_cycle_probability": nan, "hard_cycle_rate": nan, "n_triads": 0,
                "log10_cycle_probability_ci": [nan, nan], "hard_cycle_rate_ci": [nan, nan]}
    cycles = cycle_probabilities(p_ab[ok], p_bc[ok], p_ac[ok])
    hard = hard_cycles(p_ab[ok], p_bc[ok], p_ac[ok]).astype(np.float64)
    mean = float(cycles.mean())
    return {"log10_cycle_probability": float(np.log10(mean)) if mean > 0 else float("-inf"),
            "hard_cycle_rate": float(hard.mean()), "n_triads": int(ok.sum()),
            "log10_cycle_probability_ci": bootstrap_mean_ci(cycles, seed=seed, transform=np.log10),
            "hard_cycle_rate_ci": bootstrap_mean_ci(hard, seed=seed)}


@dataclass
class TransitivityResult:
    triads: np.ndarray  # (t, 3), a < b < c
    pairs: np.ndarray  # (m, 2) distinct pairs asked for them
    counts: np.ndarray  # (m, 6) count rows of those pairs
    p: np.ndarray  # (m,) P(a preferred over b) under the unparseable policy; NaN where no reply counts
    index: np.ndarray  # (t, 3) rows of each triad's (a, b), (b, c), (a, c) in `pairs`
    metrics: dict

    def frame(self) -> pd.DataFrame:
        """One row per triad: a, b, c, p_ab, p_bc, p_ac, p_cycle, hard_cycle (triads.parquet)."""
        p = self.p[self.index] if len(self.index) else np.empty((0, 3))
        return pd.DataFrame({"a": self.triads[:, 0], "b": self.triads[:, 1], "c": self.triads[:, 2],
                             "p_ab": p[:, 0], "p_bc": p[:, 1], "p_ac": p[:, 2],
                             "p_cycle": cycle_probabilities(p[:, 0], p[:, 1], p[:, 2]),
                             "hard_cycle": hard_cycles(p[:, 0], p[:, 1], p[:, 2])})


def measure_transitivity(n_outcomes: int, ask: Callable[[np.ndarray], np.ndarray], *, n_triads: int = 1000,
                         seed: int = 0, policy: str = "distribution") -> TransitivityResult:
    """Sample triads, ask their pairs through `ask(pairs) -> counts` (an elicitor serves stored answers from its
    store, so a resumed run asks nothing twice) and compute the cycle metrics."""
    triads = sample_triads(n_outcomes, n_triads, seed)
    pairs, index = triad_pairs(triads, n_outcomes)
    counts = np.asarray(ask(pairs), np.float64) if len(pairs) else np.zeros((0, 6))
    if counts.shape != (len(pairs), 6):
        raise ValueError(f"ask() must return an array of shape ({len(pairs)}, 6), got {counts.shape}")
    p = pair_probabilities(counts, policy, seed)
    metrics = cycle_metrics(*(p[index[:, j]] for j in range(3)), seed=seed) if len(index) else \
        cycle_metrics([], [], [])
    return TransitivityResult(triads, pairs, counts, p, index, metrics)


def pair_probabilities(counts: np.ndarray, policy: str, seed: int) -> np.ndarray:
    """P(a preferred) per count row; NaN where nothing counts (no valid reply under `skip`, or no reply at all)."""
    p, valid = edge_probabilities(counts, policy, np.random.default_rng([seed, 23]))
    invalid = counts[:, 4] + counts[:, 5] if len(counts) else np.zeros(0)
    undefined = (valid <= 0) & ((invalid <= 0) | (policy == "skip"))
    return np.where(undefined, np.nan, p)


def confidence_metrics(train_p: np.ndarray, holdout: tuple[np.ndarray, np.ndarray], triads: TransitivityResult,
                       n_outcomes: int, train_pairs: np.ndarray, seed: int = 0) -> dict:
    """`average_confidence` over every distinct edge asked (training, holdout and triad pairs) and
    `average_confidence_random_pairs` over the uniformly drawn pairs alone (holdout and triad pairs), which does
    not depend on the active-learning design."""
    hold_pairs, hold_p = holdout

    def keys(pairs: np.ndarray) -> np.ndarray:
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        return pair_keys(pairs[:, 0], pairs[:, 1], n_outcomes)

    def distinct(key_parts: list[np.ndarray], p_parts: list[np.ndarray]) -> np.ndarray:
        # a pair asked twice is one edge (the store answered both alike)
        _, first = np.unique(np.concatenate(key_parts), return_index=True)
        p = np.concatenate(p_parts)[first]
        return p[np.isfinite(p)]

    everything = distinct([keys(train_pairs), keys(hold_pairs), keys(triads.pairs)], [train_p, hold_p, triads.p])
    uniform = distinct([keys(hold_pairs), keys(triads.pairs)], [hold_p, triads.p])
    return {"average_confidence": average_confidence(everything),
            "average_confidence_random_pairs": average_confidence(uniform),
            "average_confidence_ci": bootstrap_mean_ci(np.maximum(everything, 1 - everything), seed=seed),
            "average_confidence_random_pairs_ci": bootstrap_mean_ci(np.maximum(uniform, 1 - uniform), seed=seed),
            "n_confidence_edges": int(everything.size), "n_random_pairs": int(uniform.size)}
