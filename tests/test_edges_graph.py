import numpy as np
import pytest

from uetool.core.edges import counts_from_choices, edge_probabilities, position_bias, response_rates
from uetool.core.graph import HOLDOUT, TRAIN, PreferenceGraph, contains, holdout_size, pair_keys, sample_new_pairs
from uetool.core.parsing import FIRST, REFUSAL, SECOND, UNPARSEABLE


def test_counts_from_choices_orientation():
    # original: a shown first; flipped: b shown first, so FIRST there means b was chosen
    orig = np.array([[FIRST, FIRST, SECOND, UNPARSEABLE]])
    flip = np.array([[FIRST, SECOND, SECOND, REFUSAL]])
    assert counts_from_choices(orig, flip).tolist() == [[2, 1, 2, 1, 1, 1]]


def test_policies():
    counts = np.array([[4, 2, 3, 1, 2, 0], [0, 0, 0, 0, 5, 5]], float)
    p, w = edge_probabilities(counts, "distribution")
    assert p[0] == pytest.approx((7 + 1) / 12) and w[0] == 10
    assert p[1] == 0.5 and w[1] == 0  # no valid sample, no evidence
    p, _ = edge_probabilities(counts, "skip")
    assert p[0] == pytest.approx(0.7)
    p1, _ = edge_probabilities(counts, "random", np.random.default_rng(0))
    p2, _ = edge_probabilities(counts, "random", np.random.default_rng(0))
    assert np.array_equal(p1, p2) and 7 / 12 <= p1[0] <= 9 / 12
    with pytest.raises(ValueError, match="needs an rng"):
        edge_probabilities(counts, "random")
    with pytest.raises(ValueError, match="policy"):
        edge_probabilities(counts, "ignore")


def test_position_bias_and_rates():
    counts = np.array([[8, 2, 3, 7, 0, 0]], float)  # first option chosen 8/10 and 7/10
    bias = position_bias(counts)
    assert bias["p_first_original"] == pytest.approx(0.8) and bias["p_first_flipped"] == pytest.approx(0.7)
    assert bias["p_first"] == pytest.approx(0.75)
    rates = response_rates(np.array([[1, 1, 1, 1, 2, 4]], float))
    assert rates == {"unparseable_rate": 0.2, "refusal_rate": 0.4}


def test_holdout_size_rule():
    assert holdout_size(510) == 1000
    assert holdout_size(100) == 247
    assert holdout_size(3) == 0


@pytest.mark.parametrize("n", [30, 2_000, 1_000_000])
def test_sample_new_pairs_distinct_and_excluding(n):
    rng = np.random.default_rng(0)
    first = sample_new_pairs(n, 100, rng)
    keys = np.sort(pair_keys(first[:, 0], first[:, 1], n))
    assert len(np.unique(keys)) == 100 and np.all(first[:, 0] < first[:, 1])
    second = sample_new_pairs(n, 100, rng, exclude=keys)
    assert not contains(keys, pair_keys(second[:, 0], second[:, 1], n)).any()


def test_sample_new_pairs_exhausts_small_space():
    pairs = sample_new_pairs(5, 100, np.random.default_rng(0))
    assert len(pairs) == 10


def test_graph_frame_roundtrip():
    g = PreferenceGraph(4)
    g.add(np.array([[0, 1], [2, 3]]), np.array([[1, 0, 1, 0, 0, 0], [0, 2, 0, 2, 0, 0]]), TRAIN, 0)
    g.add(np.array([[0, 3]]), np.array([[1, 1, 1, 1, 0, 0]]), HOLDOUT, -1)
    frame = g.to_frame()
    assert frame["split"].tolist() == ["train", "train", "holdout"]
    back = PreferenceGraph.from_frame(frame, 4)
    assert np.array_equal(back.counts, g.counts) and np.array_equal(back.split, g.split)
    assert g.select(TRAIN).degrees().tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="canonical"):
        g.add(np.array([[3, 1]]), np.zeros((1, 6)), TRAIN, 1)
