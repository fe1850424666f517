"""vLLM engine: one `vllm.LLM` per replica; sample mode with n=K, logprob mode exact over the label tokens.

- Prompts are the token ids of `chat_format.prompt_token_ids`, as in the hf engine (outcome texts stay text):
  vLLM's own text path would add a BOS token in front of a chat template that already carries its special tokens,
  and the two engines must see identical inputs to give identical probabilities.
- Sample mode: one prompt per request with `SamplingParams(n=K, seed=request_seed(...))`, so a request re-sent after
  a failure draws the same K samples however the batch around it was cut (vLLM seeds the K children seed+i).
- Logprob mode: one prefill and one decoded token with `logprob_token_ids` = every token that spells a label.
  vLLM returns their log-probabilities under the full-vocabulary softmax of the raw logits (its default
  `logprobs_mode="raw_logprobs"`), so P(label) is exact, not a top-k approximation; other_mass = 1 - P(A) - P(B).
- Every batch is ONE `llm.generate` call (vLLM schedules and batches internally). A request vLLM rejects (too long
  for `max_model_len`, a label that is not one token) becomes an `ElicitationResult(error=...)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .base import ElicitationRequest, ElicitationResult, EngineError, GenerationSettings, PerRequestEngine
from .chat_format import label_token_ids, prompt_token_ids, request_seed, require_chat_template

__all__ = ["VLLMEngine"]


class _NeverRaised(Exception):
    """Stands in for an exception type this vLLM version does not define."""


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class VLLMEngine(PerRequestEngine):
    name = "vllm"
    # GPU memory share, prefix caching and tensor parallelism change speed, not answers
    answer_settings = ("path", "revision", "kind", "accepts_system_message", "dtype", "max_model_len")
    options = {"gpu_memory_utilization": 0.9, "enable_prefix_caching": True}

    def __init__(self, path: str, revision: str | None = None, kind: str = "chat", accepts_system_message: bool = True,
                 dtype: str | None = None, max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 enable_prefix_caching: bool = True, tensor_parallel_size: int = 1, seed: int = 0,
                 **kwargs) -> None:  # kwargs: `engine.kwargs`, passed to vllm.LLM
        try:
            import vllm
        except ImportError as err:
            # create_engine turns this into "install the extra"; keep the module name for its message
            raise ImportError(f"the vllm engine needs the `vllm` package ({err})", name=err.name or "vllm") from err
        from .weights import resolve_model_path

        if _on_cpu():
            # vLLM 0.32 rewinds a seeded request's torch.Generator after a partial (chunked) prefill; a CPU generator
            # cannot rewind ("CPU Generator does not use offset") and the engine dies as soon as a batch of sampled
            # prompts exceeds max_num_batched_tokens. Whole-prompt prefills never rewind (vLLM then raises
            # max_num_batched_tokens to max_model_len itself).
            kwargs.setdefault("enable_chunked_prefill", False)
        tp = int(tensor_parallel_size or 1)
        if tp > 1:
            # the pool reserved tp GPU bundles with placement_group_capture_child_tasks: vLLM's Ray workers land there
            kwargs.setdefault("distributed_executor_backend", "ray")
        local = resolve_model_path(path)
        try:
            self.llm = vllm.LLM(model=local, revision=revision, dtype=dtype or "auto", max_model_len=max_model_len,
                                gpu_memory_utilization=gpu_memory_utilization,
                                enable_prefix_caching=enable_prefix_caching, tensor_parallel_size=tp, seed=seed,
                                **kwargs)
        except Exception as err:  # noqa: BLE001 - vLLM raises many types at load; all mean "this model won't start"
            raise EngineError(f"vllm cannot load model '{path}' (revision {revision}, dtype {dtype}, "
                              f"max_model_len {max_model_len}, tensor_parallel_size {tp}): "
                              f"{type(err).__name__}: {err}") from err
        self._vllm = vllm
        self.tokenizer = self.llm.get_tokenizer()
        require_chat_template(self.tokenizer, kind, path)  # fail at load, not at the first prompt
        self.kind = kind
        self.accepts_system_message = accepts_system_message
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def _token_ids(self, request: ElicitationRequest, budget: int) -> list[int]:
        # the same ids as the hf engine: outcome texts stay text (chat_format.prompt_token_ids)
        return prompt_token_ids(self.tokenizer, request, self.kind, self.accepts_system_message,
                                max_model_len=self.max_model_len, reply_tokens=budget)

    def answer_requests(self, requests: list[ElicitationRequest],
                        settings: GenerationSettings) -> list[ElicitationResult]:
        results: list[ElicitationResult | None] = [None] * len(requests)
        prompts, params, index, label_ids = [], [], [], []
        budget = 1 if settings.mode == "logprob" else settings.max_tokens
        for i, request in enumerate(requests):
            ids = self._token_ids(request, budget)  # PromptTooLong: the outcome, not the engine, must change
            try:
                if settings.mode == "logprob":
                    labels = label_token_ids(self.tokenizer, request.labels)
                    param = self._logprob_params(labels[0] + labels[1])
                else:
                    labels, param = None, self._sample_params(request, settings)
            except Exception as err:  # noqa: BLE001 - one bad request must not sink the batch
                results[i] = self._failed(request, settings, err)
                continue
            prompts.append({"prompt_token_ids": ids})
            params.append(param)
            label_ids.append(labels)
            index.append(i)
        for i, labels, output in zip(index, label_ids, self._run(prompts, params), strict=True):
            request = requests[i]
            if isinstance(output, Exception):
                results[i] = self._failed(request, settings, output)
            elif labels is not None:
                results[i] = self._logprob_result(request, output, *labels)
            else:
                results[i] = self._sample_result(request, output, settings)
        return results  # type: ignore[return-value]

    def _run(self, prompts: list[dict], params: list) -> Sequence:
        """One generate call for the batch; if vLLM rejects it, isolate the offending requests one by one."""
        if not prompts:
            return []
        dead = self._engine_dead_error()
        try:
            return self.llm.generate(prompts, params, use_tqdm=False)
        except dead:
            raise  # a dead engine fails every request: let the caller (the pool) replace this replica
        except Exception:  # noqa: BLE001 - the batch is retried request by request to name the bad one
            outputs: list = []
            for prompt, param in zip(prompts, params, strict=True):
                try:
                    outputs.append(self.llm.generate([prompt], [param], use_tqdm=False)[0])
                except dead:
                    raise
                except Exception as err:  # noqa: BLE001
                    outputs.append(err)
            return outputs

    @staticmethod
    def _engine_dead_error() -> type[BaseException]:
        try:
            from vllm.v1.engine.exceptions import EngineDeadError
        except ImportError:  # moved in another vLLM version: nothing to single out
            return _NeverRaised
        return EngineDeadError

    def _sample_params(self, request: ElicitationRequest, settings: GenerationSettings):
        greedy = settings.temperature == 0
        # 63 bits of the shared per-request seed: vLLM seeds child i of n with seed + i, which must stay in int64
        return self._vllm.SamplingParams(n=1 if greedy else settings.k, temperature=settings.temperature,
                                         max_tokens=settings.max_tokens,
                                         seed=None if greedy else request_seed(request, settings.seed) >> 1)

    def _logprob_params(self, token_ids: list[int]):
        # greedy so the one decoded token is deterministic; the logprobs are read from the raw logits either way
        return self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, logprob_token_ids=token_ids,
                                         detokenize=False)

    @staticmethod
    def _sample_result(request: ElicitationRequest, output, settings: GenerationSettings) -> ElicitationResult:
        texts = [c.text for c in sorted(output.outputs, key=lambda c: c.index)]
        if settings.temperature == 0:
            texts = texts * settings.k  # greedy decoding is deterministic: one decode, K copies (as hf)
        return ElicitationResult(request.key, texts=list(texts), tokens=_tokens(output))

    @staticmethod
    def _logprob_result(request: ElicitationRequest, output, ids_a: list[int], ids_b: list[int]) -> ElicitationResult:
        first = output.outputs[0].logprobs[0]  # {token_id: Logprob} for the first (only) generated position
        missing = [t for t in ids_a + ids_b if t not in first]
        if missing:
            return ElicitationResult(request.key, error=f"vllm returned no logprob for label token ids {missing}")
        p_a = sum(math.exp(first[t].logprob) for t in ids_a)
        p_b = sum(math.exp(first[t].logprob) for t in ids_b)
        return ElicitationResult(request.key, probs=(p_a, p_b), other_mass=max(0.0, 1.0 - p_a - p_b),
                                 tokens=_tokens(output))

    @staticmethod
    def _failed(request: ElicitationRequest, settings: GenerationSettings, err: Exception) -> ElicitationResult:
        message = f"{type(err).__name__}: {err}"
        if settings.mode != "logprob":  # sample and generate: k missing replies
            return ElicitationResult(request.key, texts=[None] * settings.k, error=message)
        return ElicitationResult(request.key, error=message)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        # stops the engine-core process now rather than whenever the garbage collector gets to it
        shutdown = getattr(llm.llm_engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
        del self.llm


def _tokens(output) -> tuple[int, int, int] | None:
    """(prompt tokens computed, prompt tokens served by the prefix cache, tokens generated over every sample) as
    vLLM reports them on a RequestOutput; None where it reports no prompt."""
    prompt = getattr(output, "prompt_token_ids", None)
    if prompt is None:
        return None
    cached = int(getattr(output, "num_cached_tokens", None) or 0)
    generated = sum(len(getattr(c, "token_ids", None) or ()) for c in output.outputs)
    return len(prompt) - cached, cached, generated
