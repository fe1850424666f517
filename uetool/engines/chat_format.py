"""What a model sees: chat template or raw base-model prompt; which tokens spell each label."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .base import ElicitationRequest, EngineError

__all__ = ["require_chat_template", "render_prompt", "label_token_ids", "chat_messages", "request_seed"]


def request_seed(request: ElicitationRequest, seed: int) -> int:
    """A 64-bit sampling seed derived from the job seed and the request's own key.

    Keyed by the request, not by its position: however requests are sharded, batched or re-sent after a failure,
    the same request draws the same samples, in every engine that samples locally (hf, vllm).
    """
    digest = hashlib.sha256(f"{seed}:{request.key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def chat_messages(request: ElicitationRequest, accepts_system_message: bool) -> list[dict]:
    messages = []
    if request.system_message and accepts_system_message:
        messages.append({"role": "system", "content": request.system_message})
    messages.append({"role": "user", "content": request.prompt})
    return messages


def require_chat_template(tokenizer, kind: str, model: str) -> None:
    """A chat model must bring its chat template: falling back to a raw base-model prompt without its special tokens
    would quietly ask another question than the one configured."""
    if kind == "chat" and getattr(tokenizer, "chat_template", None) is None:
        raise EngineError(f"model '{model}' is configured as kind: chat but its tokenizer has no chat template; "
                          "configure it as kind: base (raw-text prompts ending in 'Answer:') or use its chat/instruct "
                          "release")


def render_prompt(tokenizer, request: ElicitationRequest, kind: str, accepts_system_message: bool) -> str:
    """Chat models: their chat template with a generation prompt. Base models: prompt + "\\n\\nAnswer:"."""
    if kind == "base":
        return request.prompt + "\n\nAnswer:"
    require_chat_template(tokenizer, kind, getattr(tokenizer, "name_or_path", "?"))
    return tokenizer.apply_chat_template(chat_messages(request, accepts_system_message), tokenize=False,
                                         add_generation_prompt=True)


def label_token_ids(tokenizer, labels: tuple[str, str]) -> tuple[list[int], list[int]]:
    """Token ids that spell each label as the next token: "A" and " A" variants (tokenisers differ)."""
    return _label_ids(tokenizer, tuple(labels))


@lru_cache(maxsize=32)
def _label_ids(tokenizer, labels: tuple[str, str]) -> tuple[list[int], list[int]]:
    out = []
    for label in labels:
        ids = set()
        for variant in (label, " " + label):
            tokens = tokenizer.encode(variant, add_special_tokens=False)
            if len(tokens) == 1:
                ids.add(tokens[0])
        if not ids:
            raise ValueError(f"label {label!r} is not a single token for this tokenizer; logprob mode needs "
                             "single-token labels (use sample mode or other labels)")
        out.append(sorted(ids))
    if set(out[0]) & set(out[1]):
        raise ValueError(f"labels {labels!r} share a token")
    return out[0], out[1]
