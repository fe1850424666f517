"""Engine replicas as long-lived Ray actors, and a pool that shards request batches over them.

A replica loads its model once and serves every round and every outcome set of a job. A shard whose actor dies
(process killed, node lost, OOM) is sent again to a fresh replica that replaces the dead one, so the job completes
with the same results; results reach the caller shard by shard, so they can be stored as they arrive.

Every replica that asks for resources gets its own placement group, so that waiting for resources is separate from
loading the model: the wait has a timeout (`pool.start_timeout_s`) and an error naming what is missing, a request
no node of the cluster could ever hold fails at once, and a replaced replica's group is removed with it. The pool
is a context manager: whatever it placed is released on exit, also when its engines fail to load.
"""

from __future__ import annotations

import os
import pickle
import random
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..core.progress import progress_bar
from ..engines import create_engine, engine_class
from ..engines.base import GenerationSettings, RequestBatch, ResultBatch
from .config import PoolResources, replica_bundles

__all__ = ["EngineActor", "EnginePool", "PoolStartError", "check_placeable", "release_placement_groups"]

# a replica's process is gone (a RayTaskError is the engine's own exception, even when it wraps one of these)
_ACTOR_LOST = (ActorDiedError, ActorUnavailableError, RayActorError)
_WAIT_REPORT_S = 60.0  # while waiting for resources, say what is awaited this often
_ALL_OR_NONE_WINDOW_S = (2.0, 6.0)  # a multi-replica pool holds partial reservations this long at most


class PoolStartError(RuntimeError):
    """The pool's replicas cannot be placed: the cluster can never hold them, or they waited past the timeout."""


class EngineActor:
    """One engine replica (wrapped by ray.remote in the pool)."""

    def __init__(self, engine: str, engine_arguments: dict) -> None:
        self.engine = create_engine(engine, **engine_arguments)

    def generate(self, payload: bytes) -> bytes:
        """`engine.generate` on a pickled (RequestBatch, settings), answered in the compact wire format.

        Ray serialises every numpy array of an argument or return value out of band, which costs about 0.5-0.9 ms
        per array per call on a 2-core machine (measured); one in-band pickle travels as plain bytes for ~0.05 ms.
        """
        batch, settings = pickle.loads(payload)
        return _results_to_wire(self.engine.generate(batch, settings))

    def pid(self) -> int:
        return os.getpid()

    def counters(self) -> dict:
        """The engine's own counters (the OpenAI engine's retries, say): its log stays in the replica."""
        return dict(getattr(self.engine, "counters", None) or {})


def _describe(bundles: list[dict]) -> str:
    total: dict[str, float] = {}
    for bundle in bundles:
        for k, v in bundle.items():
            total[k] = total.get(k, 0.0) + v
    what = " and ".join(f"{v:g} {k}{'s' if v != 1 else ''}" for k, v in sorted(total.items(), reverse=True))
    return f"{what} in one node" if len(bundles) > 1 else what


def check_placeable(bundles: list[dict], replicas: int = 1) -> None:
    """Fail now, naming what is missing, when the alive nodes of the cluster could never hold the pool (each
    replica's bundles on one node, STRICT_PACK). On an autoscaling cluster, skip this (`pool.autoscale=true`)."""
    if not bundles:
        return
    need = {k: sum(b.get(k, 0.0) for b in bundles) for k in {k for b in bundles for k in b}}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    holds = [int(min(node.get(k, 0.0) // v for k, v in need.items())) for node in nodes]
    if sum(holds) >= replicas:
        return
    have = ", ".join(sorted({" + ".join(f"{node.get(k, 0.0):g} {k}" for k in sorted(need, reverse=True))
                             for node in nodes})) or "no alive nodes"
    if any(holds):
        raise PoolStartError(f"an engine pool of {replicas} replicas needs {_describe(bundles)} for each; the "
                             f"cluster's nodes ({have}) hold {sum(holds)} at most. Lower pool.replicas, or use a "
                             "bigger cluster (pool.autoscale=true on an autoscaling one)")
    raise PoolStartError(f"an engine replica needs {_describe(bundles)}; the cluster's nodes have {have}. Use a "
                         "cluster with such nodes, lower pool.num_cpus / pool.num_gpus or the model's "
                         "tensor_parallel_size, or set pool.autoscale=true on an autoscaling cluster")


def release_placement_groups(prefix: str) -> int:
    """Remove the placement groups whose name starts with `prefix` (a pool's name): what a pool reserved when the
    process that owned it died before releasing it. Returns how many were removed."""
    from ray.util import placement_group_table
    from ray.util.placement_group import PlacementGroup

    removed = 0
    for group_id, info in placement_group_table().items():
        if info.get("state") != "REMOVED" and str(info.get("name") or "").startswith(prefix):
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
            removed += 1
    return removed


class EnginePool:
    def __init__(self, engine: str, engine_arguments: dict, *, replicas: int = 1, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, tensor_parallel_size: int = 1, shard_size: int | None = None,
                 max_in_flight_per_replica: int = 2, max_shard_retries: int = 3, progress: bool = True,
                 name: str | None = None, namespace: str | None = None, start_timeout_s: float | None = None,
                 autoscale: bool = False) -> None:
        """Places and starts `replicas` engine replicas; any failure releases what was placed before it raises.

        `start_timeout_s`: how long a replica may wait for its resources (None: as long as it takes, e.g. a sweep's
        models queueing for each other's GPUs). Prefer `with EnginePool(...) as pool:`.
        """
        if replicas < 1:
            raise ValueError(f"engine pool `replicas` must be >= 1, got {replicas}")
        self.engine, self.engine_arguments = engine, dict(engine_arguments)
        self.reads_text = bool(engine_class(engine).reads_text)
        self.num_cpus, self.num_gpus, self.tp = float(num_cpus), float(num_gpus), int(tensor_parallel_size)
        self.shard_size = int(shard_size or engine_class(engine).shard_size)
        self.max_in_flight, self.max_shard_retries = max_in_flight_per_replica, max_shard_retries
        self.progress = progress
        self.start_timeout_s = start_timeout_s
        # named replicas ("<name>/<slot>.<generation>") show up by model in `ray list actors` and can be found
        # (and, in failure tests, killed) from outside the process that owns the pool
        self.name, self.namespace = name, namespace
        self.bundles = replica_bundles(self.tp, self.num_cpus, self.num_gpus)
        self.resources = PoolResources(engine, replicas, self.num_cpus, self.num_gpus, self.tp, self.shard_size)
        self.replacements = 0
        self._generation = [0] * replicas
        self._groups: list = [None] * replicas
        self.actors: list = []
        try:
            if not autoscale:
                check_placeable(self.bundles, replicas)
            self._reserve(list(range(replicas)))
            for slot in range(replicas):
                self.actors.append(self._new_actor(slot))
        except BaseException:
            self.shutdown()
            raise

    @classmethod
    def for_resources(cls, engine_arguments: dict, resources: PoolResources, **options) -> EnginePool:
        pool = cls(resources.engine, engine_arguments, replicas=resources.replicas, num_cpus=resources.num_cpus,
                   num_gpus=resources.num_gpus, tensor_parallel_size=resources.tensor_parallel_size,
                   shard_size=resources.shard_size, **options)
        pool.resources = resources
        return pool

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def actor_name(self, slot: int) -> str | None:
        return None if self.name is None else f"{self.name}/{slot}.{self._generation[slot]}"

    def group_name(self, slot: int) -> str | None:
        """Placement groups are named like replicas, so that a sweep can release the groups of a model whose task
        died (a group belongs to the job, not to the task that created it)."""
        return None if self.name is None else f"{self.name}/{slot}.{self._generation[slot]}"

    def _reserve(self, slots: list[int]) -> None:
        """Reserve the placement groups of `slots`, all or none.

        Waiting replica by replica lets two pools each hold one replica's resources while both wait for another
        (a deadlock in a sweep); so all groups are requested together, and when they are not all placed within a
        short window they are released and asked for again after a jittered pause. Ends with PoolStartError once
        `start_timeout_s` has passed, naming what was awaited and what is free.
        """
        if not self.bundles or not slots:
            return
        limit, rng = self.start_timeout_s, random.Random()
        started = reported = time.monotonic()
        what = _describe(self.bundles) + (f" for each of {len(slots)} replicas" if len(slots) > 1 else "")
        while True:
            for slot in slots:
                if self._groups[slot] is None:
                    self._groups[slot] = placement_group(self.bundles, strategy="STRICT_PACK",
                                                         name=self.group_name(slot) or "")
            window = _WAIT_REPORT_S if len(slots) == 1 else rng.uniform(*_ALL_OR_NONE_WINDOW_S)
            if limit is not None:
                window = min(window, max(0.0, limit - (time.monotonic() - started)))
            waits = [self._groups[slot].ready() for slot in slots]
            ready, _ = ray.wait(waits, num_returns=len(waits), timeout=window)
            if len(ready) == len(waits):
                return
            waited = time.monotonic() - started
            free = ray.available_resources()
            status = f"{free.get('CPU', 0.0):g} CPUs and {free.get('GPU', 0.0):g} GPUs are free now"
            if limit is not None and waited >= limit:
                raise PoolStartError(
                    f"engine pool '{self.engine}' waited {waited:.0f} s for {what} (pool.start_timeout_s={limit:g}; "
                    f"in a sweep: sweep.start_timeout_s); {status}. Other jobs may hold them: wait for them, or raise "
                    "the timeout")
            if len(slots) > 1:  # all or none: give back what was placed, so that no other pool waits on it
                for slot in slots:
                    self._remove_group(slot)
                time.sleep(rng.uniform(0.2, 1.0))
            if time.monotonic() - reported >= _WAIT_REPORT_S:
                reported = time.monotonic()
                print(f"engine pool '{self.engine}' waiting for {what} ({waited:.0f} s so far; {status})", flush=True)

    def _placement(self, slot: int) -> dict:
        """Actor options that place a replica in its reserved placement group (plain options when it asks for
        no resources)."""
        group = self._groups[slot]
        if group is None:
            return {"num_cpus": 0, "num_gpus": 0}
        if len(self.bundles) > 1:
            # tensor parallel: the engine's own workers (vLLM's Ray executor) take the group's GPU bundles
            return {"num_cpus": 0, "num_gpus": 0, "scheduling_strategy": PlacementGroupSchedulingStrategy(
                group, placement_group_capture_child_tasks=True)}
        # one bundle: the replica itself takes it (so that Ray assigns it the bundle's GPU, if any)
        bundle = self.bundles[0]
        return {"num_cpus": bundle.get("CPU", 0.0), "num_gpus": bundle.get("GPU", 0.0),
                "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)}

    def _new_actor(self, slot: int):
        options: dict = {"max_restarts": 0, "max_concurrency": 1, **self._placement(slot)}
        if self.name is not None:
            options.update(name=self.actor_name(slot), namespace=self.namespace)
        return ray.remote(EngineActor).options(**options).remote(self.engine, self.engine_arguments)

    def run(self, requests: RequestBatch, settings: GenerationSettings,
            on_shard: Callable[[ResultBatch], None] | None = None) -> ResultBatch:
        """Answer all requests (order kept). `on_shard` sees each shard's results as soon as it completes."""
        if not isinstance(requests, RequestBatch):
            raise TypeError(f"EnginePool.run takes a RequestBatch, got {type(requests).__name__}")
        shards = [requests[i:i + self.shard_size] for i in range(0, len(requests), self.shard_size)]
        if not self.reads_text:  # keys and prompts stay here; the engine gets only what it reads
            shipped = [RequestBatch([], [], s.a, s.b, s.order, s.labels, s.system_message) for s in shards]
        else:
            shipped = shards
        payloads = [pickle.dumps((s, settings), protocol=5) for s in shipped]
        results: list = [None] * len(shards)
        attempts = [0] * len(shards)
        queue: deque = deque(range(len(shards)))
        pending: dict = {}
        load = [0] * len(self.actors)
        bar = progress_bar(self.progress, len(requests), desc="requests", unit="req", leave=False)
        try:
            while queue or pending:
                while queue and min(load) < self.max_in_flight:
                    slot = load.index(min(load))
                    shard = queue.popleft()
                    actor = self.actors[slot]
                    pending[actor.generate.remote(payloads[shard])] = (shard, slot, actor)
                    load[slot] += 1
                # one call in flight (a small round): ray.get waits for it without a separate ray.wait
                ready = list(pending) if len(pending) == 1 else ray.wait(list(pending), num_returns=1)[0]
                shard, slot, actor = pending.pop(ready[0])
                load[slot] -= 1
                try:
                    answer = ray.get(ready[0])
                except RayTaskError as err:
                    raise err.as_instanceof_cause() from None
                except _ACTOR_LOST as err:
                    attempts[shard] += 1
                    if attempts[shard] > self.max_shard_retries:
                        raise RuntimeError(f"shard {shard} failed {attempts[shard]} times; last error: {err}") from err
                    if self.actors[slot] is actor:  # other shards of the same dead actor must not kill its successor
                        self._replace(slot)
                    queue.appendleft(shard)
                    continue
                answer = _results_from_wire(answer, shards[shard])
                if on_shard is not None:
                    on_shard(answer)
                results[shard] = answer
                bar.update(len(answer))
        finally:
            bar.close()
        return ResultBatch.concat(results)

    def _replace(self, slot: int) -> None:
        """A fresh replica in `slot`; the dead one's actor and placement group are released first."""
        self._release(slot)
        self._generation[slot] += 1
        self._reserve([slot])
        self.actors[slot] = self._new_actor(slot)
        self.replacements += 1

    def _release(self, slot: int) -> None:
        if slot < len(self.actors):
            try:
                ray.kill(self.actors[slot], no_restart=True)
            except Exception:  # noqa: BLE001 - it is already dead
                pass
        self._remove_group(slot)

    def _remove_group(self, slot: int) -> None:
        group, self._groups[slot] = self._groups[slot], None
        if group is not None:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - already removed (e.g. Ray shut down)
                pass

    def pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self.actors])

    def engine_counters(self) -> dict[str, int]:
        """The engines' counters summed over the live replicas (a replaced replica's are lost with it)."""
        total: dict[str, int] = {}
        for counters in ray.get([a.counters.remote() for a in self.actors]):
            for name, value in counters.items():
                total[name] = total.get(name, 0) + int(value)
        return total

    def placement_groups(self) -> list:
        """The placement groups this pool holds now (one per placed replica)."""
        return [g for g in self._groups if g is not None]

    def shutdown(self) -> None:
        for slot in range(len(self._groups)):
            self._release(slot)
        self.actors = []


def _results_to_wire(results: ResultBatch) -> bytes:
    """A shard's results as one compact pickle: the caller already holds the shard's keys and (a, b, order), float
    columns that are all NaN (sample mode) and errors that are all None are left out, reply codes shrink."""
    wire: dict = {"n": len(results.order), "texts": results.texts.compact()}
    for name in ("p_first", "p_second", "other_mass"):
        column = getattr(results, name)
        if not np.isnan(column).all():
            wire[name] = column
    if results.errors.count(None) != len(results.errors):
        wire["errors"] = results.errors
    if not np.isnan(results.tokens).all():  # engines that count tokens
        wire["tokens"] = results.tokens
    return pickle.dumps(wire, protocol=pickle.HIGHEST_PROTOCOL)


def _results_from_wire(data: bytes, shard: RequestBatch) -> ResultBatch:
    wire = pickle.loads(data)
    n = len(shard)
    if wire["n"] != n or len(wire["texts"]) != n:
        raise RuntimeError(f"an engine replica answered {wire['n']} results for a shard of {n} requests")
    floats = [wire[name] if name in wire else np.full(n, np.nan) for name in ("p_first", "p_second", "other_mass")]
    return ResultBatch(list(shard.keys), shard.a, shard.b, shard.order, wire["texts"], *floats,
                       wire.get("errors", [None] * n), wire.get("tokens"))
