"""Time discounting (EXPERIMENTS.md s.12) against exponential and hyperbolic discounters with known k."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.discounting import (
    amount_multipliers,
    delayed_amounts,
    exponential,
    fit_discount_curves,
    fitted_shares,
    hyperbolic,
    indifference_points,
    time_delays,
)


def _discounter(curve, k: float, n: int = 40, sharpness: float = 4.0, seed: int = 0):
    """Counts of a discounter choosing the delayed amount with P = sigmoid(s ln(m D(t))): indifferent at m = 1/D(t)."""
    t, m = time_delays().astype(float), amount_multipliers()
    logit = sharpness * (np.log(m)[None, :] + np.log(curve(t, k))[:, None])
    p = 1 / (1 + np.exp(-logit))
    rng = np.random.default_rng(seed)
    return t, m, rng.binomial(n, p), np.full(p.shape, n), p


def test_the_grid_is_the_papers():
    t = time_delays()
    assert len(t) == 60 and t[0] == 0 and t[-1] == 60 and 59 not in t and 58 in t
    amounts = delayed_amounts()
    assert len(amounts) == 30 and amounts[0] == 500 and amounts[-1] == 30000 and amounts[6] == 1200


def test_exact_shares_give_the_exact_indifference_points():
    t, m, _, total, p = _discounter(hyperbolic, 0.05)
    star = indifference_points(m, p * 1000, np.full(p.shape, 1000.0))
    want = 1 / hyperbolic(t, 0.05)
    np.testing.assert_allclose(star[want < m[-1]], want[want < m[-1]], rtol=1e-5)
    interp = indifference_points(m, p * 1000, np.full(p.shape, 1000.0), method="interpolate")
    np.testing.assert_allclose(interp[want < m[-1]], want[want < m[-1]], rtol=0.02)


@pytest.mark.parametrize("curve, k, name", [(exponential, 0.03, "exponential"), (hyperbolic, 0.08, "hyperbolic")])
def test_each_discounter_is_recovered_and_its_family_wins(curve, k, name):
    t, m, delayed, total, _ = _discounter(curve, k, seed=1)
    discount = 1 / indifference_points(m, delayed, total)
    fit = fit_discount_curves(t, discount)
    assert fit.winner == name
    got = fit.k_exponential if name == "exponential" else fit.k_hyperbolic
    assert got == pytest.approx(k, rel=0.1)
    assert max(fit.r2_exponential, fit.r2_hyperbolic) > 0.95
    assert fit.n_delays >= 50


def test_shares_that_never_cross_one_half_leave_the_point_undefined():
    m = amount_multipliers()
    always_now = np.zeros((2, 30))
    always_now[1, 20:] = 30  # the second delay crosses
    star = indifference_points(m, always_now, np.full((2, 30), 30.0))
    assert np.isnan(star[0]) and np.isfinite(star[1])
    falling = indifference_points(m, np.linspace(30, 0, 30)[None], np.full((1, 30), 30.0))
    assert np.isnan(falling[0])  # more money later chosen less often: no indifference point
    with pytest.raises(ValueError, match="logistic or interpolate"):
        indifference_points(m, always_now, np.full((2, 30), 30.0), method="spline")


def test_a_patient_agent_gets_k_zero_and_too_few_points_are_undetermined():
    fit = fit_discount_curves(np.arange(10), np.ones(10))
    assert fit.k_exponential == 0 and fit.k_hyperbolic == 0
    assert fit_discount_curves(np.arange(3), np.array([1.0, np.nan, np.nan])).winner == "undetermined"


def test_fitted_shares_recover_the_logistic_and_give_every_cell_variance():
    t, m, counts, total, p = _discounter(exponential, 0.03, n=40, sharpness=2.0)
    fitted = fitted_shares(m, counts, total)
    # the discounter's P is itself logistic in ln m per delay: the fit recovers it within sampling error
    assert np.max(np.abs(fitted - p)) < 0.1 and np.mean(np.abs(fitted - p)) < 0.02
    # cells answered 0 of 40 times still get a share above 0 (so a bootstrap redraws them), and below the observed
    # share's neighbours nearer the indifference point
    zero = counts == 0
    assert zero.any() and np.all(fitted[zero] > 0) and np.all(fitted[zero] < 0.2)
