"""Engine for any OpenAI-compatible chat endpoint (`POST {api_base}/chat/completions`).

- sample mode: one request with `n=k` (or k requests when the endpoint ignores `n`), texts in choice order.
- logprob mode: one request with `max_tokens=1, logprobs=True, top_logprobs=20`; P(label) sums the top tokens that
  equal the label once leading whitespace is stripped ("A" and " A" both count for "A").
- Transient failures (429, 500, 502, 503, 504, connection errors, timeouts) are retried with exponential backoff,
  honouring `Retry-After` up to `max_retry_after_s` (a server that asks for longer is given up on at once, not
  waited for); the concurrency slot is released while sleeping. A request that still fails is not raised: its
  result carries `texts=[None]*k` and `error`, so the runtime records the failure and asks again later.
- `timeout_s` bounds each attempt as a whole (connect, send and every read), so a server that drips a byte at a
  time cannot hold a request open beyond it.
- Permanent failures (401, 403, 404 and other 4xx) raise `EngineError` at once.

The API key is read only from the environment variable named by `api_key_env`, kept in a private attribute, and
scrubbed from every message this module produces; it never appears in `repr`, errors, logs or results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import random
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any, TypeVar

try:  # optional dependency (the `openai` extra); the engine's constructor says so when it is missing
    import httpx
except ImportError:  # pragma: no cover - exercised only without the extra
    httpx = None  # type: ignore[assignment]

from .base import ElicitationRequest, ElicitationResult, EngineError, GenerationSettings, PerRequestEngine

__all__ = ["OpenAIEngine"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TOP_LOGPROBS = 20
_BODY_EXCERPT = 200
T = TypeVar("T")


class _TransientFailure(Exception):
    """One HTTP attempt failed in a way worth retrying; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (the HTTP-date form is ignored: exponential backoff is used instead)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class OpenAIEngine(PerRequestEngine):
    """Engine for an OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM serve, llama.cpp, ...)."""

    name = "openai"
    answer_settings = ("model", "api_base", "accepts_system_message")
    options = {"max_concurrency": 16, "timeout_s": 60.0, "max_retry_after_s": 120.0}

    def __init__(
        self,
        model: str,
        api_base: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        max_retries: int = 6,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 60.0,
        max_retry_after_s: float = 120.0,
        supports_n: bool = True,
        accepts_system_message: bool = True,
    ) -> None:
        if httpx is None:
            raise ImportError("the openai engine needs httpx", name="httpx")
        if not model:
            raise EngineError("the openai engine needs a `model` name")
        if max_concurrency < 1:
            raise EngineError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise EngineError(f"max_retries must be >= 0, got {max_retries}")
        if not timeout_s > 0:
            raise EngineError(f"timeout_s must be > 0, got {timeout_s}")
        if not max_retry_after_s >= 0:
            raise EngineError(f"max_retry_after_s must be >= 0, got {max_retry_after_s}")
        self.model = model
        self.api_base = api_base.rstrip("/")
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.initial_backoff_s = float(initial_backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.timeout_s = float(timeout_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.supports_n = bool(supports_n)
        self.accepts_system_message = bool(accepts_system_message)
        key = os.environ.get(api_key_env, "")
        if not key.strip():
            raise EngineError(f"environment variable {api_key_env} is not set; export it to use model {model}")
        self.__api_key = key.strip()
        self._closed = False
        # read by the pool (EngineActor.counters) so that retries reach the job's log and summary, not only the
        # replica's own log, which Ray does not forward
        self.counters = {"retries": 0, "gave_up": 0}

    def __repr__(self) -> str:
        return (f"OpenAIEngine(model={self.model!r}, api_base={self.api_base!r}, api_key_env={self.api_key_env!r}, "
                f"max_concurrency={self.max_concurrency}, max_retries={self.max_retries}, "
                f"supports_n={self.supports_n}, accepts_system_message={self.accepts_system_message})")

    __str__ = __repr__

    # ------------------------------------------------------------------ public protocol

    def answer_requests(self, requests: list[ElicitationRequest],
                        settings: GenerationSettings) -> list[ElicitationResult]:
        if self._closed:
            raise EngineError("this OpenAIEngine has been closed")
        requests = list(requests)
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate_all(requests, settings))
        # An event loop already runs in this thread (e.g. a notebook): use a private loop in a helper thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="uetool-openai") as pool:
            return pool.submit(asyncio.run, self._generate_all(requests, settings)).result()

    def close(self) -> None:
        # Each `generate` call owns (and closes) its HTTP client, so there is nothing left to release.
        self._closed = True

    # ------------------------------------------------------------------ internals

    @property
    def _url(self) -> str:
        return f"{self.api_base}/chat/completions"

    def _redact(self, text: str) -> str:
        key = self.__api_key
        return text.replace(key, "***") if key else text

    def _messages(self, request: ElicitationRequest) -> list[dict[str, str]]:
        messages = []
        if request.system_message and self.accepts_system_message:
            messages.append({"role": "system", "content": request.system_message})
        messages.append({"role": "user", "content": request.prompt})
        return messages

    async def _generate_all(self, requests: list[ElicitationRequest],
                            settings: GenerationSettings) -> list[ElicitationResult]:
        semaphore = asyncio.Semaphore(self.max_concurrency)
        rng = random.Random(settings.seed)
        headers = {"Authorization": f"Bearer {self.__api_key}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout_s, limits=limits) as client:
            return await _gather_or_cancel([self._one(client, semaphore, rng, request, settings)
                                            for request in requests])

    async def _one(self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, rng: random.Random,
                   request: ElicitationRequest, settings: GenerationSettings) -> ElicitationResult:
        k = settings.k
        messages = self._messages(request)
        if settings.mode == "logprob":
            body = {"model": self.model, "messages": messages, "max_tokens": 1, "logprobs": True,
                    "top_logprobs": TOP_LOGPROBS, "seed": settings.seed}
            payload, error = await self._post_with_retries(client, semaphore, rng, body)
            if payload is None:
                return ElicitationResult(key=request.key, texts=[None] * k, error=error)
            probs = self._label_probs(payload, request.labels)
            return ElicitationResult(key=request.key, probs=probs, other_mass=max(0.0, 1.0 - probs[0] - probs[1]),
                                     tokens=usage_tokens([payload]))

        base = {"model": self.model, "messages": messages, "temperature": settings.temperature,
                "max_tokens": settings.max_tokens}
        if self.supports_n:
            body = {**base, "n": k, "seed": settings.seed}
            payload, error = await self._post_with_retries(client, semaphore, rng, body)
            if payload is None:
                return ElicitationResult(key=request.key, texts=[None] * k, error=error)
            texts = self._texts(payload)
            if len(texts) < k:
                error = f"endpoint returned {len(texts)} of {k} requested completions (does it support `n`?)"
            texts = (texts + [None] * k)[:k]
            return ElicitationResult(key=request.key, texts=texts, error=error, tokens=usage_tokens([payload]))

        # No `n`: k single-completion requests, with distinct seeds so seeded backends do not repeat themselves.
        bodies = [{**base, "seed": settings.seed + i} for i in range(k)]
        outcomes = await _gather_or_cancel([self._post_with_retries(client, semaphore, rng, b) for b in bodies])
        texts: list[str | None] = []
        errors: list[str] = []
        for payload, error in outcomes:
            if payload is None:
                texts.append(None)
                errors.append(error or "request failed")
                continue
            got = self._texts(payload)
            texts.append(got[0] if got else None)
            if not got:
                errors.append("endpoint returned no completion")
        error = None
        if errors:
            error = f"{len(errors)} of {k} requests failed: {errors[0]}"
        return ElicitationResult(key=request.key, texts=texts, error=error,
                                 tokens=usage_tokens([payload for payload, _ in outcomes if payload is not None]))

    async def _post_with_retries(self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, rng: random.Random,
                                 body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """POST `body`; returns (payload, None) on success or (None, reason) once the retries are spent.

        Raises EngineError at once on a permanent failure (4xx other than 429). The backoff sleep happens outside
        the semaphore, so a waiting request does not hold a concurrency slot.
        """
        last_reason = "request failed"
        for attempt in range(self.max_retries + 1):
            try:
                async with semaphore:
                    return await self._post_once(client, body), None
            except _TransientFailure as failure:
                last_reason = failure.reason
                if attempt >= self.max_retries:
                    break
                delay = failure.retry_after
                if delay is not None and delay > self.max_retry_after_s:
                    last_reason = (f"{failure.reason}, Retry-After {delay:g} s: longer than max_retry_after_s="
                                   f"{self.max_retry_after_s:g}, not waited for")
                    break
                if delay is None:
                    delay = min(self.initial_backoff_s * 2 ** attempt, self.max_backoff_s)
                    delay *= 1.0 + 0.1 * rng.random()
                self.counters["retries"] += 1
                log.warning("openai engine: %s from %s for model %r; retry %d/%d in %.2fs", failure.reason,
                            self.api_base, self.model, attempt + 1, self.max_retries, delay)
                await asyncio.sleep(delay)
        attempts = attempt + 1
        self.counters["gave_up"] += 1
        reason = f"{last_reason} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})"
        log.warning("openai engine: %s from %s for model %r", reason, self.api_base, self.model)
        return None, reason

    async def _post_once(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        try:
            # the whole attempt under one deadline: httpx's timeout bounds each read, not the sum of them
            response = await asyncio.wait_for(client.post(self._url, json=body), self.timeout_s)
        except TimeoutError:
            raise _TransientFailure(f"no complete response within timeout_s={self.timeout_s:g} s") from None
        except httpx.TimeoutException as err:
            raise _TransientFailure(f"timeout ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise _TransientFailure(self._redact(f"connection error ({type(err).__name__}: {err})")) from None
        status = response.status_code
        if status in RETRY_STATUSES:
            reason = f"{status} {response.reason_phrase or _status_phrase(status)}".strip()
            raise _TransientFailure(reason, _parse_retry_after(response.headers.get("retry-after")))
        if 400 <= status < 600:
            raise EngineError(self._permanent_failure_message(response)) from None
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise _TransientFailure(f"{status} response is not JSON: {self._excerpt(response)}") from None
        if not isinstance(payload, dict):
            raise _TransientFailure(f"{status} response is not a JSON object")
        return payload

    def _permanent_failure_message(self, response: httpx.Response) -> str:
        status = response.status_code
        phrase = response.reason_phrase or _status_phrase(status)
        msg = f"{status} {phrase} from {self.api_base} for model {self.model!r}"
        if status == 401:
            msg += f": check the API key in ${self.api_key_env}"
        elif status == 403:
            msg += f": the API key in ${self.api_key_env} is not allowed to use this model or endpoint"
        elif status == 404:
            msg += ": check `api_base` and the model name"
        detail = self._excerpt(response)
        if detail:
            msg += f" (server said: {detail})"
        return self._redact(msg)

    def _excerpt(self, response: httpx.Response) -> str:
        try:
            data = response.json()
            if isinstance(data, dict) and isinstance(data.get("error"), dict) and data["error"].get("message"):
                text = str(data["error"]["message"])
            elif isinstance(data, dict) and isinstance(data.get("error"), str):
                text = data["error"]
            else:
                text = response.text
        except Exception:  # any undecodable body just gets a plain excerpt
            try:
                text = response.text
            except Exception:
                text = ""
        text = " ".join(text.split())
        if len(text) > _BODY_EXCERPT:
            text = text[:_BODY_EXCERPT] + "..."
        return self._redact(text)

    @staticmethod
    def _texts(payload: dict[str, Any]) -> list[str | None]:
        choices = payload.get("choices")
        if not isinstance(choices, list):
            return []
        ordered = sorted((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index", 0) or 0)
        texts: list[str | None] = []
        for choice in ordered:
            message = choice.get("message") or {}
            content = message.get("content") if isinstance(message, dict) else None
            if content is None and isinstance(message, dict):
                content = message.get("refusal")
            texts.append(content if isinstance(content, str) else "")
        return texts

    def _label_probs(self, payload: dict[str, Any], labels: tuple[str, str]) -> tuple[float, float]:
        top = _first_token_top_logprobs(payload)
        if top is None:
            raise EngineError(f"logprob mode needs an endpoint that returns logprobs, but {self.api_base} returned "
                              f"none for model {self.model!r} (request had logprobs=true, "
                              f"top_logprobs={TOP_LOGPROBS}); use mode 'sample' or another endpoint")
        totals = [0.0, 0.0]
        seen: set[str] = set()
        for token, logprob in top:
            if token in seen:
                continue
            seen.add(token)
            stripped = token.lstrip()
            for i, label in enumerate(labels):
                if stripped == label:
                    totals[i] += math.exp(logprob)
        return min(1.0, totals[0]), min(1.0, totals[1])


def _first_token_top_logprobs(payload: dict[str, Any]) -> list[tuple[str, float]] | None:
    """(token, logprob) pairs of the first generated token, from the chat or legacy completions format."""
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    logprobs = choices[0].get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    pairs: list[tuple[str, float]] = []
    content = logprobs.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        entries = content[0].get("top_logprobs")
        if not isinstance(entries, list) or not entries:
            # no alternatives: fall back to the sampled token itself
            entries = [content[0]]
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("token"), str) and entry.get("logprob") is not None:
                pairs.append((entry["token"], float(entry["logprob"])))
        return pairs or None
    legacy = logprobs.get("top_logprobs")  # completions format: [{token: logprob, ...}, ...]
    if isinstance(legacy, list) and legacy and isinstance(legacy[0], dict):
        pairs = [(str(t), float(lp)) for t, lp in legacy[0].items() if lp is not None]
        return pairs or None
    return None


def usage_tokens(payloads: list[dict[str, Any]]) -> tuple[int, int, int] | None:
    """(prompt tokens computed, prompt tokens the provider served from its cache, completion tokens) summed over the
    responses of one request, from the provider's `usage` fields (`prompt_tokens_details.cached_tokens` where it
    reports them); None when a response has no usage."""
    computed = cached = generated = 0
    for payload in payloads:
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
            return None
        hit = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        hit = hit if isinstance(hit, int) else 0
        computed += usage["prompt_tokens"] - hit
        cached += hit
        generated += usage.get("completion_tokens") or 0
    return (computed, cached, generated) if payloads else None


async def _gather_or_cancel(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Like `asyncio.gather`, but the first exception cancels (and awaits) the other tasks before propagating."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
