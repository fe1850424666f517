"""The hf engine's throughput on real model shapes, for calibrating the cost model (conf/cost/default.yaml).

    python benchmarks/engine_throughput.py [--archs smollm2-135m,qwen2.5-0.5b] [--device cuda|cpu] [--json]

Each architecture is built with its published shape (hidden size, layers, heads, vocabulary) and random weights,
saved and loaded by the hf engine like any model (timing does not depend on the weights' values; the tokenizer is
the offline tiny model's). The engine then answers paper-template prompts over the main outcomes twice: logprob
mode (one prefill per prompt after the shared prefix) and sample mode (K=10 per request, 10 new tokens, T=1).
Tokens are the engine's own counts (`ElicitationResult.tokens`); FLOPs follow `uetool.core.cost.forward_flops`;
utilisation = achieved FLOP/s over the device's peak: the measured dense matmul peak (bf16 on a GPU, fp32 on a CPU)
and, for a GPU, its datasheet peak from conf/cost (the planner's reference). Decode utilisation is what sample mode
reaches once its prefill (timed in logprob mode) is taken out.

JSON keys: device, matmul_peak_tflops, datasheet_peak_tflops, rows (per arch and mode: arch, params, mode,
requests, tokens_prompt_computed, tokens_prompt_reused, tokens_generated, wall_s, tflops, utilisation_measured_peak,
utilisation_datasheet_peak), calibration (per arch: prefill_utilisation, decode_utilisation, against the datasheet
peak where there is one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import matmul_peak_gflops, print_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uetool.core.cost import ModelShape, forward_flops  # noqa: E402

# published shapes (each model's config.json on the Hugging Face hub): family, hidden, layers, heads, kv heads,
# intermediate, vocabulary, tied input and output embeddings
ARCHS = {
    "smollm2-135m": ("llama", 576, 30, 9, 3, 1536, 49152, True),
    "qwen2.5-0.5b": ("qwen2", 896, 24, 14, 2, 4864, 151936, True),
    "qwen2.5-1.5b": ("qwen2", 1536, 28, 12, 2, 8960, 151936, True),
    "qwen2.5-7b": ("qwen2", 3584, 28, 28, 4, 18944, 152064, False),
    "llama-3.1-8b": ("llama", 4096, 32, 32, 8, 14336, 128256, False),
}
DATASHEET = ROOT / "conf" / "cost" / "default.yaml"


def build_model(arch: str, tiny: Path, out: Path, device: str) -> Path:
    """The architecture with random weights and the tiny tokenizer, saved where the hf engine loads it."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

    family, hidden, layers, heads, kv, inter, vocab, tied = ARCHS[arch]
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family]
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = {name: getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad")}
    config = cls(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                 intermediate_size=inter, vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=tied,
                 bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out)
    for item in tiny.iterdir():
        if "token" in item.name or item.name.endswith(".jinja"):
            shutil.copy(item, out / item.name)
    del model
    return out


def _requests(n_pairs: int, seed: int = 0):
    """Both orders of `n_pairs` random pairs of the main outcomes in the paper template (read without pandas: a
    GPU image may hold only torch and transformers)."""
    import json

    from uetool.core.prompts import DEFAULT_SYSTEM_MESSAGE, get_template
    from uetool.engines.base import ElicitationRequest

    by_category = json.loads((ROOT / "uetool" / "data" / "outcomes" / "main.json").read_text())
    texts = [o["description"] if isinstance(o, dict) else str(o) for group in by_category.values() for o in group]
    template, rng = get_template("paper"), np.random.default_rng(seed)
    pairs = [tuple(rng.choice(len(texts), 2, replace=False).tolist()) for _ in range(n_pairs)]
    return [ElicitationRequest(f"{a}-{b}-{o}", template.render(texts[x], texts[y]), ("A", "B"),
                               DEFAULT_SYSTEM_MESSAGE, a, b, o)
            for a, b in pairs for o, (x, y) in ((0, (a, b)), (1, (b, a)))]


def run_arch(arch: str, path: Path, device: str, n_pairs: int, batch_size: int, peaks: dict,
             sample_requests: int | None = None) -> list[dict]:
    import torch

    from uetool.engines import create_engine
    from uetool.engines.base import GenerationSettings

    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    engine = create_engine("hf", path=str(path), kind="chat", dtype=dtype, device=device, batch_size=batch_size)
    family, hidden, layers, *_ = ARCHS[arch]
    shape = ModelShape(float(sum(p.numel() for p in engine.model.parameters())), layers, hidden)
    requests = _requests(n_pairs)
    rows = []
    sample = GenerationSettings(mode="sample", k=10, max_tokens=10, temperature=1.0)
    for mode, settings, reqs in (("logprob", GenerationSettings(mode="logprob"), requests),
                                 ("sample", sample, requests[:sample_requests or len(requests) // 4])):
        engine.answer_requests(reqs[:16], settings)  # warm-up (kernels, allocator)
        engine._prefix = None  # the measured run builds its own prefix, as a fresh replica does
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        results = engine.answer_requests(reqs, settings)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        tokens = np.array([r.tokens for r in results], float)
        computed, reused, generated = tokens.sum(0)
        context = float((tokens[:, 1] + tokens[:, 0] / 2).mean())  # a prompt token attends to the prefix + half
        prompt_len = float((tokens[:, 0] + tokens[:, 1]).mean())
        flops = forward_flops(shape, computed, context) + forward_flops(shape, generated, prompt_len + 5)
        row = {"arch": arch, "params": shape.params, "mode": mode, "requests": len(reqs),
               "tokens_prompt_computed": int(computed), "tokens_prompt_reused": int(reused),
               "tokens_generated": int(generated), "wall_s": wall, "tflops": flops / wall / 1e12,
               "prefill_flops": forward_flops(shape, computed, context),
               "decode_flops": forward_flops(shape, generated, prompt_len + 5)}
        for name, peak in peaks.items():
            row[f"utilisation_{name}"] = flops / wall / peak if peak else None
        rows.append(row)
    engine.close()
    return rows


def calibration(rows: list[dict], peak: float) -> dict:
    """Prefill utilisation from logprob mode; decode utilisation from sample mode with its prefill taken out."""
    out = {}
    for arch in dict.fromkeys(r["arch"] for r in rows):
        lp = next(r for r in rows if r["arch"] == arch and r["mode"] == "logprob")
        sm = next(r for r in rows if r["arch"] == arch and r["mode"] == "sample")
        prefill_rate = lp["prefill_flops"] / lp["wall_s"]
        decode_s = max(sm["wall_s"] - sm["prefill_flops"] / prefill_rate, 1e-9)
        out[arch] = {"prefill_utilisation": prefill_rate / peak,
                     "decode_utilisation": sm["decode_flops"] / decode_s / peak,
                     "prefill_tokens_per_s": lp["tokens_prompt_computed"] / lp["wall_s"],
                     "decode_tokens_per_s": sm["tokens_generated"] / decode_s}
    return out


def datasheet_peak(device_name: str) -> tuple[str | None, float | None]:
    import yaml

    accelerators = yaml.safe_load(DATASHEET.read_text())["accelerators"]
    for name, entry in accelerators.items():
        if name != "cpu" and name.lower() in device_name.lower():
            return name, float(entry["peak_tflops"]) * 1e12
    return None, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="smollm2-135m")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda where there is one)")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sample-requests", type=int, default=None, help="requests in sample mode (default: a "
                        "quarter of the logprob ones)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    from uetool.engines.weights import build_tiny_random

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    archs = args.archs.split(",")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise SystemExit(f"unknown --archs {unknown}; known: {', '.join(ARCHS)}")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    measured = matmul_peak_gflops(device) * 1e9
    sheet_name, sheet = datasheet_peak(name) if device.startswith("cuda") else (None, None)
    peaks = {"measured_peak": measured, "datasheet_peak": sheet}
    rows = []
    with tempfile.TemporaryDirectory(prefix="uetool-throughput-") as tmp:
        tiny = build_tiny_random(Path(tmp) / "tiny")
        for arch in archs:
            started = time.perf_counter()
            path = build_model(arch, tiny, Path(tmp) / arch, device)
            built = time.perf_counter() - started
            got = run_arch(arch, path, device, args.pairs, args.batch_size, peaks, args.sample_requests)
            for row in got:
                row["build_s"] = built
            rows += got
            print(f"{arch}: " + ", ".join(f"{r['mode']} {r['wall_s']:.1f} s {r['tflops']:.2f} TFLOP/s" for r in got),
                  file=sys.stderr)
            import shutil

            shutil.rmtree(path, ignore_errors=True)
    out = {"device": name, "datasheet": sheet_name, "matmul_peak_tflops": measured / 1e12,
           "datasheet_peak_tflops": sheet / 1e12 if sheet else None, "rows": rows,
           "calibration": calibration(rows, sheet or measured)}
    print_result(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
