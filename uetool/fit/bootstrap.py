"""Bootstrap confidence intervals with the replicates spread over parallel Ray tasks.

The replicates are cut into chunks (`uetool.core.thurstonian.bootstrap_chunks`), one Ray task per chunk; each task
solves its chunk exactly as the sequential `bootstrap_intervals` does (replicate r draws its resampling weights from
its own seeded generator), so for the same seed and chunk size the intervals are identical to
`bootstrap_intervals(..., replicates_per_chunk=chunk)`. Many models' bootstraps can run in one call: all their
chunks are in flight together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.thurstonian import ThurstonianFit, bootstrap_chunks, bootstrap_samples, percentile_intervals

__all__ = ["BootstrapProblem", "bootstrap_intervals_ray", "bootstrap_intervals_many", "replicates_per_task"]


@dataclass
class BootstrapProblem:
    """One model's point fit and training edges, and the seed of its bootstrap."""

    fit: ThurstonianFit
    a: np.ndarray
    b: np.ndarray
    p: np.ndarray
    weight: np.ndarray
    seed: int = 0


def replicates_per_task(n_boot: int, num_tasks: int) -> int:
    """Chunk size that spreads `n_boot` replicates over at most `num_tasks` tasks."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    return max(1, math.ceil(n_boot / num_tasks))


def _chunk_task(fit: ThurstonianFit, edges: tuple, first: int, count: int, seed: int, solve: dict) -> np.ndarray:
    a, b, p, w = edges
    return bootstrap_samples(fit, a, b, p, w, first=first, count=count, seed=seed, **solve)


def bootstrap_intervals_many(problems: Sequence[BootstrapProblem], *, n_boot: int = 100, level: float = 0.95,
                             replicates_per_chunk: int = 10, num_cpus: float = 1.0, prior_log_var: float = 1.0,
                             prior_mean: float = 0.1, tol: float = 1e-7,
                             max_iter: int = 500) -> list[tuple[np.ndarray, np.ndarray]]:
    """(low, high) per problem; every chunk of every problem is a Ray task (`num_cpus` each)."""
    import ray

    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not ray.is_initialized():
        ray.init()
    task = ray.remote(num_cpus=num_cpus)(_chunk_task)
    solve = {"prior_log_var": prior_log_var, "prior_mean": prior_mean, "tol": tol, "max_iter": max_iter}
    pending = []
    for problem in problems:
        # one copy of the edges in the object store, shared by all chunks of this problem
        edges = ray.put(tuple(np.asarray(x) for x in (problem.a, problem.b, problem.p, problem.weight)))
        chunks = bootstrap_chunks(n_boot, np.asarray(problem.a).size, replicates_per_chunk=replicates_per_chunk)
        pending.append([task.remote(problem.fit, edges, first, count, int(problem.seed), solve)
                        for first, count in chunks])
    return [percentile_intervals(np.concatenate(ray.get(refs)), level) for refs in pending]


def bootstrap_intervals_ray(fit: ThurstonianFit, a: np.ndarray, b: np.ndarray, p: np.ndarray, weight: np.ndarray,
                            *, n_boot: int = 100, level: float = 0.95, seed: int = 0, num_tasks: int = 4,
                            **options) -> tuple[np.ndarray, np.ndarray]:
    """One model's intervals with its replicates split over `num_tasks` parallel Ray tasks.

    Equals `bootstrap_intervals(..., seed=seed, replicates_per_chunk=replicates_per_task(n_boot, num_tasks))`.
    """
    problem = BootstrapProblem(fit, a, b, p, weight, seed)
    return bootstrap_intervals_many([problem], n_boot=n_boot, level=level,
                                    replicates_per_chunk=replicates_per_task(n_boot, num_tasks), **options)[0]
