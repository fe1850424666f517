"""The active-learning benchmark's Ray path: simulated engine replicas as Ray actors + the response store.

Everything a real job does per request happens here too (store keys, durable Parquet writes, parsing; prompts are
not rendered because the simulated engine does not read them, as in a real simulated job); only the engine is
simulated. Ray start-up and actor creation happen before any clock starts.
"""

from __future__ import annotations

import tempfile
import time

from uetool.core.active import ActiveLearningConfig, ActiveLearningResult, run_active_learning
from uetool.core.outcomes import OutcomeSet
from uetool.core.prompts import get_template
from uetool.engines.base import GenerationSettings
from uetool.io.store import ResponseStore
from uetool.runtime.elicit import Elicitor

__all__ = ["RayPath"]


class RayPath:
    """The loop through an engine pool and a store; each `run()` starts from an empty store and is timed alone."""

    def __init__(self, n: int, agent_kind: str, k: int, seed: int, config: ActiveLearningConfig, *,
                 replicas: int = 2, shard_size: int = 1000) -> None:
        import ray

        from uetool.runtime.pool import EnginePool

        if not ray.is_initialized():
            ray.init(num_cpus=max(2, replicas), include_dashboard=False, log_to_driver=False)
        self.n, self.agent_kind, self.k, self.seed, self.config = n, agent_kind, k, seed, config
        self.outcomes = OutcomeSet.from_records([{"description": f"Outcome number {i} happens."} for i in range(n)])
        self.pool = EnginePool("simulated", {"agent": agent_kind, "n_outcomes": n, "seed": seed}, replicas=replicas,
                               shard_size=shard_size, progress=False)
        self.pool.pids()  # replicas are up before timing

    def run(self) -> tuple[ActiveLearningResult, float, Elicitor]:
        """(result, wall seconds of the loop, the elicitor with its stats)."""
        with tempfile.TemporaryDirectory(prefix="uetool-bench-") as root:
            elicitor = Elicitor(self.outcomes, get_template("paper"), GenerationSettings(k=self.k, seed=self.seed),
                                pool=self.pool, store=ResponseStore(root, "simulated"),
                                model_id=f"simulated-{self.agent_kind}", revision=None,
                                engine_settings={"engine": "simulated"}, system_message=None)
            start = time.perf_counter()
            result = run_active_learning(self.n, elicitor, self.config)
            return result, time.perf_counter() - start, elicitor

    def close(self) -> None:
        self.pool.shutdown()
