"""transformers engine: the CPU default, batched with left padding; sample and logprob modes.

Prompt KV caches are reused (`prefix_cache`): logprob mode computes the prompt prefix every request shares (chat
template, system turn and the template's opening text: 43 of a paper prompt's ~92 tokens on SmolLM2) once, runs
each batch only on what follows it and reads the logits of the last position alone; sample mode does the same
prefill for a batch of prompts, runs each prompt once for its K samples instead of K times, and decodes all rows
together, each request drawing from its own seeded generator.

Token counts per request (`ElicitationResult.tokens`): its prompt's tokens after the reused prefix (the request
that built a prefix cache counts that prefix as computed), the prefix tokens it reused, and the tokens its samples
generated up to and including their end token (T=0: the one greedy row computed); padding is not counted.
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
        # where a reply ends: the generation config's end tokens (a chat model's end of turn) and the tokenizer's
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        self._eos_ids = torch.tensor(sorted(set(eos)), dtype=torch.long)

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
        """K samples per request, drawn for many requests in one batch of sequences.

        Each request's prompt is prefilled once (after the shared prefix, as in logprob mode) and its cache repeated
        K ways; a decoding loop then feeds one token per row per step. Each request draws from its own generator,
        seeded by its key (`request_seed`), so its samples do not depend on the batch it lands in. Sampling is plain
        temperature sampling over the whole vocabulary (no top-k/top-p), as the paper's T=1 answers; T=0 is greedy,
        computed once and repeated K times.
        """
        do_sample = settings.temperature > 0
        k = settings.k if do_sample else 1
        ids = self._ids(batch, settings.max_tokens)
        per_pass = max(1, self.batch_size // k)  # rows (requests x K) per pass stay within max(batch_size, K)
        results = []
        for start in range(0, len(batch), per_pass):
            chunk = batch[start:start + per_pass]
            texts, prompt, generated = self._decode(chunk, ids[start:start + per_pass], k, settings)
            for i, request in enumerate(chunk):
                own = texts[i * k:(i + 1) * k]
                results.append(ElicitationResult(request.key, texts=own if do_sample else own * settings.k,
                                                 tokens=(*prompt[i], sum(generated[i * k:(i + 1) * k]))))
        return results

    def _prefix_for(self, ids: list[list[int]]) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
        """The batch's reused prefix and each row's (prompt tokens computed, prompt tokens reused); a prefix built
        for this batch is counted as computed by its first row."""
        before = self._prefix[0] if self._prefix is not None else None
        prefix = self._shared_prefix(ids) if self.prefix_cache else ()
        n = len(prefix)
        counts = [(len(row) - n, n) for row in ids]
        if prefix and prefix != before:
            counts[0] = (len(ids[0]), 0)
        return prefix, counts

    def _decode(self, chunk: list[ElicitationRequest], ids: list[list[int]], k: int,
                settings: GenerationSettings) -> tuple[list[str], list[tuple[int, int]], list[int]]:
        """The generated texts of `chunk`'s requests, k rows per request in request order; each request's
        (prompt tokens computed, reused) and each row's generated tokens."""
        torch = self._torch
        with torch.inference_mode():
            prefix, prompt = self._prefix_for(ids)
            logits, cache, mask = self._last_logits(ids, prefix, keep_cache=True)
            if k > 1:
                cache.batch_repeat_interleave(k)
                logits, mask = logits.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
            positions = torch.tensor([len(row) for row in ids]).repeat_interleave(k)
            rows = len(positions)
            generators = [torch.Generator().manual_seed(request_seed(r, settings.seed)) for r in chunk]
            finished = torch.zeros(rows, dtype=torch.bool)
            steps = []
            for step in range(settings.max_tokens):
                if settings.temperature > 0:
                    probs = torch.softmax(logits.float().cpu() / settings.temperature, dim=-1)
                    token = torch.cat([torch.multinomial(probs[i * k:(i + 1) * k], 1, generator=g)[:, 0]
                                       for i, g in enumerate(generators)])
                else:
                    token = logits.float().cpu().argmax(-1)
                token = torch.where(finished, self.tokenizer.pad_token_id, token)
                steps.append(token)
                finished |= torch.isin(token, self._eos_ids)
                if bool(finished.all()) or step == settings.max_tokens - 1:
                    break
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype)], 1)
                out = self.model(input_ids=token[:, None].to(self.device), attention_mask=mask.to(self.device),
                                 position_ids=positions[:, None].to(self.device), use_cache=True,
                                 **{self._cache_name: cache}, **self._last_only)
                positions = positions + 1
                logits, cache = out.logits[:, -1, :], out[self._cache_name]
        generated = torch.stack(steps, 1).tolist() if steps else [[] for _ in range(rows)]
        eos = set(self._eos_ids.tolist())
        ends = [next((j for j, t in enumerate(row) if t in eos), None) for row in generated]
        cut = [row if end is None else row[:end] for row, end in zip(generated, ends, strict=True)]
        counts = [len(row) if end is None else end + 1 for row, end in zip(generated, ends, strict=True)]
        return self.tokenizer.batch_decode(cut, skip_special_tokens=True), prompt, counts

    def _logprob(self, batch: list[ElicitationRequest]) -> list[ElicitationResult]:
        torch = self._torch
        ids = self._ids(batch, 1)
        with torch.inference_mode():
            prefix, prompt = self._prefix_for(ids)
            logits = self._last_logits(ids, prefix)
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        results = []
        for i, request in enumerate(batch):
            ids_a, ids_b = label_token_ids(self.tokenizer, request.labels)
            p_a, p_b = float(probs[i, ids_a].sum()), float(probs[i, ids_b].sum())
            results.append(ElicitationResult(request.key, probs=(p_a, p_b), other_mass=max(0.0, 1.0 - p_a - p_b),
                                             tokens=(*prompt[i], 0)))
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

    def _last_logits(self, ids: list[list[int]], prefix: tuple[int, ...], keep_cache: bool = False):
        """Next-token logits after each row: its tokens after `prefix` (whose KV cache is reused), left-padded,
        positions counted on from the prefix so that padding changes nothing. With `keep_cache`, also the rows'
        KV cache and attention mask, for decoding on."""
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
                         position_ids=positions.to(self.device), use_cache=keep_cache, **extra, **self._last_only)
        if keep_cache:
            return out.logits[:, -1, :], out[self._cache_name], mask
        return out.logits[:, -1, :]

    def close(self) -> None:
        del self.model
