"""Failed requests are never model behaviour: they are counted apart, not as unparseable replies."""

from __future__ import annotations

import numpy as np

from uetool.core.outcomes import OutcomeSet
from uetool.core.prompts import get_template
from uetool.engines.base import GenerationSettings, RequestBatch, ResultBatch
from uetool.engines.replies import Replies
from uetool.engines.simulated import SimulatedEngine
from uetool.io.store import ResponseStore
from uetool.runtime.elicit import Elicitor


class _OutageEngine(SimulatedEngine):
    """A real simulated engine whose requests about outcome 0 fail, as an API outage fails them."""

    def generate(self, batch: RequestBatch, settings: GenerationSettings) -> ResultBatch:
        out = super().generate(batch, settings)
        failed = ((batch.a == 0) | (batch.b == 0)).tolist()
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


def _elicitor(tmp_path, mode: str) -> Elicitor:
    outcomes = OutcomeSet.from_records([{"description": f"Outcome {i}."} for i in range(6)])
    engine = _OutageEngine(agent="thurstonian", n_outcomes=6, seed=1, refusal_rate=0.0)
    return Elicitor(outcomes, get_template("paper"), GenerationSettings(mode=mode, k=4), pool=_InProcessPool(engine),
                    store=ResponseStore(str(tmp_path), "m"), model_id="sim", revision=None,
                    engine_settings={"engine": "simulated"}, system_message=None)


def test_failed_requests_are_not_unparseable_replies(tmp_path):
    for mode in ("sample", "logprob"):
        elicitor = _elicitor(tmp_path / mode, mode)
        pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4]])
        counts = elicitor(pairs)
        assert elicitor.stats.failed_requests == 4  # two pairs about outcome 0, both orders
        np.testing.assert_array_equal(counts[:2], 0.0)  # no vote, no unparseable reply, no refusal
        assert (counts[2:, :4].sum(1) == 8).all() and (counts[2:, 4:] == 0).all()


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
