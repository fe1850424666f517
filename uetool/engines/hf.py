"""transformers engine: the CPU default, batched with left padding; sample and logprob modes."""

from __future__ import annotations

from .base import ElicitationRequest, ElicitationResult, EngineError, GenerationSettings
from .prompting import label_token_ids, render_prompt, request_seed

__all__ = ["HFEngine"]


class HFEngine:
    name = "hf"

    def __init__(self, path: str, revision: str | None = None, kind: str = "chat", accepts_system_message: bool = True,
                 dtype: str = "float32", batch_size: int = 16, device: str | None = None,
                 num_threads: int | None = None, **_ignored) -> None:
        import torch

        if num_threads:
            # Ray pins OMP threads to 1 in actors; use the CPUs this replica was actually given
            torch.set_num_threads(int(num_threads))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..weights import resolve_model_path

        local = resolve_model_path(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(local, revision=revision)
            torch_dtype = getattr(torch, dtype) if dtype else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(local, revision=revision, dtype=torch_dtype)
        except OSError as err:
            raise EngineError(f"cannot load model '{path}' (revision {revision}): {err}") from err
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.kind = kind
        self.accepts_system_message = accepts_system_message
        self.batch_size = int(batch_size)
        self._torch = torch

    def _texts(self, requests: list[ElicitationRequest]) -> list[str]:
        return [render_prompt(self.tokenizer, r, self.kind, self.accepts_system_message) for r in requests]

    def _encode(self, texts: list[str]):
        add_special = self.kind == "base"  # chat templates already carry their special tokens
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(self.device)

    def generate(self, requests: list[ElicitationRequest], settings: GenerationSettings) -> list[ElicitationResult]:
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
            enc = self._encode(self._texts([request]))
            torch.manual_seed(request_seed(request, settings.seed))
            with torch.inference_mode():
                generated = self.model.generate(
                    **enc, max_new_tokens=settings.max_tokens, do_sample=do_sample,
                    temperature=settings.temperature if do_sample else None, top_p=None, top_k=None,
                    num_return_sequences=settings.k if do_sample else 1, pad_token_id=self.tokenizer.pad_token_id)
            texts = self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            results.append(ElicitationResult(request.key, texts=texts if do_sample else texts * settings.k))
        return results

    def _logprob(self, batch: list[ElicitationRequest]) -> list[ElicitationResult]:
        torch = self._torch
        enc = self._encode(self._texts(batch))
        with torch.inference_mode():
            logits = self.model(**enc).logits[:, -1, :].float()
        probs = torch.softmax(logits, dim=-1).cpu()
        results = []
        for i, request in enumerate(batch):
            ids_a, ids_b = label_token_ids(self.tokenizer, request.labels)
            p_a, p_b = float(probs[i, ids_a].sum()), float(probs[i, ids_b].sum())
            results.append(ElicitationResult(request.key, probs=(p_a, p_b), other_mass=max(0.0, 1.0 - p_a - p_b)))
        return results

    def close(self) -> None:
        del self.model
