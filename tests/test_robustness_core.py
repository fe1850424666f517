"""Variant comparisons, stability and monotonicity (uetool.core.robustness) against closed-form answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from uetool.core.correlation import pearson
from uetool.core.robustness import (
    compare_variant,
    cross_accuracy,
    flag_reasons,
    monotonicity,
    outcome_stability,
    refusals_per_outcome,
    standardise,
)


def _frame(mean, variance=None):
    n = len(mean)
    return pd.DataFrame({"id": [str(i) for i in range(n)], "description": [f"outcome {i}" for i in range(n)],
                         "mean": mean, "variance": np.full(n, 0.2) if variance is None else variance})


def _edges(mean, variance, rng, n=300):
    a, b = rng.integers(0, len(mean), (2, n))
    keep = a != b
    a, b = a[keep], b[keep]
    p = ndtr((mean[a] - mean[b]) / np.sqrt(variance[a] + variance[b]))
    return pd.DataFrame({"a": a, "b": b, "p_a": p, "split": "holdout"})


def test_an_identical_variant_is_perfectly_stable_and_a_reversed_one_is_flagged():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal(60)
    var = np.full(60, 0.2)
    same = compare_variant(_frame(mu), _frame(mu * 2 + 1), base_edges=_edges(mu, var, rng),
                           variant_edges=_edges(mu, var, rng), base_position=0.5, variant_position=0.52)
    assert same["spearman"] == pytest.approx(1.0) and same["cross_accuracy"] == 1.0
    assert flag_reasons(same) == []
    reversed_ = compare_variant(_frame(mu), _frame(-mu), variant_edges=_edges(-mu, var, rng), base_position=0.5,
                                variant_position=0.9)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["cross_accuracy"] == 0.0
    reasons = flag_reasons(reversed_)
    assert len(reasons) == 2 and "reorders" in reasons[0] and "position" in reasons[1]
    assert reversed_["rank_movers"][0]["rank_base"] in (1.0, 60.0)  # the ends move furthest


def test_stability_averages_to_the_pearson_correlation_of_two_runs():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(500)
    variant = 0.6 * base + 0.8 * rng.standard_normal(500)
    per_outcome, per_category = outcome_stability(np.stack([base, variant]), ["x", "y"] * 250)
    assert per_outcome["stability"].mean() == pytest.approx(pearson(standardise(base), standardise(variant)))
    same, _ = outcome_stability(np.stack([base, base * 3]), ["x"] * 500)
    np.testing.assert_allclose(same["stability"], 1.0)
    assert set(per_category["category"]) == {"x", "y"}


def test_monotonicity_counts_ordered_pairs_within_each_series():
    series = {"money": np.array([0, 1, 2, 3]), "harm": np.array([4, 5, 6])}
    direction = {"money": 1, "harm": -1}
    names = [f"o{i}" for i in range(7)]
    monotone = np.array([0.0, 1, 2, 3, 0, -1, -2])
    assert monotonicity(monotone, series, direction, names)["monotonicity_rate"] == 1.0
    backwards = np.array([3.0, 2, 1, 0, -2, -1, 0])
    out = monotonicity(backwards, series, direction, names)
    assert out["monotonicity_rate"] == 0.0 and out["n_pairs"] == 6 + 3 and len(out["violations"]) == 9
    one_swap = np.array([0.0, 2, 1, 3, 0, -1, -2])  # $ amounts 1 and 2 swapped: 1 of 9 pairs wrong
    assert monotonicity(one_swap, series, direction, names)["monotonicity_rate"] == pytest.approx(8 / 9)


def test_cross_accuracy_leaves_out_ties():
    mean, var = np.array([0.0, 1.0]), np.array([0.1, 0.1])
    assert cross_accuracy(mean, var, np.array([0, 1, 0]), np.array([1, 0, 1]), np.array([0.2, 0.9, 0.5])) == 1.0
    assert np.isnan(cross_accuracy(mean, var, np.array([0]), np.array([1]), np.array([0.5])))


def test_refusals_are_shared_out_to_both_outcomes_of_a_question():
    edges = pd.DataFrame({"a": [0, 0], "b": [1, 2], "n_a_orig": [5, 10], "n_b_orig": [0, 0], "n_a_flip": [5, 10],
                          "n_b_flip": [0, 0], "n_unparseable": [0, 0], "n_refusal": [10, 0]})
    rates = refusals_per_outcome(edges, 4)
    np.testing.assert_allclose(rates[:3], [10 / 40, 10 / 20, 0.0])
    assert np.isnan(rates[3])  # never asked about
