"""Engine replicas as long-lived Ray actors, and a pool that shards request batches over them.

A replica loads its model once and serves every round and every outcome set of a job. A shard whose actor dies
(process killed, node lost, OOM) is sent again to a fresh replica that replaces the dead one, so the job
completes with the same results; results reach the caller shard by shard, so they can be stored as they arrive.
"""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait as wait_for_connections

import numpy as np
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..core.progress import progress_bar
from ..engines import create_engine, engine_reads_text
from ..engines.base import ElicitationRequest, ElicitationResult, GenerationSettings, RequestBatch, ResultBatch
from .channel import ChannelServer, ReplicaChannel, ReplicaLost

__all__ = ["EngineActor", "EnginePool", "replica_bundles"]

# a channel silent this long gets its replica's liveness checked through Ray (an engine's child process can hold a
# dead replica's socket open, so end-of-file alone is not proof)
_LIVENESS_CHECK_S = 30.0

# a replica's process is gone (a RayTaskError is the engine's own exception, even when it wraps one of these)
_ACTOR_LOST = (ActorDiedError, ActorUnavailableError, RayActorError)


class EngineActor:
    """One engine replica (wrapped by ray.remote in the pool)."""

    def __init__(self, engine: str, engine_kwargs: dict) -> None:
        self.engine = create_engine(engine, **engine_kwargs)
        self._lock = threading.Lock()  # Ray calls and a local channel's thread take turns on the engine
        self._channel: ChannelServer | None = None

    def generate(self, requests: list[ElicitationRequest] | RequestBatch,
                 settings: GenerationSettings) -> list[ElicitationResult] | ResultBatch:
        """Lists in, lists out; a RequestBatch in, a ResultBatch out (columns travel cheaper through Ray)."""
        with self._lock:
            if not isinstance(requests, RequestBatch):
                return self.engine.generate(requests, settings)
            fast = getattr(self.engine, "generate_batch", None)
            if fast is not None:
                return fast(requests, settings)
            return ResultBatch.from_results(self.engine.generate(requests.to_requests(), settings), requests)

    def generate_packed(self, payload: bytes) -> bytes:
        """`generate` on a pickled (RequestBatch, settings), answering with `_results_to_wire`.

        Ray serialises every numpy array of an argument or return value out of band, which costs about 0.5-0.9 ms
        per array per call on a 2-core machine (measured), more than a simulated engine needs to answer a shard;
        one in-band pickle travels as plain bytes for about 0.05 ms.
        """
        batch, settings = pickle.loads(payload)
        return _results_to_wire(self.generate(batch, settings))

    def open_channel(self, authkey: bytes, driver_node: str | None) -> str | None:
        """Serve `generate_packed` over a local channel (see channel.py) when this replica runs on the driver's
        node; returns the socket's address, or None on another node (the pool then keeps to Ray calls)."""
        if driver_node is None or ray.get_runtime_context().get_node_id() != driver_node:
            return None
        self._channel = ChannelServer(self.generate_packed, authkey)
        return self._channel.address

    def pid(self) -> int:
        return os.getpid()


def replica_bundles(tensor_parallel_size: int, num_cpus: float = 1.0) -> list[dict]:
    """Placement-group bundles for one replica: one GPU bundle per tensor-parallel rank (none on CPU)."""
    if tensor_parallel_size <= 0:
        return [{"CPU": num_cpus}]
    return [{"GPU": 1.0, "CPU": num_cpus} for _ in range(tensor_parallel_size)]


class EnginePool:
    def __init__(self, engine: str, engine_kwargs: dict, *, replicas: int = 1, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, tensor_parallel_size: int = 1, shard_size: int = 64,
                 max_in_flight_per_replica: int = 2, max_shard_retries: int = 3, progress: bool = True,
                 name: str | None = None, namespace: str | None = None, local_channel: bool = False) -> None:
        """`local_channel`: carry shards to replicas on the driver's node over a Unix socket instead of Ray calls
        (see channel.py; worth it where an engine answers a shard in about a millisecond, i.e. simulated)."""
        if replicas < 1:
            raise ValueError(f"engine pool `replicas` must be >= 1, got {replicas}")
        self.engine, self.engine_kwargs = engine, dict(engine_kwargs)
        self.num_cpus, self.num_gpus, self.tp = num_cpus, num_gpus, tensor_parallel_size
        self.shard_size, self.max_in_flight = shard_size, max_in_flight_per_replica
        self.max_shard_retries, self.progress = max_shard_retries, progress
        # named replicas ("<name>/<slot>.<generation>") show up by model in `ray list actors` and can be found
        # (and, in failure tests, killed) from outside the process that owns the pool
        self.name, self.namespace = name, namespace
        self.reads_text = engine_reads_text(engine)
        self._groups: list = []
        self._generation = [0] * replicas
        self.actors = [self._new_actor(slot) for slot in range(replicas)]
        self.replacements = 0
        self.local_channel = local_channel
        self._channels: list[ReplicaChannel] | None = None  # opened at the first run(); None: Ray calls

    def actor_name(self, slot: int) -> str | None:
        return None if self.name is None else f"{self.name}/{slot}.{self._generation[slot]}"

    def _new_actor(self, slot: int):
        options: dict = {"max_restarts": 0, "max_concurrency": 1}
        if self.name is not None:
            options.update(name=self.actor_name(slot), namespace=self.namespace)
        if self.num_gpus > 0 and self.tp > 1:
            # tensor parallel: reserve tp GPU bundles; the engine's workers are scheduled inside the group
            group = placement_group(replica_bundles(self.tp, self.num_cpus), strategy="STRICT_PACK")
            # no timeout: in a sweep, a model whose GPUs are busy queues until Ray can place it
            ray.get(group.ready())
            self._groups.append(group)
            options.update(num_cpus=0, num_gpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
                group, placement_group_capture_child_tasks=True))
        else:
            options.update(num_cpus=self.num_cpus, num_gpus=self.num_gpus)
        return ray.remote(EngineActor).options(**options).remote(self.engine, self.engine_kwargs)

    def run(self, requests: list[ElicitationRequest] | RequestBatch, settings: GenerationSettings,
            on_shard: Callable | None = None) -> list[ElicitationResult] | ResultBatch:
        """Answer all requests (order kept). `on_shard` sees each shard's results as soon as it completes.

        A list of requests gives a list of results; a RequestBatch gives one ResultBatch.
        """
        shards = [requests[i:i + self.shard_size] for i in range(0, len(requests), self.shard_size)]
        columns = isinstance(requests, RequestBatch)
        if columns and not self.reads_text:  # keys and prompts stay here; the engine gets only what it reads
            shipped = [RequestBatch([], [], s.a, s.b, s.order, s.labels, s.system_message) for s in shards]
        else:
            shipped = shards
        results: list = [None] * len(shards)
        attempts = [0] * len(shards)
        bar = progress_bar(self.progress, len(requests), desc="requests", unit="req", leave=False)

        def deliver(shard: int, answer) -> None:
            if columns:
                answer = _results_from_wire(answer, shards[shard])
            if on_shard is not None:
                on_shard(answer)
            results[shard] = answer
            bar.update(len(answer))

        def retry(shard: int, err: Exception) -> None:
            attempts[shard] += 1
            if attempts[shard] > self.max_shard_retries:
                raise RuntimeError(f"shard {shard} failed {attempts[shard]} times; last error: {err}") from err

        try:
            if columns and self._open_channels():
                payloads = [pickle.dumps((s, settings), protocol=5) for s in shipped]
                try:
                    self._run_channels(payloads, deliver, retry)
                except BaseException:
                    # answers to this call's other shards may still arrive on the channels: never let a later
                    # call read them as its own (the next call opens fresh channels)
                    self._close_channels()
                    raise
            else:
                self._run_ray(shipped, settings, columns, deliver, retry)
        finally:
            bar.close()
        if columns:
            return ResultBatch.concat(results)
        return [r for shard in results for r in shard]

    def _run_ray(self, shipped: list, settings: GenerationSettings, columns: bool, deliver: Callable,
                 retry: Callable) -> None:
        queue: deque = deque(range(len(shipped)))
        pending: dict = {}
        load = [0] * len(self.actors)
        while queue or pending:
            while queue and min(load) < self.max_in_flight:
                slot = load.index(min(load))
                shard = queue.popleft()
                actor = self.actors[slot]
                if columns:
                    call = actor.generate_packed.remote(pickle.dumps((shipped[shard], settings), protocol=5))
                else:
                    call = actor.generate.remote(shipped[shard], settings)
                pending[call] = (shard, slot, actor)
                load[slot] += 1
            # one call in flight (a small round): ray.get waits for it without a separate ray.wait
            ready = list(pending) if len(pending) == 1 else ray.wait(list(pending), num_returns=1)[0]
            shard, slot, actor = pending.pop(ready[0])
            load[slot] -= 1
            try:
                answer = ray.get(ready[0])
            except _ACTOR_LOST as err:
                if isinstance(err, RayTaskError):
                    raise
                retry(shard, err)
                if self.actors[slot] is actor:  # other shards of the same dead actor must not kill its successor
                    self._replace(slot)
                queue.appendleft(shard)
                continue
            except RayTaskError as err:
                raise err.as_instanceof_cause() from None
            deliver(shard, answer)

    def _run_channels(self, payloads: list[bytes], deliver: Callable, retry: Callable) -> None:
        channels = self._channels
        assert channels is not None
        queue: deque = deque(range(len(payloads)))
        while queue or any(c.in_flight for c in channels):
            for slot in sorted(range(len(channels)), key=lambda s: len(channels[s].in_flight)):
                try:
                    while queue and len(channels[slot].in_flight) < self.max_in_flight:
                        shard = queue.popleft()
                        channels[slot].send(shard, payloads[shard])
                except ReplicaLost:
                    pass  # the receive below first reads any answers it did send, then meets the closed socket
            busy = {channels[s].conn: s for s in range(len(channels)) if channels[s].in_flight}
            ready = wait_for_connections(list(busy), timeout=_LIVENESS_CHECK_S)
            if not ready:  # nothing for a while: a replica whose socket an engine's child process holds open
                for slot in set(busy.values()):  # may be dead without the socket showing it
                    if not self._alive(slot):
                        self._lost(slot, ReplicaLost("engine replica died"), queue, retry)
                continue
            for conn in ready:
                slot = busy[conn]
                try:
                    shard, answer = channels[slot].receive()
                except ReplicaLost as err:
                    self._lost(slot, err, queue, retry)
                    continue
                deliver(shard, answer)

    def _alive(self, slot: int) -> bool:
        try:
            ray.get(self.actors[slot].pid.remote())  # the replica's Ray thread is free while its channel works
        except _ACTOR_LOST as err:
            if isinstance(err, RayTaskError):
                raise
            return False
        return True

    def _lost(self, slot: int, err: Exception, queue: deque, retry: Callable) -> None:
        """A replica's channel closed: its shards in flight go back to the queue (front) for a fresh replica."""
        assert self._channels is not None
        lost = list(self._channels[slot].in_flight)
        for shard in lost:
            retry(shard, err)
        queue.extendleft(reversed(lost))
        self._replace(slot)

    def _open_channels(self) -> bool:
        """Whether shards go over local channels: asked for, and every replica is on the driver's node."""
        if not self.local_channel:
            return False
        if self._channels is None:
            channels = [self._connect(slot) for slot in range(len(self.actors))]
            if any(c is None for c in channels):  # a replica on another node: Ray calls for all, kept simple
                for c in channels:
                    if c is not None:
                        c.close()
                self.local_channel = False
                return False
            self._channels = channels  # type: ignore[assignment]
        return True

    def _connect(self, slot: int) -> ReplicaChannel | None:
        """A channel to the replica in `slot` (None: it runs on another node); a replica that dies before its
        channel is up (at start-up, say) is replaced, up to max_shard_retries times."""
        for attempt in range(self.max_shard_retries + 1):
            try:
                return self._open_channel(self.actors[slot])
            except (*_ACTOR_LOST, ReplicaLost) as err:
                if isinstance(err, RayTaskError) or attempt == self.max_shard_retries:
                    raise
                self._replace_actor(slot)
        return None  # unreachable: the loop returns or raises

    def _open_channel(self, actor) -> ReplicaChannel | None:
        try:
            driver_node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - e.g. a Ray Client driver, which runs on no node
            driver_node = None
        authkey = secrets.token_bytes(32)
        address = ray.get(actor.open_channel.remote(authkey, driver_node))
        if address is None:
            return None
        try:
            return ReplicaChannel(address, authkey)
        except (OSError, EOFError) as err:  # it died between answering and our connecting
            shutil.rmtree(os.path.dirname(address), ignore_errors=True)  # same node: its socket directory
            raise ReplicaLost(f"could not connect to the engine replica's channel: {err!r}") from err

    def _replace_actor(self, slot: int) -> None:
        try:
            ray.kill(self.actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - it is already dead
            pass
        self._generation[slot] += 1
        self.actors[slot] = self._new_actor(slot)
        self.replacements += 1

    def _replace(self, slot: int) -> None:
        self._replace_actor(slot)
        if self._channels is not None:
            self._channels[slot].close()
            channel = self._connect(slot)
            if channel is None:
                raise RuntimeError("a replacement engine replica was placed on another node than the driver; "
                                   "set engine.local_channel=false for pools that span nodes")
            self._channels[slot] = channel

    def pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self.actors])

    def _close_channels(self) -> None:
        for channel in self._channels or []:
            channel.close()
        self._channels = None

    def shutdown(self) -> None:
        self._close_channels()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        for group in self._groups:
            remove_placement_group(group)
        self.actors, self._groups = [], []


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
    return pickle.dumps(wire, protocol=pickle.HIGHEST_PROTOCOL)


def _results_from_wire(data: bytes, shard: RequestBatch) -> ResultBatch:
    wire = pickle.loads(data)
    n = len(shard)
    if wire["n"] != n or len(wire["texts"]) != n:
        raise RuntimeError(f"an engine replica answered {wire['n']} results for a shard of {n} requests")
    floats = [wire[name] if name in wire else np.full(n, np.nan) for name in ("p_first", "p_second", "other_mass")]
    return ResultBatch(list(shard.keys), shard.a, shard.b, shard.order, wire["texts"], *floats,
                       wire.get("errors", [None] * n))
