"""Failed requests are never model behaviour nor answers: counted apart (not as unparseable replies), stored as
records of the attempt, asked again up to `max_attempts`, and an outage stops the job instead of thinning edges."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.outcomes import OutcomeSet
from uetool.core.prompts import get_template
from uetool.engines.base import GenerationSettings, RequestBatch, ResultBatch
from uetool.engines.replies import Replies
from uetool.engines.simulated import SimulatedEngine
from uetool.io.store import ResponseStore
from uetool.runtime.elicit import ElicitationFailed, Elicitor


class _OutageEngine(SimulatedEngine):
    """A real simulated engine whose requests about outcome 0 fail, as an API outage fails them."""

    outage = True  # set False: the API is back
    everything = False  # set True: every request fails

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        out = super().generate(batch, settings)
        self.asked = getattr(self, "asked", []) + list(batch.keys)
        down = np.full(len(batch), self.everything) | (batch.a == 0) | (batch.b == 0)
        failed = (down & self.outage).tolist()
        texts = [[None] * settings.k if f else row for f, row in zip(failed, out.texts.tolist(), strict=True)]
        nan = np.where(failed, np.nan, 1.0)
        return ResultBatch(out.keys, out.a, out.b, out.order, Replies.from_lists(texts), out.p_first * nan,
                           out.p_second * nan, out.other_mass * nan, ["HTTP 503" if f else e for f, e in
                                                                      zip(failed, out.errors, strict=True)])


class _InProcessPool:
    """The pool's interface over one engine in this process (the Ray pool is tested in the ray tier)."""

    reads_text = False

    def __init__(self, engine) -> None:
        self.engine = engine

    def run(self, batch, settings, on_shard=None):
        out = self.engine.generate(batch, settings)
        if on_shard is not None:
            on_shard(out)
        return out


def _elicitor(tmp_path, mode: str, engine: _OutageEngine | None = None, **limits) -> Elicitor:
    outcomes = OutcomeSet.from_records([{"description": f"Outcome {i}."} for i in range(6)])
    engine = engine or _OutageEngine(agent="thurstonian", n_outcomes=6, seed=1, refusal_rate=0.0)
    return Elicitor(outcomes, get_template("paper"), GenerationSettings(mode=mode, k=4), pool=_InProcessPool(engine),
                    store=ResponseStore(str(tmp_path), "m"), model_id="sim", revision=None,
                    engine_settings={"engine": "simulated"}, system_message=None, **limits)


def test_failed_requests_are_not_unparseable_replies(tmp_path):
    for mode in ("sample", "logprob"):
        elicitor = _elicitor(tmp_path / mode, mode, max_failure_rate=1.0)
        pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4]])
        counts = elicitor(pairs)
        assert elicitor.stats.failed_requests == 4  # two pairs about outcome 0, both orders
        np.testing.assert_array_equal(counts[:2], 0.0)  # no vote, no unparseable reply, no refusal
        assert (counts[2:, :4].sum(1) == 8).all() and (counts[2:, 4:] == 0).all()


PAIRS = np.array([[0, 1], [0, 2], [1, 2], [3, 4], [2, 5]])


@pytest.mark.parametrize("mode", ["sample", "logprob"])
def test_an_outage_stops_the_call_and_the_next_run_asks_only_the_failures(tmp_path, mode):
    uninterrupted = _elicitor(tmp_path / "clean", mode)
    uninterrupted.pool.engine.outage = False
    expected = uninterrupted(PAIRS)

    first = _elicitor(tmp_path / "run", mode)
    with pytest.raises(ElicitationFailed, match=r"4 of 10 requests failed.*HTTP 503.*run the job again"):
        first(PAIRS)
    healthy = _OutageEngine(agent="thurstonian", n_outcomes=6, seed=1, refusal_rate=0.0)
    healthy.outage = False
    second = _elicitor(tmp_path / "run", mode, engine=healthy)  # a new run on the same store
    np.testing.assert_array_equal(second(PAIRS), expected)
    failed_keys = [k for k, (a, b) in zip(second.requests_for(PAIRS, render=False).keys,
                                          np.repeat(PAIRS, 2, axis=0), strict=True) if 0 in (a, b)]
    assert sorted(healthy.asked) == sorted(failed_keys)  # exactly the failed requests, nothing answered twice
    assert second.stats.failed_requests == 0 and second.stats.reused == 6


def test_a_request_is_given_up_after_max_attempts_and_counted(tmp_path):
    elicitor = _elicitor(tmp_path, "sample", max_attempts=2, max_failure_rate=1.0)
    engine = elicitor.pool.engine
    for call in range(3):
        engine.asked = []
        counts = elicitor(PAIRS)
        np.testing.assert_array_equal(counts[:2], 0.0)  # the failed edges hold no reply, whatever the attempt
        assert len(engine.asked) == [10, 4, 0][call]  # all; the failed 4 again (attempt 2); then given up
    assert elicitor.stats.failed_requests == 12 and elicitor.stats.given_up == 4
    assert elicitor.stats.errors == ["HTTP 503"]


def test_failures_within_the_threshold_go_on(tmp_path):
    elicitor = _elicitor(tmp_path, "sample", max_failure_rate=0.5)
    elicitor(PAIRS)  # 4 of 10 failed: under half
    elicitor.pool.engine.everything = True
    with pytest.raises(ElicitationFailed, match="6 of 6 requests failed"):
        elicitor(np.array([[1, 3], [2, 4], [3, 5]]))


class _OffLabelEngine(SimulatedEngine):
    """Logprob answers that put 60% of the next-token mass on neither label (a model that would say 'The ...')."""

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        out = super().generate(batch, settings)
        return ResultBatch(out.keys, out.a, out.b, out.order, out.texts, 0.4 * out.p_first, 0.4 * out.p_second,
                           np.full(len(batch), 0.6), out.errors)


def test_logprob_off_label_mass_follows_the_unparseable_policy(tmp_path):
    from uetool.core.edges import edge_probabilities

    outcomes = OutcomeSet.from_records([{"description": f"Outcome {i}."} for i in range(6)])
    plain, off = (cls(agent="thurstonian", n_outcomes=6, seed=1, refusal_rate=0.0)
                  for cls in (SimulatedEngine, _OffLabelEngine))
    pairs = np.array([[0, 1], [2, 5], [3, 4]])
    counts = {}
    for name, engine in (("plain", plain), ("off", off)):
        elicitor = Elicitor(outcomes, get_template("paper"), GenerationSettings(mode="logprob", k=10),
                            pool=_InProcessPool(engine), store=ResponseStore(str(tmp_path / name), "m"),
                            model_id=name, revision=None, engine_settings={"engine": name}, system_message=None)
        counts[name] = elicitor(pairs)
    np.testing.assert_allclose(counts["off"][:, 4], 10 * 0.6 * 2)  # the off-label mass, as unparseable replies
    p_plain, _ = edge_probabilities(counts["plain"], "distribution")
    p_skip, w_skip = edge_probabilities(counts["off"], "skip")
    np.testing.assert_allclose(p_skip, p_plain)  # skip: renormalised over the two labels
    np.testing.assert_allclose(w_skip, 0.4 * 20)  # and the edge weighs what the labels carry
    p_dist, _ = edge_probabilities(counts["off"], "distribution")
    np.testing.assert_allclose(p_dist, 0.4 * p_plain + 0.3)  # distribution: half of the off-label mass each way


def test_off_label_majority_rate():
    from uetool.core.edges import off_label_majority_rate

    counts = np.array([[2, 2, 2, 2, 12, 0], [8, 2, 6, 4, 0, 0], [0, 0, 0, 0, 0, 0]], float)
    assert off_label_majority_rate(counts) == 0.5 and np.isnan(off_label_majority_rate(np.zeros((0, 6))))
