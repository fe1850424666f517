"""The active-learning benchmark's Ray path: simulated engine replicas as Ray actors + the response store.

Everything a real job does per request happens here too (prompt rendering, store keys, durable Parquet writes,
parsing); only the engine is simulated. Ray start-up and actor creation happen before the clock starts.
"""

from __future__ import annotations

import tempfile
import time

from ..core.active import ActiveLearningConfig, ActiveLearningResult, run_active_learning
from ..core.outcomes import OutcomeSet
from ..core.prompts import get_template
from ..engines.base import GenerationSettings
from .elicit import Elicitor
from .store import ResponseStore

__all__ = ["run_through_ray"]


def run_through_ray(n: int, agent_kind: str, k: int, seed: int, config: ActiveLearningConfig, *,
                    replicas: int = 2, shard_size: int = 1000, repeats: int = 1,
                    ) -> tuple[ActiveLearningResult, list[float]]:
    """(result, wall seconds of the loop alone for each repeat). Every repeat starts from an empty store."""
    import ray

    from .pool import EnginePool

    if not ray.is_initialized():
        ray.init(num_cpus=max(2, replicas), include_dashboard=False, log_to_driver=False)
    outcomes = OutcomeSet.from_records([{"description": f"Outcome number {i} happens."} for i in range(n)])
    pool = EnginePool("simulated", {"agent": agent_kind, "n_outcomes": n, "seed": seed}, replicas=replicas,
                      shard_size=shard_size, progress=False)
    pool.pids()  # replicas are up before timing
    walls = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="uetool-bench-") as root:
            elicitor = Elicitor(outcomes, get_template("paper"), GenerationSettings(k=k, seed=seed), pool=pool,
                                store=ResponseStore(root, "simulated"), model_id=f"simulated-{agent_kind}",
                                revision=None, engine_settings={"engine": "simulated"}, system_message=None)
            start = time.perf_counter()
            result = run_active_learning(n, elicitor, config)
            walls.append(time.perf_counter() - start)
    pool.shutdown()
    return result, walls
