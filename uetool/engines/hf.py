"""transformers engine: the CPU default, batched with left padding; sample and logprob modes.

Prompt KV caches are reused (`prefix_cache`): logprob mode computes the prompt prefix every request shares (chat
template, system turn and the template's opening text: 43 of a paper prompt's ~92 tokens on SmolLM2) once, runs
each batch only on what follows it and reads the logits of the last position alone; sample mode runs each prompt
once for its K samples instead of K times.
"""

from __future__ import annotations

import copy
import inspect

from .base import ElicitationRequest, ElicitationResult, EngineError, GenerationSettings, PerRequestEngine
from .chat_format import label_token_ids, prompt_token_ids, request_seed, require_chat_template

__all__ = ["HFEngine"]

# a shorter shared prefix saves less than its cache costs to copy for each batch
_MIN_PREFIX_TOKENS = 8


class HFEngine(PerRequestEngine):
    name = "hf"
    # what changes its answers: the weights, how prompts are formatted, the dtype it computes in (threads, batch
    # sizes and the prefix cache do not: the prefix cache matches recomputation to 5e-6)
    answer_settings = ("path", "revision", "kind", "accepts_system_message", "dtype")
    options = {"prefix_cache": True}

    def __init__(self, path: str, revision: str | None = None, kind: str = "chat", accepts_system_message: bool = True,
                 dtype: str = "float32", batch_size: int = 16, device: str | None = None,
                 num_threads: int | None = None, prefix_cache: bool = True) -> None:
        import torch

        if num_threads:
            # Ray pins OMP threads to 1 in actors; use the CPUs this replica was actually given
            torch.set_num_threads(int(num_threads))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .weights import resolve_model_path

        local = resolve_model_path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "bfloat16" and not str(device).startswith("cuda"):
            dtype = "float32"  # bf16 matmuls on a CPU are slow; the replica decides, where the hardware is known
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(local, revision=revision)
            torch_dtype = getattr(torch, dtype) if dtype else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(local, revision=revision, dtype=torch_dtype)
        except OSError as err:
            raise EngineError(f"cannot load model '{path}' (revision {revision}): {err}") from err
        self.device = device
        self.model.to(self.device).eval()
        require_chat_template(self.tokenizer, kind, path)  # fail at load, not at the first prompt
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.kind = kind
        self.accepts_system_message = accepts_system_message
        # the context the model was trained for (None: not declared); a longer prompt is refused naming its outcomes
        self.max_model_len = getattr(self.model.config, "max_position_embeddings", None)
        self.batch_size = int(batch_size)
        self.prefix_cache = bool(prefix_cache)
        self._prefix: tuple[tuple[int, ...], object] | None = None  # (token ids, their KV cache, batch of one)
        # only the last position's logits are read: computing the others costs ~20% of a forward pass on SmolLM2
        forward = inspect.signature(self.model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        # transformers 5.2x renamed `past_key_values` (in and out) to `cache`
        self._cache_name = "cache" if "cache" in forward else "past_key_values"
        self._torch = torch

    def _ids(self, requests: list[ElicitationRequest], reply_tokens: int) -> list[list[int]]:
        # outcome texts stay text: a special token's text in a description is not a turn marker
        return [prompt_token_ids(self.tokenizer, r, self.kind, self.accepts_system_message,
                                 max_model_len=self.max_model_len, reply_tokens=reply_tokens) for r in requests]

    def _encode(self, ids: list[list[int]]):
        return self.tokenizer.pad({"input_ids": ids}, return_tensors="pt", padding=True).to(self.device)

    def answer_requests(self, requests: list[ElicitationRequest],
                        settings: GenerationSettings) -> list[ElicitationResult]:
        out: list[ElicitationResult] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            if settings.mode == "logprob":
                out.extend(self._logprob(batch))
            else:
                out.extend(self._sample(batch, settings))
        return out

    def _sample(self, batch: list[ElicitationRequest], settings: GenerationSettings) -> list[ElicitationResult]:
        """K samples per request, the K drawn as one batch of K sequences with a per-request seed."""
        torch = self._torch
        do_sample = settings.temperature > 0
        results = []
        for request in batch:
            enc = self._encode(self._ids([request], settings.max_tokens))
            k = settings.k if do_sample else 1
            with torch.inference_mode():
                inputs = self._generate_inputs(enc, k)
                torch.manual_seed(request_seed(request, settings.seed))
                generated = self.model.generate(
                    **inputs, max_new_tokens=settings.max_tokens, do_sample=do_sample,
                    temperature=settings.temperature if do_sample else None, top_p=None, top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id)
            texts = self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            results.append(ElicitationResult(request.key, texts=texts if do_sample else texts * settings.k))
        return results

    def _generate_inputs(self, enc, k: int) -> dict:
        """generate() inputs for k samples of one prompt. With `prefix_cache` the prompt's KV cache is computed
        once, not once per sample (num_return_sequences copies the prompt k times before the prefill): every
        prompt token but the last is run here and the cache repeated k ways; generate() then runs only the last
        token and the new ones. The same seed draws the same samples either way (the logits agree to ~1e-6)."""
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if not self.prefix_cache or k < 2 or ids.shape[1] < 2:
            return {**enc, "num_return_sequences": k}
        cache = self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], use_cache=True)[self._cache_name]
        cache.batch_repeat_interleave(k)
        return {"input_ids": ids.repeat(k, 1), "attention_mask": mask.repeat(k, 1), self._cache_name: cache}

    def _logprob(self, batch: list[ElicitationRequest]) -> list[ElicitationResult]:
        torch = self._torch
        ids = self._ids(batch, 1)
        with torch.inference_mode():
            prefix = self._shared_prefix(ids) if self.prefix_cache else ()
            logits = self._last_logits(ids, prefix)
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        results = []
        for i, request in enumerate(batch):
            ids_a, ids_b = label_token_ids(self.tokenizer, request.labels)
            p_a, p_b = float(probs[i, ids_a].sum()), float(probs[i, ids_b].sum())
            results.append(ElicitationResult(request.key, probs=(p_a, p_b), other_mass=max(0.0, 1.0 - p_a - p_b)))
        return results

    def _shared_prefix(self, ids: list[list[int]]) -> tuple[int, ...]:
        """The token prefix whose KV cache this batch reuses: the cached one if every row starts with it, else
        the batch's longest common prefix (cached for the next batches) when long enough to pay; () for none.

        Every row keeps at least one token after the prefix: its logits are computed in the batch pass.
        """
        cached = self._prefix[0] if self._prefix is not None else ()
        if cached and all(len(row) > len(cached) and tuple(row[:len(cached)]) == cached for row in ids):
            return cached
        if len(ids) < 2:  # a lone prompt's "shared" prefix is itself: caching it would only add a pass
            return ()
        common = min(len(row) for row in ids) - 1
        first = ids[0]
        for row in ids[1:]:
            common = next((j for j in range(common) if row[j] != first[j]), common)
        if common < _MIN_PREFIX_TOKENS:
            return ()
        prefix = tuple(first[:common])
        out = self.model(input_ids=self._torch.tensor([prefix], device=self.device), use_cache=True,
                         **self._last_only)
        self._prefix = (prefix, out[self._cache_name])
        return prefix

    def _last_logits(self, ids: list[list[int]], prefix: tuple[int, ...]):
        """Next-token logits after each row: its tokens after `prefix` (whose KV cache is reused), left-padded,
        positions counted on from the prefix so that padding changes nothing."""
        torch = self._torch
        start, rows = len(prefix), [row[len(prefix):] for row in ids]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), start + width), dtype=torch.long)
        mask[:, :start] = 1
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row):] = torch.tensor(row)
            mask[i, start + width - len(row):] = 1
            positions[i, width - len(row):] = torch.arange(start, start + len(row))
        extra: dict = {}
        if prefix:
            assert self._prefix is not None
            cache = copy.deepcopy(self._prefix[1])  # a forward pass appends to the cache it is given
            cache.batch_repeat_interleave(len(rows))
            extra[self._cache_name] = cache
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), **extra, **self._last_only)
        return out.logits[:, -1, :]

    def close(self) -> None:
        del self.model
