"""OpenAIEngine against a real local HTTP server that imitates `/v1/chat/completions` (no mocking of httpx)."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("httpx")

from uetool.engines import EngineError, create_engine  # noqa: E402
from uetool.engines.base import ElicitationRequest, GenerationSettings  # noqa: E402
from uetool.engines.openai import OpenAIEngine  # noqa: E402

SECRET = "sk-test-SECRET-123"

# A reply is (status, extra headers, JSON body); a behaviour maps (request number, body) to a reply.
Reply = tuple[int, dict[str, str], Any]
Behaviour = Callable[[int, dict[str, Any]], Reply]


def default_reply(_: int, body: dict[str, Any]) -> Reply:
    """A well-behaved endpoint: n completions, or top-20 logprobs when asked for them."""
    prompt = body["messages"][-1]["content"]
    if body.get("logprobs"):
        top = [{"token": " A", "logprob": math.log(0.6)}, {"token": "B", "logprob": math.log(0.3)},
               {"token": "A", "logprob": math.log(0.05)}, {"token": " C", "logprob": math.log(0.01)}]
        choice = {"index": 0, "message": {"role": "assistant", "content": " A"},
                  "logprobs": {"content": [{"token": " A", "logprob": math.log(0.6), "top_logprobs": top}]}}
        return 200, {}, {"choices": [choice]}
    n = body.get("n", 1)
    choices = [{"index": i, "message": {"role": "assistant", "content": f"{prompt}|{i}"}} for i in range(n)]
    return 200, {}, {"id": "x", "object": "chat.completion", "choices": choices}


class FakeServer:
    def __init__(self) -> None:
        self.behaviour: Behaviour = default_reply
        self.delay_s = 0.0
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    number = len(fake.bodies)
                    fake.bodies.append(body)
                    fake.auth_headers.append(self.headers.get("Authorization"))
                    fake.paths.append(self.path)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.delay_s:
                        time.sleep(fake.delay_s)
                    status, headers, payload = fake.behaviour(number, body)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def make_engine(server: FakeServer, **kwargs: Any) -> OpenAIEngine:
    options: dict[str, Any] = {"model": "test-model", "api_base": server.url, "initial_backoff_s": 0.01,
                               "max_backoff_s": 0.05, "timeout_s": 5.0, "max_retries": 3}
    options.update(kwargs)
    return OpenAIEngine(**options)


def req(i: int = 0, system: str | None = None) -> ElicitationRequest:
    return ElicitationRequest(key=f"k{i}", prompt=f"prompt {i}", system_message=system, a=i, b=i + 1)


SAMPLE = GenerationSettings(mode="sample", k=4, temperature=0.7, max_tokens=5, seed=3)
LOGPROB = GenerationSettings(mode="logprob", k=1)


def test_sample_mode_uses_n_and_returns_k_texts_in_request_order(server: FakeServer) -> None:
    engine = make_engine(server)
    results = engine.answer_requests([req(0, system="be brief"), req(1), req(2)], SAMPLE)
    assert [r.key for r in results] == ["k0", "k1", "k2"]
    for i, r in enumerate(results):
        assert r.texts == [f"prompt {i}|{j}" for j in range(4)]
        assert r.error is None and r.probs is None
    assert server.count == 3
    body = next(b for b in server.bodies if b["messages"][-1]["content"] == "prompt 0")
    assert body["n"] == 4 and body["temperature"] == 0.7 and body["max_tokens"] == 5 and body["seed"] == 3
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "prompt 0"}]
    assert set(server.paths) == {"/v1/chat/completions"}
    assert set(server.auth_headers) == {f"Bearer {SECRET}"}
    engine.close()


def test_create_engine_builds_openai_and_refuses_unknown_settings(server: FakeServer) -> None:
    with pytest.raises(TypeError, match="unrelated_option"):
        create_engine("openai", model="test-model", api_base=server.url + "/", unrelated_option=1)
    engine = create_engine("openai", model="test-model", api_base=server.url + "/")
    assert isinstance(engine, OpenAIEngine) and engine.name == "openai"
    assert engine.answer_requests([req()], GenerationSettings(k=2))[0].texts == ["prompt 0|0", "prompt 0|1"]
    assert server.paths == ["/v1/chat/completions"]


def test_the_batch_protocol_answers_columns_in_order(server: FakeServer) -> None:
    from uetool.engines.base import RequestBatch

    engine = create_engine("openai", model="test-model", api_base=server.url + "/")
    batch = RequestBatch.from_requests([req(0), req(1), req(2)])
    got = engine.generate(batch, GenerationSettings(k=2))
    assert got.keys == batch.keys and got.texts.tolist() == [[f"prompt {i}|0", f"prompt {i}|1"] for i in range(3)]


def test_without_n_sends_k_separate_requests(server: FakeServer) -> None:
    engine = make_engine(server, supports_n=False)
    results = engine.answer_requests([req()], SAMPLE)
    assert results[0].texts == ["prompt 0|0"] * 4
    assert server.count == 4
    assert all("n" not in b for b in server.bodies)
    assert sorted(b["seed"] for b in server.bodies) == [3, 4, 5, 6]


def test_system_message_omitted_when_not_accepted(server: FakeServer) -> None:
    engine = make_engine(server, accepts_system_message=False)
    engine.answer_requests([req(0, system="be brief")], SAMPLE)
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "prompt 0"}]


def test_logprob_mode_parses_top_logprobs(server: FakeServer) -> None:
    engine = make_engine(server)
    (result,) = engine.answer_requests([req()], LOGPROB)
    body = server.bodies[0]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    assert result.probs is not None and result.error is None
    assert result.probs[0] == pytest.approx(0.65)  # " A" and "A" both count for label "A"
    assert result.probs[1] == pytest.approx(0.3)
    assert result.other_mass == pytest.approx(0.05)


def test_logprob_mode_without_logprobs_raises(server: FakeServer) -> None:
    server.behaviour = lambda n, body: default_reply(n, {**body, "logprobs": False})
    engine = make_engine(server)
    with pytest.raises(EngineError, match="logprob"):
        engine.answer_requests([req()], LOGPROB)


def test_429_with_retry_after_is_retried(server: FakeServer) -> None:
    def behaviour(n: int, body: dict[str, Any]) -> Reply:
        if n == 0:
            return 429, {"Retry-After": "0"}, {"error": {"message": "rate limited"}}
        return default_reply(n, body)

    server.behaviour = behaviour
    engine = make_engine(server, initial_backoff_s=30.0, max_backoff_s=30.0)  # only Retry-After keeps this fast
    start = time.monotonic()
    (result,) = engine.answer_requests([req()], SAMPLE)
    assert time.monotonic() - start < 5
    assert result.error is None and result.texts == [f"prompt 0|{j}" for j in range(4)]
    assert server.count == 2


def test_500_twice_then_success_is_retried(server: FakeServer) -> None:
    def behaviour(n: int, body: dict[str, Any]) -> Reply:
        return (500, {}, {"error": "boom"}) if n < 2 else default_reply(n, body)

    server.behaviour = behaviour
    (result,) = make_engine(server).answer_requests([req()], SAMPLE)
    assert result.error is None and len(result.texts) == 4 and None not in result.texts
    assert server.count == 3


def test_retries_exhausted_marks_result_failed(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    server.behaviour = lambda n, body: (503, {}, {"error": {"message": f"overloaded, key {SECRET}"}})
    with caplog.at_level(logging.DEBUG):
        results = make_engine(server, max_retries=2).answer_requests([req(0), req(1)], SAMPLE)
    assert server.count == 2 * 3  # 1 attempt + 2 retries each
    for r in results:
        assert r.texts == [None] * 4
        assert r.error is not None and "503" in r.error
        assert SECRET not in r.error
    assert SECRET not in caplog.text


def test_retries_exhausted_in_logprob_mode(server: FakeServer) -> None:
    server.behaviour = lambda n, body: (500, {}, {})
    (result,) = make_engine(server, max_retries=1).answer_requests([req()], LOGPROB)
    assert result.probs is None and result.error is not None and "500" in result.error
    assert server.count == 2


def test_connection_errors_are_retried_then_counted() -> None:
    fake = FakeServer()
    url = fake.url
    fake.stop()  # nothing listens on this port any more
    engine = OpenAIEngine(model="m", api_base=url, max_retries=2, initial_backoff_s=0.01, max_backoff_s=0.02,
                          timeout_s=2.0)
    (result,) = engine.answer_requests([req()], SAMPLE)
    assert result.texts == [None] * 4
    assert result.error is not None and "connection" in result.error.lower()


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_permanent_4xx_raises_immediately(server: FakeServer, status: int) -> None:
    server.behaviour = lambda n, body: (status, {}, {"error": {"message": f"Incorrect API key provided: {SECRET}"}})
    engine = make_engine(server)
    with pytest.raises(EngineError) as info:
        engine.answer_requests([req()], SAMPLE)
    message = str(info.value)
    assert str(status) in message and "test-model" in message and server.url in message
    assert SECRET not in message
    if status == 401:
        assert "OPENAI_API_KEY" in message
    assert server.count == 1


def test_missing_or_empty_env_var_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_PROVIDER_KEY", raising=False)
    with pytest.raises(EngineError, match="MY_PROVIDER_KEY"):
        OpenAIEngine(model="gpt-4o", api_key_env="MY_PROVIDER_KEY")
    monkeypatch.setenv("MY_PROVIDER_KEY", "")
    with pytest.raises(EngineError, match="MY_PROVIDER_KEY"):
        OpenAIEngine(model="gpt-4o", api_key_env="MY_PROVIDER_KEY")


def test_key_never_leaks(server: FakeServer) -> None:
    engine = make_engine(server)
    assert SECRET not in repr(engine) and SECRET not in str(engine)
    assert "test-model" in repr(engine)
    for settings in (SAMPLE, LOGPROB):
        for result in engine.answer_requests([req(0, system="s")], settings):
            assert SECRET not in repr(result)
    server.behaviour = lambda n, body: (401, {}, {"error": {"message": f"bad key {SECRET}"}})
    with pytest.raises(EngineError) as info:
        engine.answer_requests([req()], SAMPLE)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_concurrency_is_bounded(server: FakeServer) -> None:
    server.delay_s = 0.05
    engine = make_engine(server, max_concurrency=3)
    results = engine.answer_requests([req(i) for i in range(15)], SAMPLE)
    assert [r.key for r in results] == [f"k{i}" for i in range(15)]
    assert all(r.error is None for r in results)
    assert server.count == 15
    assert 2 <= server.max_in_flight <= 3


def test_backoff_sleep_releases_the_concurrency_slot(server: FakeServer) -> None:
    def behaviour(n: int, body: dict[str, Any]) -> Reply:
        if n == 0:  # the first request is told to wait; the other one should use the free slot meanwhile
            return 503, {"Retry-After": "0.2"}, {}
        return default_reply(n, body)

    server.behaviour = behaviour
    engine = make_engine(server, max_concurrency=1)
    results = engine.answer_requests([req(0), req(1)], SAMPLE)
    assert all(r.error is None for r in results)
    prompts = [b["messages"][-1]["content"] for b in server.bodies]
    assert len(prompts) == 3
    first = prompts[0]
    assert prompts[2] == first and prompts[1] != first


def test_generate_works_inside_a_running_event_loop(server: FakeServer) -> None:
    import asyncio

    engine = make_engine(server)

    async def main() -> list:
        return engine.answer_requests([req()], SAMPLE)

    (result,) = asyncio.run(main())
    assert result.texts == [f"prompt 0|{j}" for j in range(4)]


def test_empty_batch_and_close(server: FakeServer) -> None:
    engine = make_engine(server)
    assert engine.answer_requests([], SAMPLE) == []
    engine.close()
    with pytest.raises(EngineError):
        engine.answer_requests([req()], SAMPLE)
    assert server.count == 0


class _DripServer:
    """A server that accepts the request, then sends its response one byte at a time (each read stays short)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                data = json.dumps({"choices": [{"index": 0, "message": {"content": "A"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for byte in data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(interval_s)
                except OSError:  # the client gave up: what the test wants
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_dripping_server_cannot_hold_a_request_past_the_deadline() -> None:
    drip = _DripServer(interval_s=0.2)  # ~60 bytes: 12 s to finish, every read well under the timeout
    try:
        engine = OpenAIEngine(model="m", api_base=drip.url, max_retries=0, timeout_s=1.0)
        (result,) = engine.answer_requests([req()], GenerationSettings(mode="sample", k=1, max_tokens=5))
    finally:
        drip.stop()
    # without the whole-request deadline the drip completes (after 12 s) and the reply reads "A"
    assert result.texts == [None] and "no complete response within timeout_s=1 s" in result.error


def test_a_long_retry_after_is_not_waited_for(server: FakeServer) -> None:
    server.behaviour = lambda n, body: (429, {"Retry-After": "86400"}, {"error": {"message": "come back tomorrow"}})
    engine = make_engine(server, max_retry_after_s=120.0, max_retries=6)
    (result,) = engine.answer_requests([req()], SAMPLE)
    assert server.count == 1  # given up at once: the request is recorded as failed and asked again by a later run
    assert "Retry-After 86400 s" in result.error and "max_retry_after_s=120" in result.error
    assert "gave up after 1 attempt" in result.error


def test_a_short_retry_after_is_honoured_up_to_the_cap(server: FakeServer) -> None:
    def behaviour(n: int, body: dict[str, Any]) -> Reply:
        return (429, {"Retry-After": "0.2"}, {}) if n == 0 else default_reply(n, body)

    server.behaviour = behaviour
    (result,) = make_engine(server, max_retry_after_s=0.5).answer_requests([req()], SAMPLE)
    assert result.error is None and server.count == 2


def test_the_providers_usage_fields_become_the_token_counts(server: FakeServer) -> None:
    def with_usage(number: int, body: dict[str, Any]) -> Reply:
        status, headers, payload = default_reply(number, body)
        payload["usage"] = {"prompt_tokens": 30, "completion_tokens": 2 * body.get("n", 1),
                            "prompt_tokens_details": {"cached_tokens": 12}}
        return status, headers, payload

    server.behaviour = with_usage
    assert make_engine(server).answer_requests([req()], SAMPLE)[0].tokens == (18, 12, 8)  # n=4 in one response
    separate = make_engine(server, supports_n=False).answer_requests([req()], SAMPLE)[0]
    assert separate.tokens == (4 * 18, 4 * 12, 4 * 2)  # k=4 responses, each with its own usage
    server.behaviour = default_reply  # no usage reported: not counted, never guessed
    assert make_engine(server).answer_requests([req()], SAMPLE)[0].tokens is None
