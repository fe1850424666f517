"""Shared output of the benchmark scripts: one JSON object (--json) or a two-column table."""

from __future__ import annotations

import json
import time


def print_result(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out))
        return
    width = max(map(len, out)) + 2
    for key, value in out.items():
        print(f"{key:<{width}}{value:.4f}" if isinstance(value, float) else f"{key:<{width}}{value}")


def matmul_peak_gflops(device: str = "cpu", size: int | None = None) -> float:
    """The device's measured dense matmul peak in GFLOP/s: fp32 on a CPU (2048^2), bf16 on a GPU (8192^2); the best
    of several trials (a shared VM's speed drifts by +-15%)."""
    import torch

    gpu = device.startswith("cuda")
    size = size or (8192 if gpu else 2048)
    dtype = torch.bfloat16 if gpu else torch.float32
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(3 if not gpu else 20):
            torch.mm(a, b)
        if gpu:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / (3 if not gpu else 20))
    return 2 * size**3 / best / 1e9
