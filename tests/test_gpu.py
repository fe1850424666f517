"""GPU tier: the hf engine and the torch fit on CUDA give what they give on the CPU (skipped without a GPU unless
UETOOL_REQUIRE_GPU=1). Imports stay light (no pandas, pyarrow, Ray or Hydra) so the tier runs on a bare GPU image."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _requests():
    from uetool.engines.base import ElicitationRequest

    pairs = [("a warm cup of tea", "a cold shower"), ("ten dollars", "a thousand dollars"),
             ("a quiet morning", "a traffic jam"), ("a new friend", "a lost wallet")]
    prompts = []
    for i, (x, y) in enumerate(pairs):
        for order, (first, second) in enumerate(((x, y), (y, x))):
            prompt = f"Which do you prefer?\n\nOption A:\n{first}\n\nOption B:\n{second}\n\nAnswer with A or B."
            prompts.append(ElicitationRequest(f"k{i}{order}", prompt, ("A", "B"), "You are helpful.", i, i + 4, order))
    return prompts


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    from uetool.engines.weights import build_tiny_random

    return str(build_tiny_random(tmp_path_factory.mktemp("gpu") / "tiny-random"))


def test_hf_engine_on_cuda_matches_the_cpu(tiny_weights):
    from uetool.engines import create_engine
    from uetool.engines.base import GenerationSettings, RequestBatch

    batch = RequestBatch.from_requests(_requests())
    logprob = GenerationSettings(mode="logprob")
    cpu = create_engine("hf", path=tiny_weights, device="cpu").generate(batch, logprob)
    gpu_engine = create_engine("hf", path=tiny_weights, device="cuda")
    assert str(gpu_engine.model.device).startswith("cuda")
    gpu = gpu_engine.generate(batch, logprob)
    np.testing.assert_allclose(gpu.p_first, cpu.p_first, atol=1e-4)
    np.testing.assert_allclose(gpu.other_mass, cpu.other_mass, atol=1e-4)
    sample = GenerationSettings(mode="sample", k=4, max_tokens=4, seed=3)
    first, again = gpu_engine.generate(batch, sample), gpu_engine.generate(batch, sample)
    assert first.texts.tolist() == again.texts.tolist()  # seeded per request on CUDA too
    assert all(len(row) == 4 for row in first.texts.tolist())


def test_torch_fit_on_cuda_equals_the_cpu_fit():
    pytest.importorskip("scipy")
    pytest.importorskip("pandas")
    from uetool.core.agents import ThurstonianAgent
    from uetool.core.graph import sample_new_pairs
    from uetool.fit.torch_fit import fit_thurstonian_torch

    n = 300
    agent = ThurstonianAgent.random_truth(n, seed=4)
    rng = np.random.default_rng(0)
    pairs = sample_new_pairs(n, 6 * n, rng)
    a, b = pairs[:, 0], pairs[:, 1]
    p = agent.true_probability(a, b)
    on_cpu = fit_thurstonian_torch(n, a, b, p, device="cpu")
    on_gpu = fit_thurstonian_torch(n, a, b, p, device="cuda")
    np.testing.assert_allclose(on_gpu.mean, on_cpu.mean, atol=1e-5)
    assert np.corrcoef(on_gpu.mean, agent.mean)[0, 1] > 0.95
