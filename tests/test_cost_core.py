"""The cost model's arithmetic (uetool.core.cost) against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from uetool.core.cost import (
    ModelShape,
    Throughput,
    accelerator_seconds,
    calibrate_utilisation,
    forward_flops,
    paper_pairs,
    reference_tokens,
    token_totals,
)


def test_token_totals_sum_what_engines_counted_and_leave_the_rest_out():
    tokens = np.array([[50, 40, 0], [49, 41, 2], [np.nan, np.nan, np.nan]])
    totals = token_totals(tokens)
    assert (totals.prompt_computed, totals.prompt_reused, totals.generated) == (99, 81, 2)
    assert (totals.counted, totals.answered, totals.computed, totals.prompt) == (2, 3, 101, 180)
    assert totals.mean_prompt == 90.0
    assert totals.metrics()["tokens_counted_share"] == pytest.approx(2 / 3)
    assert token_totals(np.full((2, 3), np.nan)).metrics()["tokens_computed"] is None


def test_the_papers_budget_and_its_token_bill():
    assert paper_pairs(40) == int(2 * 40 * math.log2(40)) == 425 and paper_pairs(510) == 9174 and paper_pairs(1) == 0
    ref = reference_tokens(425, 92.0)  # both orders, K=10 samples, each recomputing 92 prompt tokens + 10 new
    assert ref["reference_prompt_tokens"] == 2 * 425 * 10 * 92 and ref["reference_generated_tokens"] == 2 * 425 * 100
    assert ref["reference_tokens"] == 2 * 425 * 10 * 102


def test_flops_and_seconds_follow_the_forward_count():
    shape = ModelShape(1e9, 16, 2048)
    assert forward_flops(shape, 10, 100) == 10 * (2e9 + 2 * 16 * 100 * 2048)
    guessed = ModelShape.from_params(7e9)  # d = 128 L and P = 12 L d^2
    assert guessed.d_model == pytest.approx(128 * guessed.n_layers, rel=0.1)
    assert 12 * guessed.n_layers * guessed.d_model**2 == pytest.approx(7e9, rel=0.1)
    rates = Throughput(prefill_utilisation=0.5, decode_utilisation=0.1, prefill_overhead_s=1e-5, decode_overhead_s=1e-3)
    got = accelerator_seconds(shape, 1e15, rates, prompt_tokens=1e6, prompt_context=50, generated_tokens=1e4,
                              decode_context=100)
    assert got["prefill_s"] == pytest.approx(forward_flops(shape, 1e6, 50) / 5e14 + 10)
    assert got["decode_s"] == pytest.approx(forward_flops(shape, 1e4, 100) / 1e14 + 10)
    assert calibrate_utilisation(shape, 1e15, 1e6, 50, forward_flops(shape, 1e6, 50) / 5e14) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="prefill_utilisation"):
        Throughput(prefill_utilisation=1.5, decode_utilisation=0.1)
