"""Variant comparisons, stability and monotonicity (uetool.core.robustness) against closed-form answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from uetool.core.correlation import pearson
from uetool.core.robustness import (
    analysis_flag_reasons,
    compare_exchange_rates,
    compare_political,
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


def _rates(rates, ci=0.2):
    rates = np.asarray(rates, float)
    n = len(rates)
    return pd.DataFrame({"run": "countries/x.default", "group": [f"g{i}" for i in range(n)] + ["pivot"],
                         "is_pivot": [False] * n + [True], "status": ["ok"] * (n + 1),
                         "rate": list(rates) + [1.0], "rate_ci_low": list(rates * (1 - ci)) + [1.0],
                         "rate_ci_high": list(rates * (1 + ci)) + [1.0]})


def test_exchange_rates_doubled_by_a_variant_keep_their_order_and_move_by_ln_2():
    base = _rates([0.5, 1.5, 3.0, 8.0])
    same = compare_exchange_rates(base, base)
    assert same["rate_spearman"] == pytest.approx(1.0) and same["rate_abs_log_ratio"] == 0.0
    assert same["rate_in_base_ci"] == 1.0 and same["n_rates"] == 4 and analysis_flag_reasons("exchange_rates",
                                                                                             same) == []
    doubled = compare_exchange_rates(base, _rates([1.0, 3.0, 6.0, 16.0]))
    assert doubled["rate_spearman"] == pytest.approx(1.0)
    assert doubled["rate_log_ratio"] == pytest.approx(np.log(2)) and doubled["rate_in_base_ci"] == 0.0
    tripled = compare_exchange_rates(base, _rates([1.5, 4.5, 9.0, 24.0]))
    assert analysis_flag_reasons("exchange_rates", tripled) == ["moves the rates by a factor 3.0 on average"]
    reversed_ = compare_exchange_rates(base, _rates([8.0, 3.0, 1.5, 0.5]))
    assert reversed_["rate_spearman"] == pytest.approx(-1.0)
    assert "reorders the exchange rates" in analysis_flag_reasons("exchange_rates", reversed_)[0]
    unmatched = _rates([1.0, 2.0, 3.0, 4.0]).assign(status="negative_slope")  # no rate: nothing to compare
    assert compare_exchange_rates(base, unmatched)["n_rates"] == 0


def _political(utilities, pc1, nearest="A"):
    items = pd.DataFrame({"kind": ["ai"] * len(utilities), "policy": [f"p{i}" for i in range(len(utilities))],
                          "utility": utilities})
    return {"ai_pc1": pc1, "ai_pc2": 0.0, "nearest_entity": nearest}, items


def test_a_political_position_that_crosses_pc1_or_reorders_policies_is_flagged():
    base = _political([1.0, 2.0, 3.0, 4.0, 5.0], -1.2)
    near = compare_political(*base, *_political([1.1, 2.0, 3.2, 4.0, 5.5], -1.0))
    assert near["policy_spearman"] == pytest.approx(1.0) and near["ai_pc1_shift"] == pytest.approx(0.2)
    assert near["same_nearest"] and analysis_flag_reasons("political_values", near) == []
    crossed = compare_political(*base, *_political([5.0, 4.0, 3.0, 2.0, 1.0], 1.3, nearest="B"))
    assert crossed["policy_spearman"] == pytest.approx(-1.0) and not crossed["same_nearest"]
    reasons = analysis_flag_reasons("political_values", crossed)
    assert len(reasons) == 2 and "-1.20 -> +1.30" in reasons[1]
    wobble = compare_political(*_political([1.0, 2.0, 3.0, 4.0], 0.1), *_political([1.0, 2.0, 3.0, 4.0], -0.1))
    assert analysis_flag_reasons("political_values", wobble) == []  # a sign change near 0 is no move


def test_a_variant_that_makes_the_model_refuse_is_flagged_either_way():
    assert flag_reasons({"refusal_shift": 0.3}) == ["changes refusals (+30 points of the replies)"]
    assert flag_reasons({"refusal_shift": -0.2}) == ["changes refusals (-20 points of the replies)"]
    assert flag_reasons({"refusal_shift": 0.05}) == [] and flag_reasons({"refusal_shift": float("nan")}) == []
