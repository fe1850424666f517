"""Engine replicas reached over a local channel (Unix socket) instead of Ray calls: same answers, same recovery."""

from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import AuthenticationError, Client

import numpy as np
import pytest

from uetool.engines.base import GenerationSettings, RequestBatch
from uetool.runtime.channel import ChannelServer, ReplicaChannel


def _batch(n: int, n_outcomes: int = 12) -> RequestBatch:
    rng = np.random.default_rng(4)
    a = rng.integers(0, n_outcomes, n)
    b = (a + 1 + rng.integers(0, n_outcomes - 1, n)) % n_outcomes
    return RequestBatch([f"k{i}" for i in range(n)], [""] * n, a, b, (np.arange(n) % 2).astype(np.int8),
                        ("A", "B"), None)


def _pool(local_channel: bool, replicas: int = 2):
    from uetool.runtime.pool import EnginePool

    return EnginePool("simulated", {"n_outcomes": 12, "seed": 1}, replicas=replicas, shard_size=7, progress=False,
                      local_channel=local_channel)


@pytest.mark.usefixtures("ray_cluster")
def test_channel_pool_answers_as_the_ray_call_pool_and_survives_a_killed_replica():
    settings = GenerationSettings(k=4)
    reference = _pool(local_channel=False)
    expected = reference.run(_batch(90), settings)
    reference.shutdown()

    pool = _pool(local_channel=True)
    assert pool.run(_batch(90), settings).texts.tolist() == expected.texts.tolist()
    assert pool._channels is not None and pool.replacements == 0  # it did go over the channels

    pid = pool.pids()[0]
    seen = []

    def kill_after_first(shard):
        seen.append(list(shard.keys))
        if len(seen) == 1:
            os.kill(pid, signal.SIGKILL)  # a replica dies with shards in flight on its channel

    got = pool.run(_batch(90), settings, on_shard=kill_after_first)
    assert pool.replacements >= 1 and pid not in pool.pids()
    assert got.texts.tolist() == expected.texts.tolist() and got.keys == expected.keys
    delivered = [key for shard in seen for key in shard]
    assert sorted(delivered) == sorted(expected.keys)  # every shard delivered exactly once
    pool.shutdown()


@pytest.mark.usefixtures("ray_cluster")
def test_an_engine_error_over_the_channel_is_raised_as_itself():
    settings = GenerationSettings(k=2)
    reference = _pool(local_channel=False, replicas=1)
    expected = reference.run(_batch(21), settings)
    reference.shutdown()
    pool = _pool(local_channel=True, replicas=1)
    bad = _batch(21)
    bad.a[3] = 500  # no such outcome: the simulated agent's lookup fails inside the replica
    with pytest.raises(IndexError):
        pool.run(bad, settings)  # the failing shard's neighbours were in flight on the same channel
    bad.a[3], bad.b[10] = expected.a[3], 500  # now a shard in flight behind a good one fails
    with pytest.raises(IndexError):
        pool.run(bad, settings)
    seen = []
    got = pool.run(_batch(21), settings, on_shard=seen.append)  # the replica still serves, nothing stale arrives
    assert got.texts.tolist() == expected.texts.tolist() and sum(len(s) for s in seen) == 21
    pool.shutdown()


def test_channel_serves_only_a_client_holding_the_key_and_leaves_no_socket_file():
    server = ChannelServer(lambda payload: payload[::-1], authkey=b"k" * 32)
    with pytest.raises(AuthenticationError):
        Client(server.address, family="AF_UNIX", authkey=b"wrong" * 6)
    channel = ReplicaChannel(server.address, authkey=b"k" * 32)
    channel.send("first", b"abc")
    channel.send("second", b"xyz")
    assert channel.receive() == ("first", b"cba") and channel.receive() == ("second", b"zyx")
    # the server serves only after removing the socket file: no one else can dial in once the driver is connected
    assert not os.path.exists(server.address) and not os.path.exists(os.path.dirname(server.address))
    channel.close()


def test_a_handler_error_reaches_the_client_and_the_channel_goes_on():
    calls = threading.Event()

    def handler(payload: bytes) -> bytes:
        calls.set()
        if payload == b"boom":
            raise ValueError("engine failed on this shard")
        return payload

    server = ChannelServer(handler, authkey=b"s" * 32)
    channel = ReplicaChannel(server.address, authkey=b"s" * 32)
    channel.send(0, b"boom")
    with pytest.raises(ValueError, match="engine failed on this shard"):
        channel.receive()
    channel.send(1, b"ok")
    assert channel.receive() == (1, b"ok") and calls.is_set()
    channel.close()


@pytest.mark.usefixtures("ray_cluster")
def test_a_replica_killed_before_its_channel_opens_is_replaced():
    pool = _pool(local_channel=True, replicas=1)
    pid = pool.pids()[0]
    os.kill(pid, signal.SIGKILL)  # dies before the first run() opens its channel
    got = pool.run(_batch(20), GenerationSettings(k=2))
    assert len(got) == 20 and pool.replacements == 1 and pool._channels is not None
    pool.shutdown()


@pytest.mark.usefixtures("ray_cluster")
def test_a_replica_killed_between_calls_is_replaced_at_the_next_send():
    pool = _pool(local_channel=True, replicas=1)
    settings = GenerationSettings(k=2)
    first = pool.run(_batch(20), settings)
    pid = pool.pids()[0]
    os.kill(pid, signal.SIGKILL)
    for _ in range(3000):  # gone for good (up to 30 s): the next send meets a closed socket
        if not _alive(pid):
            break
        time.sleep(0.01)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(got=pool.run(_batch(20), settings)), daemon=True)
    worker.start()
    worker.join(timeout=180)  # liveness, not speed: the call must not wait forever on a replaced replica
    assert not worker.is_alive() and result["got"].texts.tolist() == first.texts.tolist()
    assert pool.replacements == 1
    pool.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_large_shards_in_flight_both_ways_do_not_deadlock():
    """Two 4 MB shards sent before any answer is read, each answered with 4 MB: more than both socket buffers."""
    server = ChannelServer(lambda payload: payload + payload[:16], authkey=b"b" * 32)
    channel = ReplicaChannel(server.address, authkey=b"b" * 32)
    payloads = [bytes([i]) * (4 << 20) for i in range(2)]
    answers: list = []

    def exchange() -> None:
        for i, payload in enumerate(payloads):
            channel.send(i, payload)
        answers.extend(channel.receive() for _ in payloads)

    worker = threading.Thread(target=exchange, daemon=True)
    worker.start()
    worker.join(timeout=120)  # liveness, not speed
    assert not worker.is_alive()
    assert [(tag, len(a)) for tag, a in answers] == [(0, (4 << 20) + 16), (1, (4 << 20) + 16)]
    channel.close()
