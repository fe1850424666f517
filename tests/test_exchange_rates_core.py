"""Exchange rates (EXPERIMENTS.md s.11) against log-utility agents whose rates are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.exchange_rates import (
    bootstrap_exchange_rates,
    dollar_anchors,
    dollar_values,
    exchange_rate,
    exchange_rates,
    fit_log_utility,
)

GRID = np.array([*range(1, 11), *range(20, 101, 10), *range(200, 1001, 100)], float)  # the paper's 28 lives


def _agent(slopes: dict[str, float], intercepts: dict[str, float], noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    mu, n, group = [], [], []
    for name in slopes:
        mu.extend(slopes[name] * np.log(GRID) + intercepts[name] + noise * rng.standard_normal(len(GRID)))
        n.extend(GRID)
        group.extend([name] * len(GRID))
    return np.array(mu), np.array(n), np.array(group)


def test_the_anchors_are_the_papers_92_amounts():
    d = dollar_anchors()
    assert len(d) == 92 and d[0] == 1 and d[-1] == 10**9
    assert d[:27].tolist() == [1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 40, 50, 70, 80, 100, 120, 150, 190, 230, 280, 350,
                               430, 530, 660, 810, 1000, 1200]


def test_equal_slopes_give_exp_of_the_intercept_gap():
    a = 0.8
    mu, n, group = _agent({"Japan": a, "Nigeria": a, "Germany": a}, {"Japan": 0.0, "Nigeria": 1.2, "Germany": -0.4})
    fit = fit_log_utility(mu, n, group)
    np.testing.assert_allclose(fit.slope, a)
    np.testing.assert_allclose(fit.mse_resid, 0, atol=1e-20)
    out = exchange_rates(fit, "Japan", GRID)
    np.testing.assert_allclose(out["rate"], np.exp(np.array([0.0, 1.2, -0.4]) / a), rtol=1e-12)
    assert out["status"].tolist() == ["ok"] * 3


def test_unequal_slopes_match_the_two_way_geometric_mean_by_hand():
    a_i, b_i, a_j, b_j = 0.5, 0.1, 0.9, -0.3
    ln = np.log(GRID)
    forward = np.exp((b_j - b_i + a_j * ln) / a_i) / GRID          # M_i / N
    backward = GRID / np.exp((b_i - b_j + a_i * ln) / a_j)         # N / M_j
    want = np.exp(np.mean(np.log(np.concatenate([forward, backward]))))
    assert exchange_rate(a_i, b_i, a_j, b_j, GRID) == pytest.approx(want, rel=1e-12)
    assert exchange_rate(a_i, b_i, a_i, b_i, GRID) == pytest.approx(1.0)  # a group against itself


def test_a_negative_slope_is_reported_not_dropped():
    mu, n, group = _agent({"You": 0.6, "A": 0.6, "B": -0.2}, {"You": 0.0, "A": 0.3, "B": 0.0})
    out = exchange_rates(fit_log_utility(mu, n, group), "You", GRID)
    assert out["group"].tolist() == ["You", "A", "B"]
    assert out["status"].tolist() == ["ok", "ok", "negative_slope"] and np.isnan(out["rate"][2])
    flipped = exchange_rates(fit_log_utility(mu, n, group), "B", GRID)  # a pivot without a rate: none has one
    assert set(flipped["status"]) == {"negative_slope"} and np.isnan(flipped["rate"]).all()
    with pytest.raises(ValueError, match="pivot 'C' is not among"):
        exchange_rates(fit_log_utility(mu, n, group), "C", GRID)


def test_bootstrap_cis_cover_the_true_rate_and_shrink_with_noise():
    truth = {"Japan": 0.0, "India": 0.7, "Norway": -0.5}
    rates_true = np.exp(np.array(list(truth.values())) / 0.7)
    hits, widths = 0, {}
    for noise in (0.05, 0.3):
        for seed in range(20):
            mu, n, group = _agent({k: 0.7 for k in truth}, truth, noise=noise, seed=seed)
            out = bootstrap_exchange_rates(mu, n, group, "Japan", GRID, n_boot=300, seed=seed)
            inside = (out["ci_low"][1:] <= rates_true[1:]) & (rates_true[1:] <= out["ci_high"][1:])
            hits += int(inside.sum()) if noise == 0.3 else 0
            widths.setdefault(noise, []).append(np.log(out["ci_high"][1:] / out["ci_low"][1:]).mean())
    assert hits >= 0.8 * 40  # 95% intervals: most of 40 cover the truth
    assert np.mean(widths[0.05]) < np.mean(widths[0.3]) / 3


def test_dollar_values_invert_the_anchor_regression():
    d = dollar_anchors().astype(float)
    mu_d = 0.4 * np.log(d) - 2.0
    mu_x = 0.9 * np.log(GRID) + 1.0
    fit = fit_log_utility(np.concatenate([mu_d, mu_x]), np.concatenate([d, GRID]),
                          np.array(["$"] * len(d) + ["life"] * len(GRID)))
    value = dollar_values(fit, "$", quantity=10)
    # 0.4 ln D - 2 = 0.9 ln 10 + 1  ->  D = exp((0.9 ln 10 + 3) / 0.4)
    assert value[1] == pytest.approx(np.exp((0.9 * np.log(10) + 3.0) / 0.4), rel=1e-9)
    assert value[0] == pytest.approx(10.0)


def test_quantities_must_be_positive_and_groups_need_two_points():
    with pytest.raises(ValueError, match="N > 0"):
        fit_log_utility(np.zeros(2), np.array([0.0, 1.0]), np.array(["a", "a"]))
    fit = fit_log_utility(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 5.0]), np.array(["a", "a", "b"]))
    assert fit.n_points.tolist() == [2, 1] and np.isnan(fit.slope[1])
    assert exchange_rates(fit, "a", GRID)["status"].tolist() == ["ok", "too_few_points"]


def test_fit_draws_carry_the_error_a_groups_utilities_share():
    """Utilities off by one shift per group (its level against the pivot set through few edges): the scatter around
    each line is tiny, so the pairs bootstrap alone misses the truth; replicates of the fit that carry such
    shifts, as an edge bootstrap gives, bring the coverage back (over five draws of the shifts: one alone puts
    29 correlated rates through one pivot, so its coverage is lumpy)."""
    names = [f"g{i}" for i in range(30)]
    slopes, intercepts = dict.fromkeys(names, 0.8), {g: 0.1 * i for i, g in enumerate(names)}
    truth_mu, n, group = _agent(slopes, intercepts)
    index = {g: i for i, g in enumerate(names)}
    gi = np.array([index[g] for g in group])
    true = np.exp((np.array(list(intercepts.values())) - intercepts["g0"]) / 0.8)
    cover = {"plain": [], "carried": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)

        def shifted(size, rng=rng):
            return rng.normal(0, 0.08, size)[..., gi] + rng.normal(0, 0.005, size[:-1] + (len(group),))

        mu = truth_mu + shifted((len(names),))
        draws = mu + shifted((200, len(names)))
        plain = bootstrap_exchange_rates(mu, n, group, "g0", GRID, n_boot=400, seed=0)
        carried = bootstrap_exchange_rates(mu, n, group, "g0", GRID, n_boot=400, seed=0, mu_draws=draws)
        np.testing.assert_allclose(carried["rate"], plain["rate"])  # the point estimate is the fit's
        for name, out in (("plain", plain), ("carried", carried)):
            cover[name].append(np.mean((out["ci_low"][1:] <= true[1:]) & (true[1:] <= out["ci_high"][1:])))
    assert np.mean(cover["plain"]) < 0.5 and np.mean(cover["carried"]) >= 0.88


def test_the_basic_interval_undoes_an_inflation_the_replicates_repeat():
    """The fit steepens an extreme group (here the pivot) by 15%; replicates fitted to the fit steepen it again.
    Percentile intervals sit around the twice-inflated replicates and miss every true rate; the basic interval,
    reflected about the estimate, covers them."""
    names = [f"g{i}" for i in range(10)]
    slopes = {g: 0.6 + 0.04 * i for i, g in enumerate(names)}
    intercepts = {g: 0.1 * i for i, g in enumerate(names)}
    truth_mu, n, group = _agent(slopes, intercepts)
    pivot = group == "g0"
    ln = np.log(n)

    def steepen(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[..., pivot] += 0.15 * slopes["g0"] * (ln[pivot] - ln[pivot].mean())
        return out

    rng = np.random.default_rng(5)
    mu = steepen(truth_mu) + rng.normal(0, 0.01, truth_mu.size)
    draws = steepen(mu + rng.normal(0, 0.01, (200, mu.size))) + rng.normal(0, 0.05, (200, 1)) * (ln - ln.mean())
    true = np.array([float(exchange_rate(slopes["g0"], intercepts["g0"], slopes[g], intercepts[g], GRID))
                     for g in names])
    cover = {}
    for interval in ("percentile", "basic"):
        out = bootstrap_exchange_rates(mu, n, group, "g0", GRID, n_boot=400, seed=0, mu_draws=draws, interval=interval)
        cover[interval] = np.mean((out["ci_low"][1:] <= true[1:]) & (true[1:] <= out["ci_high"][1:]))
    assert cover["percentile"] < 0.3 and cover["basic"] >= 0.9
    with pytest.raises(ValueError, match="basic or percentile"):
        bootstrap_exchange_rates(mu, n, group, "g0", GRID, interval="bca")
