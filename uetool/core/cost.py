"""What elicitation costs: token totals, the paper's method for comparison, FLOPs and accelerator-seconds (pure).

Tokens. Every answered request carries (prompt tokens computed, prompt tokens reused from a cache, tokens generated
over its samples) as its engine counted them (`ResultBatch.tokens`). `token_totals` sums them over a run's requests;
`tokens_computed` = prompt tokens computed + tokens generated: what the accelerator actually ran.

The paper's method (`reference_tokens`): every pair asked in both orders, K samples per order, each sample a request
of its own with the whole prompt recomputed (no cache reuse) and up to `max_tokens` generated; for its own budget of
`paper_pairs(n)` = int(2 n log2 n) pairs (EXPERIMENTS.md s.3.6; K=10 samples of up to 10 tokens, METHOD.md s.2).
Generated tokens are counted at their budget: an upper bound, stated as such (`reference_generated_tokens`).

FLOPs (`forward_flops`): a token computed at context c costs 2 P (the weights' multiply-adds, P parameters) plus
2 L c d (attention scores and the weighted sum over the c earlier tokens, L layers of width d), the forward-pass
count of Kaplan et al. (2020), "Scaling Laws for Neural Language Models", table 1. Where a model's layers and width
are unknown they follow from P with the aspect ratio d = 128 L and P = 12 L d^2 (`ModelShape.from_params`).

Seconds (`accelerator_seconds`): FLOPs over (peak x utilisation) plus a fixed cost per token, with separate numbers
for prefill (prompt tokens: large matrix multiplies, compute-bound) and decode (one token per sequence per step:
memory-bound, far below peak). Peaks per accelerator and rates per engine live in conf/cost/; `calibrate_utilisation`
turns a measured run (its tokens and seconds) into the utilisation that would have predicted it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PAPER_K", "PAPER_MAX_TOKENS", "TokenTotals", "token_totals", "paper_pairs", "reference_tokens",
           "ModelShape", "forward_flops", "Throughput", "accelerator_seconds", "calibrate_utilisation",
           "CHARS_PER_TOKEN"]

PAPER_K = 10  # samples per order in the paper's elicitation (METHOD.md s.2)
PAPER_MAX_TOKENS = 10  # new tokens per sample it allows
CHARS_PER_TOKEN = 4.0  # where no tokenizer is at hand: English text runs about 4 characters per BPE token


@dataclass(frozen=True)
class TokenTotals:
    """Token counts summed over a run's answered requests (`counted` of `answered` carried counts)."""

    prompt_computed: int = 0
    prompt_reused: int = 0
    generated: int = 0
    counted: int = 0
    answered: int = 0

    @property
    def prompt(self) -> int:
        return self.prompt_computed + self.prompt_reused

    @property
    def computed(self) -> int:
        return self.prompt_computed + self.generated

    @property
    def mean_prompt(self) -> float:
        return self.prompt / self.counted if self.counted else float("nan")

    def metrics(self) -> dict:
        """The run metrics (metrics.json keys); counts are None where no answered request carried them."""
        if not self.counted:
            return {"tokens_prompt_computed": None, "tokens_prompt_reused": None, "tokens_generated": None,
                    "tokens_computed": None, "tokens_counted_share": 0.0 if self.answered else None}
        return {"tokens_prompt_computed": self.prompt_computed, "tokens_prompt_reused": self.prompt_reused,
                "tokens_generated": self.generated, "tokens_computed": self.computed,
                "tokens_counted_share": self.counted / self.answered if self.answered else None}


def token_totals(tokens: np.ndarray) -> TokenTotals:
    """Sum an (n, 3) array of (computed, reused, generated) per answered request; rows with NaN were not counted."""
    tokens = np.asarray(tokens, np.float64).reshape(-1, 3)
    counted = ~np.isnan(tokens).any(axis=1)
    total = tokens[counted].sum(axis=0)
    return TokenTotals(int(total[0]), int(total[1]), int(total[2]), int(counted.sum()), len(tokens))


def paper_pairs(n_outcomes: int) -> int:
    """The paper's active-learning budget: int(2 n log2 n) pairs (edge_multiplier 2, EXPERIMENTS.md s.3.6)."""
    return int(2 * n_outcomes * math.log2(n_outcomes)) if n_outcomes > 1 else 0


def reference_tokens(n_pairs: int, mean_prompt_tokens: float, *, k: int = PAPER_K,
                     max_tokens: int = PAPER_MAX_TOKENS) -> dict:
    """What the paper's method computes for `n_pairs` pairs: both orders, k samples each with the whole prompt
    recomputed, up to `max_tokens` generated per sample (counted at that budget)."""
    samples = 2 * int(n_pairs) * int(k)
    prompt = samples * float(mean_prompt_tokens)
    generated = samples * int(max_tokens)
    return {"reference_pairs": int(n_pairs), "reference_prompt_tokens": prompt,
            "reference_generated_tokens": generated, "reference_tokens": prompt + generated}


@dataclass(frozen=True)
class ModelShape:
    params: float  # parameters
    n_layers: int
    d_model: int

    @classmethod
    def from_params(cls, params: float, n_layers: int | None = None, d_model: int | None = None) -> ModelShape:
        """A model of `params` parameters; unknown depth and width from d = 128 L and params = 12 L d^2."""
        if params <= 0:
            raise ValueError(f"a model's parameter count must be positive, got {params}")
        if d_model is None:
            d_model = int(round((params * 128 / 12) ** (1 / 3))) if n_layers is None else int(
                round(math.sqrt(params / (12 * n_layers))))
        if n_layers is None:
            n_layers = max(1, int(round(params / (12 * d_model * d_model))))
        return cls(float(params), int(n_layers), int(d_model))


def forward_flops(shape: ModelShape, tokens: float, context: float) -> float:
    """FLOPs of `tokens` forward tokens, each attending over `context` earlier tokens on average."""
    return float(tokens) * (2.0 * shape.params + 2.0 * shape.n_layers * float(context) * shape.d_model)


@dataclass(frozen=True)
class Throughput:
    """How fast one engine runs on one accelerator (conf/cost/default.yaml `throughput`): the shares of the dense
    peak that prefill and decode reach, and a fixed cost per token on top (batching, sampling and scheduling work
    that no FLOP count sees: the hf engine samples on the CPU, about 7 ms per generated token even on an H200).
    `calibrated` names the measurement behind the numbers (empty: assumed)."""

    prefill_utilisation: float
    decode_utilisation: float
    prefill_overhead_s: float = 0.0
    decode_overhead_s: float = 0.0
    calibrated: str = ""

    def __post_init__(self) -> None:
        for key in ("prefill_utilisation", "decode_utilisation"):
            value = getattr(self, key)
            if not 0 < value <= 1:
                raise ValueError(f"throughput {key} must be in (0, 1], got {value}")
        for key in ("prefill_overhead_s", "decode_overhead_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"throughput {key} must be >= 0, got {getattr(self, key)}")


def accelerator_seconds(shape: ModelShape, peak_flops: float, throughput: Throughput, *, prompt_tokens: float,
                        prompt_context: float, generated_tokens: float = 0.0, decode_context: float = 0.0) -> dict:
    """Seconds of one accelerator of `peak_flops` for computing `prompt_tokens` (mean context `prompt_context`)
    and generating `generated_tokens` (mean context `decode_context`): {prefill_s, decode_s, total_s, flops}."""
    if peak_flops <= 0:
        raise ValueError(f"an accelerator's peak must be positive, got {peak_flops}")
    prefill = forward_flops(shape, prompt_tokens, prompt_context)
    decode = forward_flops(shape, generated_tokens, decode_context)
    prefill_s = prefill / (peak_flops * throughput.prefill_utilisation) + prompt_tokens * throughput.prefill_overhead_s
    decode_s = decode / (peak_flops * throughput.decode_utilisation) + generated_tokens * throughput.decode_overhead_s
    return {"prefill_s": prefill_s, "decode_s": decode_s, "total_s": prefill_s + decode_s, "flops": prefill + decode}


def calibrate_utilisation(shape: ModelShape, peak_flops: float, tokens: float, context: float,
                          seconds: float) -> float:
    """The utilisation at which `tokens` at `context` take `seconds` on a device of `peak_flops`."""
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError("calibration needs positive seconds and peak")
    return forward_flops(shape, tokens, context) / (seconds * peak_flops)
