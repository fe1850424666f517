"""Checks on the Hydra config group ``conf/model``: one YAML per model of the paper's reference list."""

from __future__ import annotations

import csv
import io
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MODEL_DIR = CONF / "model"
# The paper's model table, shipped as package data (source: uetool/data/MODELS_SOURCE.md).
REFERENCE_CSV = files("uetool.data") / "models.csv"
GPU_GB = 80.0
HEADROOM = 1.3  # weights + 30%: leaves room for the KV cache (a 32B model in bf16 needs 2 GPUs)

# key -> allowed types (``type(None)`` means null is allowed)
NONE = type(None)
SCHEMA: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "name": (str,),
    "kind": (str,),
    "provider": (str,),
    "path": (str,),
    "revision": (str, NONE),
    "accepts_system_message": (bool,),
    "tensor_parallel_size": (int,),
    "replicas": (int,),
    "params_b": (float, NONE),
    "mmlu": (float, NONE),
    "engine": (str,),
    "api_base": (str, NONE),
    "api_key_env": (str, NONE),
    "dtype": (str, NONE),
    "max_model_len": (int,),
}
# keys only some entries carry: a thinking model's own reply budget and the marker that ends its thinking
OPTIONAL: dict[str, tuple[type, ...]] = {"max_tokens": (int,), "thinking_end": (str, NONE)}
API_PROVIDERS = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    "xai": ("https://api.x.ai/v1", "XAI_API_KEY"),
}
# Things that look like a real secret: OpenAI / Anthropic / xAI keys, HF tokens, bearer headers.
SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"xai-[A-Za-z0-9]{16,}"),
    re.compile(r"hf_[A-Za-z0-9]{20,}"),
    re.compile(r"Bearer\s+[A-Za-z0-9._\-]{16,}"),
    re.compile(r"^\s*(api_key|token|secret)\s*:\s*\S", re.MULTILINE),
]


def _load_all() -> dict[str, dict]:
    out = {}
    for path in sorted(MODEL_DIR.glob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        assert isinstance(cfg, dict), path
        out[path.stem] = cfg
    return out


MODELS = _load_all()


def _is_builtin(cfg: dict) -> bool:
    return str(cfg["path"]).startswith("builtin:")


def _is_api(cfg: dict) -> bool:
    return cfg["kind"] == "api"


def _is_simulated(cfg: dict) -> bool:
    return cfg["engine"] == "simulated"


def _open_weight() -> dict[str, dict]:
    return {k: c for k, c in MODELS.items() if not _is_api(c) and not _is_builtin(c) and not _is_simulated(c)}


def _api() -> dict[str, dict]:
    return {k: c for k, c in MODELS.items() if _is_api(c)}


def _bytes_per_param(cfg: dict) -> int:
    return 1 if str(cfg["name"]).upper().endswith("-FP8") else 2


def test_model_dir_is_populated():
    assert MODEL_DIR.is_dir()
    assert len(MODELS) >= 64


@pytest.mark.parametrize("stem", sorted(k for k, c in MODELS.items() if not _is_simulated(c)))
def test_schema(stem):
    cfg = MODELS[stem]
    assert set(cfg) - set(OPTIONAL) == set(SCHEMA), f"{stem}: keys differ: {(set(cfg) - set(OPTIONAL)) ^ set(SCHEMA)}"
    for key, types in {**SCHEMA, **{k: t for k, t in OPTIONAL.items() if k in cfg}}.items():
        value = cfg[key]
        # bool is a subclass of int: keep them apart
        if bool not in types:
            assert not isinstance(value, bool), f"{stem}.{key} is a bool"
        assert isinstance(value, types), f"{stem}.{key}={value!r} is not {types}"
    assert cfg["key"] == stem
    assert cfg["kind"] in {"chat", "base", "api"}
    assert cfg["provider"] in {"hf", *API_PROVIDERS}
    assert cfg["engine"] in {"vllm", "openai", "hf"}
    assert cfg["replicas"] >= 1
    assert cfg["max_model_len"] > 0
    if cfg["mmlu"] is not None:
        assert 0.0 <= cfg["mmlu"] <= 100.0


def test_counts():
    assert len(_open_weight()) == 57
    assert len(_api()) == 5
    builtins = {k for k, c in MODELS.items() if _is_builtin(c)}
    assert builtins == {"smollm2-135m-instruct", "tiny-random"}
    simulated = {k for k, c in MODELS.items() if _is_simulated(c)}
    assert simulated == {"sim-scale-0.25", "sim-scale-0.5", "sim-scale-1", "sim-scale-2", "sim-citizens"}
    assert len(MODELS) == 57 + 5 + 2 + 5


def test_simulated_entries_scale_one_vector_with_ascending_stand_in_capability():
    sims = sorted((c for c in MODELS.values() if _is_simulated(c) and c["key"] != "sim-citizens"),
                  key=lambda c: c["simulated"]["scale"])
    for cfg in sims:
        assert set(cfg) == set(SCHEMA) | {"simulated", "capability_note"}, cfg["key"]
        assert cfg["simulated"]["agent"] == "thurstonian" and cfg["path"] is None
        assert cfg["key"] == f"sim-scale-{cfg['simulated']['scale']:g}"
        assert "stand-in" in cfg["capability_note"]
    capability = [c["mmlu"] for c in sims]
    assert capability == sorted(capability) and len(set(capability)) == len(capability)


def test_builtin_entries():
    smol = MODELS["smollm2-135m-instruct"]
    assert smol["name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert smol["path"] == "builtin:smollm2-135m-instruct"
    assert (smol["engine"], smol["dtype"], smol["max_model_len"]) == ("hf", "float32", 2048)
    assert smol["params_b"] == pytest.approx(0.135)
    assert smol["mmlu"] is None
    tiny = MODELS["tiny-random"]
    assert tiny["path"] == "builtin:tiny-random"
    assert (tiny["engine"], tiny["dtype"], tiny["max_model_len"]) == ("hf", "float32", 1024)
    assert tiny["params_b"] == pytest.approx(0.0005)
    assert tiny["mmlu"] is None
    for cfg in (smol, tiny):
        assert (cfg["tensor_parallel_size"], cfg["replicas"]) == (1, 1)
        assert cfg["provider"] == "hf" and cfg["kind"] == "chat"


@pytest.mark.parametrize("stem", sorted(_open_weight()))
def test_open_weight_fits(stem):
    cfg = MODELS[stem]
    tp = cfg["tensor_parallel_size"]
    assert tp in (1, 2, 4, 8), f"{stem}: tensor_parallel_size={tp} is not a power of two <= 8"
    assert cfg["provider"] == "hf" and cfg["engine"] == "vllm" and cfg["dtype"] == "bfloat16"
    assert cfg["api_base"] is None and cfg["api_key_env"] is None
    assert cfg["params_b"] is not None and cfg["params_b"] > 0
    per_gpu = cfg["params_b"] * _bytes_per_param(cfg) * HEADROOM / tp
    assert per_gpu <= GPU_GB, f"{stem}: {per_gpu:.1f} GB per GPU at tp={tp}"
    # smallest such power of two
    if tp > 1:
        assert per_gpu * 2 > GPU_GB, f"{stem}: tp={tp} is larger than needed"
    assert re.fullmatch(r"[\w.\-]+/[\w.\-]+", cfg["path"]), cfg["path"]


@pytest.mark.parametrize("stem", sorted(_api()))
def test_api_entries(stem):
    cfg = MODELS[stem]
    assert cfg["provider"] in API_PROVIDERS
    base, env = API_PROVIDERS[cfg["provider"]]
    assert cfg["engine"] == "openai"
    assert cfg["api_base"] == base
    assert cfg["api_key_env"] == env
    assert cfg["tensor_parallel_size"] == 0
    assert cfg["params_b"] is None and cfg["dtype"] is None and cfg["revision"] is None
    assert "/" not in cfg["path"]


def test_no_literal_keys_in_conf():
    offenders = []
    for path in sorted(CONF.rglob("*")):
        if not path.is_file() or path.suffix not in {".yaml", ".yml", ".json", ".toml", ".ini", ".env", ".txt", ""}:
            continue
        text = path.read_text(errors="replace")
        for pattern in SECRET_PATTERNS:
            if pattern.search(text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern.pattern}")
    assert not offenders, offenders


def _reference_rows() -> list[dict[str, str]]:
    # read_text() raises (and the test fails) if the table is not shipped; it never skips
    text = REFERENCE_CSV.read_text(encoding="utf-8")
    return [r for r in csv.DictReader(io.StringIO(text, newline="")) if r["kind"] != "scored-only"]


def test_reference_csv_is_package_data():
    assert REFERENCE_CSV.is_file(), f"{REFERENCE_CSV} is missing"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "models.csv" in pyproject["tool"]["setuptools"]["package-data"]["uetool.data"]


# Entries that differ from the paper's table on purpose, each with the reason in its YAML comment.
DEVIATIONS = {"olmo-7b": {"kind": "base", "path": "allenai/OLMo-7B-hf", "revision": None}}


def test_deviations_are_explained_in_their_yaml():
    for key, fields in DEVIATIONS.items():
        text = (MODEL_DIR / f"{key}.yaml").read_text()
        assert "Deviates from the table on purpose" in text, key
        assert all(MODELS[key][name] == value for name, value in fields.items()), key


def test_agrees_with_reference_csv():
    rows = _reference_rows()
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) == len(rows)
    paper_models = {k for k, c in MODELS.items() if not _is_builtin(c) and not _is_simulated(c)}
    assert paper_models == set(by_key), paper_models ^ set(by_key)
    kind_map = {"open-chat": "chat", "open-base": "base"}
    for key, row in by_key.items():
        cfg = {**MODELS[key], **{k: None for k in DEVIATIONS.get(key, {})}}
        row = {**row, **({"hf_revision_prefix": "", "kind": "skip", "hf_repo": None} if key in DEVIATIONS else {})}
        assert cfg["key"] == row["key"]
        assert cfg["name"] == row["model_name"]
        assert cfg["mmlu"] == pytest.approx(float(row["mmlu"])), key
        assert cfg["accepts_system_message"] is {"true": True, "false": False}[row["accepts_system_message"]], key
        assert cfg["revision"] == (row["hf_revision_prefix"] or None), key
        if row["kind"].startswith("api-"):
            assert cfg["kind"] == "api"
            assert cfg["provider"] == row["kind"].split("-", 1)[1]
            assert cfg["path"] == row["model_name"].rsplit("/", 1)[-1]
        elif key not in DEVIATIONS:
            assert cfg["kind"] == kind_map[row["kind"]], key
            assert cfg["path"] == row["hf_repo"], key
