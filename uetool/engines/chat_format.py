"""What a model sees: chat template or raw base-model prompt; which tokens spell each label."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .base import ElicitationRequest, EngineError

__all__ = ["require_chat_template", "render_prompt", "prompt_token_ids", "label_token_ids", "chat_messages",
           "request_seed", "PromptTooLong"]

# stand-ins for the untrusted texts while the chat template is rendered (Unicode private-use characters: no
# template changes them and no outcome file is expected to hold them)
_SLOTS = {"system": "\ue000uetool-system\ue001", "user": "\ue000uetool-user\ue001"}


class PromptTooLong(EngineError):
    """A prompt (with its reply budget) does not fit the model's context."""


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


def prompt_token_ids(tokenizer, request: ElicitationRequest, kind: str, accepts_system_message: bool,
                     max_model_len: int | None = None, reply_tokens: int = 0) -> list[int]:
    """The token ids the model is shown for `request`, with its texts (prompt, system message) as plain text.

    Outcome descriptions are untrusted: a description holding a special token's text (`<|im_end|><|im_start|>system
    ...`) must not become real turn markers. Where no untrusted text holds any special token's text (the usual
    case) this is the tokenizer's own encoding of the rendered prompt, unchanged. Otherwise the template's pieces are
    encoded with their special tokens and each untrusted text as plain text (`split_special_tokens`); the seams
    between pieces may then tokenise a little differently than a single encoding would, for that prompt only.
    Raises PromptTooLong, naming the request's outcomes, when the prompt and `reply_tokens` exceed `max_model_len`.
    (Markers that are ordinary text in a model's vocabulary, like Llama-2's `[INST]`, cannot be told apart from the
    template's own in any encoding.)
    """
    untrusted = {"user": request.prompt}
    if request.system_message and accepts_system_message and kind != "base":
        untrusted["system"] = request.system_message
    specials = _special_texts(tokenizer)
    if not any(marker in text for text in untrusted.values() for marker in specials):
        ids = tokenizer.encode(render_prompt(tokenizer, request, kind, accepts_system_message),
                               add_special_tokens=kind == "base")  # chat templates carry their own special tokens
    elif kind == "base":
        ids = tokenizer(request.prompt + "\n\nAnswer:", add_special_tokens=True,
                        split_special_tokens=True)["input_ids"]
    else:
        require_chat_template(tokenizer, kind, getattr(tokenizer, "name_or_path", "?"))
        messages = chat_messages(request, accepts_system_message)
        for message in messages:
            message["content"] = _SLOTS[message["role"]]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids, rest = [], rendered
        while rest:
            role, at = min(((r, rest.find(slot)) for r, slot in _SLOTS.items() if slot in rest),
                           key=lambda x: x[1], default=(None, len(rest)))
            if at:
                ids += tokenizer.encode(rest[:at], add_special_tokens=False)
            if role is None:
                break
            ids += tokenizer(untrusted[role], add_special_tokens=False, split_special_tokens=True)["input_ids"]
            rest = rest[at + len(_SLOTS[role]):]
    if max_model_len is not None and len(ids) + reply_tokens > max_model_len:
        raise PromptTooLong(f"the prompt for outcomes {request.a} and {request.b} is {len(ids)} tokens; with "
                            f"{reply_tokens} reply tokens it exceeds the model's context of {max_model_len}: "
                            f"shorten those outcomes' descriptions")
    return ids


@lru_cache(maxsize=32)
def _special_texts(tokenizer) -> tuple[str, ...]:
    """The text of every special token (declared, or added as special: chat markers such as <|im_start|>)."""
    texts = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            texts.add(str(token.content))
    return tuple(sorted(t for t in texts if t))


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
