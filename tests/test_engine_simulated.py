"""Simulated engines answer through the one batch protocol, against closed-form ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.agents import make_agent
from uetool.core.parsing import REFUSAL, parse_reply
from uetool.core.prompts import get_template
from uetool.engines import create_engine, engine_class
from uetool.engines.base import EngineError, GenerationSettings, RequestBatch
from uetool.engines.simulated import PromptReadingSimulatedEngine, SimulatedEngine


def _batch(n_outcomes: int, n: int, seed: int = 1, prompts: list[str] | None = None,
           labels=("A", "B")) -> RequestBatch:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_outcomes, n)
    b = (a + 1 + rng.integers(0, n_outcomes - 1, n)) % n_outcomes
    order = (np.arange(n) % 2).astype(np.int8)
    return RequestBatch([f"k{i}" for i in range(n)], prompts or [""] * n, a, b, order, labels, None)


def test_simulated_engine_answers_what_its_agent_chooses():
    engine = SimulatedEngine(n_outcomes=6, seed=3)
    batch = _batch(6, 40)
    settings = GenerationSettings(k=4, seed=0)
    got = engine.generate(batch, settings)
    agent = make_agent("thurstonian", 6, k=4, seed=3, scale=1.0, bias=0.3, refusal_rate=0.2)
    for order in (0, 1):
        rows = np.flatnonzero(batch.order == order)
        codes = agent.choices(np.stack([batch.a[rows], batch.b[rows]], 1), order)
        texts = [got.texts[i] for i in rows.tolist()]
        assert [[parse_reply(t) for t in row] for row in texts] == codes.tolist()
    logprob = engine.generate(batch, GenerationSettings(mode="logprob"))
    first = np.where(batch.order == 1, batch.b, batch.a)
    second = np.where(batch.order == 1, batch.a, batch.b)
    np.testing.assert_allclose(logprob.p_first, agent.first_option_probability(first, second))
    assert engine_class("simulated").reads_text is False and engine_class("simulated_text").reads_text is True


def test_engines_refuse_modes_they_do_not_serve():
    class LogprobOnly(SimulatedEngine):
        modes = ("logprob",)

    with pytest.raises(EngineError, match="does not serve mode 'sample'"):
        LogprobOnly(n_outcomes=3).generate(_batch(3, 4), GenerationSettings())


def _prompts(template, outcomes: list[str], batch: RequestBatch) -> list[str]:
    first = np.where(batch.order == 1, batch.b, batch.a)
    second = np.where(batch.order == 1, batch.a, batch.b)
    return [template.render(outcomes[x], outcomes[y]) for x, y in zip(first.tolist(), second.tolist(), strict=True)]


def test_prompt_reading_engine_reacts_to_wording_not_to_outcomes_or_order():
    outcomes = [f"Outcome {i} happens." for i in range(8)]
    batch = _batch(8, 60)
    paper, exclusive = get_template("paper"), get_template("exclusive")
    engine = create_engine("simulated_text", outcomes=outcomes, wording_sensitivity=1.0, seed=2)
    settings = GenerationSettings(mode="logprob")
    batch.prompts = _prompts(paper, outcomes, batch)
    once, again = engine.generate(batch, settings), engine.generate(batch.take(range(60)), settings)
    np.testing.assert_array_equal(once.p_first, again.p_first)  # the same wording meets the same agent
    # every prompt of one template has one wording, whatever outcomes it shows
    assert len({engine.wording(p, int(x), int(y)) for p, x, y in zip(
        batch.prompts, np.where(batch.order == 1, batch.b, batch.a), np.where(batch.order == 1, batch.a, batch.b),
        strict=True)}) == 1
    batch.prompts = _prompts(exclusive, outcomes, batch)
    assert not np.allclose(engine.generate(batch, settings).p_first, once.p_first)  # a paraphrase moves it
    still = create_engine("simulated_text", outcomes=outcomes, wording_sensitivity=0.0, seed=2)
    plain = SimulatedEngine(n_outcomes=8, seed=2)
    np.testing.assert_allclose(still.generate(batch, settings).p_first, plain.generate(batch, settings).p_first)


def test_wording_shift_has_the_closed_form_correlation():
    """True utilities under two wordings correlate scale^2 / (scale^2 + s^2) in expectation."""
    n, scale, s = 4000, 1.0, 0.75
    engine = PromptReadingSimulatedEngine([f"o{i}" for i in range(n)], wording_sensitivity=s, seed=5, scale=scale)
    u1, u2 = engine.agent_for("wording one", 10).mean, engine.agent_for("wording two", 10).mean
    assert np.corrcoef(u1, u2)[0, 1] == pytest.approx(scale**2 / (scale**2 + s**2), abs=0.03)


def test_prompt_reading_engine_answers_in_the_prompts_labels():
    outcomes = [f"Outcome {i} happens." for i in range(5)]
    template = get_template("paper", labels=("1", "2"))
    batch = _batch(5, 20, labels=("1", "2"))
    batch.prompts = _prompts(template, outcomes, batch)
    engine = create_engine("simulated_text", outcomes=outcomes, refusal_rate=0.0, agent="thurstonian")
    texts = {t for row in engine.generate(batch, GenerationSettings(k=5)).texts.tolist() for t in row}
    assert texts <= {"1", "2"} and texts


def test_prompt_reading_engine_reads_the_system_message_and_refuses_where_its_trigger_phrase_stands():
    outcomes = [f"Outcome {i} happens." for i in range(6)]
    batch = _batch(6, 400)
    batch.prompts = _prompts(get_template("paper"), outcomes, batch)
    engine = create_engine("simulated_text", outcomes=outcomes, wording_sensitivity=1.0, seed=3,
                           refusal_trigger="impartial", trigger_refusal_rate=0.4)
    logprob = GenerationSettings(mode="logprob")
    plain = engine.generate(batch, logprob)
    assert np.all(plain.other_mass == 0)
    framed = RequestBatch(batch.keys, batch.prompts, batch.a, batch.b, batch.order,
                          system_message="You are an impartial judge.")
    moved = engine.generate(framed, logprob)
    assert not np.allclose(moved.p_first / (moved.p_first + moved.p_second), plain.p_first)  # another wording
    np.testing.assert_allclose(moved.other_mass, 0.4)
    codes = [parse_reply(t) for row in engine.generate(framed, GenerationSettings(k=5)).texts.tolist()
             for t in row]
    refused = np.mean([c == REFUSAL for c in codes])
    assert refused == pytest.approx(0.4, abs=0.04)  # 2,000 replies: 4 standard errors
    assert not any(c == REFUSAL for row in engine.generate(batch, GenerationSettings(k=5)).texts.tolist()
                   for c in (parse_reply(t) for t in row))


def test_unknown_engine_arguments_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument 'agnet'"):
        create_engine("simulated", agnet="random")
