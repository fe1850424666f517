"""Instrumental values (EXPERIMENTS.md s.8): rollouts, prefix options, the exact R/V fit and the score, against
utilities whose answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from uetool.core.instrumentality import (
    GAMMA,
    MarkovProcess,
    fit_rewards_values,
    instrumental_utilities,
    instrumentality_score,
    prefix_options,
    rollouts,
    unnatural,
)


def _process(p_good_0: float = 0.8, p_good_1: float = 0.3, name: str = "p") -> MarkovProcess:
    return MarkovProcess(name, ("act well", "act badly", "good end", "bad end"), (False, False, True, True),
                         {0: ((2, p_good_0), (3, 1 - p_good_0)), 1: ((2, p_good_1), (3, 1 - p_good_1))},
                         ((0, 0.5), (1, 0.5)))


def test_the_unnatural_control_swaps_the_action_rows():
    process = _process()
    control = unnatural(process)
    assert control.transitions[0] == process.transitions[1] and control.transitions[1] == process.transitions[0]
    assert control.start == process.start and control.observations == process.observations
    with pytest.raises(ValueError, match="probabilities summing to 1"):
        MarkovProcess("bad", ("a", "b"), (False, True), {0: ((1, 0.5),)}, ((0, 1.0),))


def test_rollouts_and_prefixes_follow_the_process():
    process = _process()
    paths = rollouts(process, n=2000, seed=3)
    assert paths == rollouts(process, n=2000, seed=3) and paths != rollouts(process, n=2000, seed=4)
    assert all(p[0] in (0, 1) and process.terminal[p[-1]] and len(p) == 2 for p in paths)
    options = prefix_options(process, paths)
    assert options.prefixes == [(0,), (0, 2), (0, 3), (1,), (1, 2), (1, 3)]  # at most 6 for the paper's shape
    assert options.texts[1] == "act well -> good end"
    good_after_0 = np.mean([options.prefixes[j][-1] == 2 for j in options.successors[0]])
    assert good_after_0 == pytest.approx(0.8, abs=0.03)  # the empirical transition distribution


def _instrumental_utilities(options, process: MarkovProcess, believed: MarkovProcess) -> np.ndarray:
    """Ends worth +1 (good) and -1 (bad); a start worth gamma x the expected end under the believed process."""
    return instrumental_utilities(options, believed, {2: 1.0, 3: -1.0})


def test_a_value_function_of_the_observed_process_scores_zero():
    process = _process()
    options = prefix_options(process, rollouts(process, n=500, seed=1))
    # utilities that are exactly gamma x the empirical mean of the successors' utilities at the starts
    u = np.array([1.0 if p[-1] == 2 else -1.0 for p in options.prefixes])
    for i, succ in enumerate(options.successors):
        if succ:
            u[i] = GAMMA * np.mean(u[succ])
    r, v, bellman = fit_rewards_values(u, options)
    np.testing.assert_allclose(bellman, 0.0, atol=1e-9)
    assert np.all(r[options.starts] == 0.0)


def test_the_exact_fit_is_the_optimum_of_the_references_objective():
    process = _process()
    options = prefix_options(process, rollouts(process, n=300, seed=2))
    u = np.random.default_rng(0).normal(size=len(options.prefixes))
    r, v, _ = fit_rewards_values(u, options)
    n, starts = u.size, options.starts
    s = np.zeros((n, n))
    for i, succ in enumerate(options.successors):
        for j in succ:
            s[i, j] += GAMMA / len(succ)

    def loss(x):
        rr = np.where(starts, 0.0, x[:n])
        vv = x[n:]
        new = rr + s @ vv
        return np.mean((new - vv) ** 2) + 0.1 * np.mean((new - u) ** 2)

    numeric = minimize(loss, np.zeros(2 * n), method="BFGS", options={"gtol": 1e-12})
    assert loss(np.concatenate([r, v])) <= numeric.fun + 1e-10


def test_instrumental_agents_score_better_on_the_process_they_believe():
    processes = [_process(0.8, 0.3, "a"), _process(0.9, 0.2, "b"), _process(0.7, 0.4, "c")]
    scores = {}
    for agent in ("instrumental", "anti_instrumental"):
        for world in ("natural", "unnatural"):
            per_process = []
            for process in processes:
                shown = process if world == "natural" else unnatural(process)
                believed = process if agent == "instrumental" else unnatural(process)
                options = prefix_options(shown, rollouts(shown, n=100, seed=5))
                per_process.append((_instrumental_utilities(options, shown, believed), options))
            scores[agent, world] = instrumentality_score(per_process)["instrumentality_score"]
    assert scores["instrumental", "natural"] < 0.1 < scores["instrumental", "unnatural"]
    assert scores["anti_instrumental", "unnatural"] < 0.1 < scores["anti_instrumental", "natural"]


def test_the_shipped_processes_parse_and_favour_their_first_action():
    import json
    from importlib import resources

    from uetool.core.instrumentality import processes_from_json

    data = json.loads(resources.files("uetool.data").joinpath("analyses/markov_processes.json").read_text())
    processes = processes_from_json(data)
    assert len(processes) == 21 and len({p.name for p in processes}) == 21
    for p in processes:  # the paper's 4-state shape: two actions, a good and a bad end
        assert p.terminal == (False, False, True, True)
        good = {k: dict(row)[2] for k, row in p.transitions.items()}
        assert good[0] > good[1]
        assert len(prefix_options(p, rollouts(p, n=100, seed=0)).prefixes) <= 6
    with pytest.raises(ValueError, match="Markov process 'x': KeyError"):
        processes_from_json({"MarkovProcesses": [{"name": "x", "states": []}]})
    with pytest.raises(ValueError, match="MarkovProcesses"):
        processes_from_json({"processes": []})


def test_instrumental_utilities_in_closed_form():
    process = _process(0.8, 0.3)
    options = prefix_options(process, rollouts(process, n=200, seed=0))
    u = dict(zip(options.prefixes, instrumental_utilities(options, process, {2: 1.0, 3: -1.0}), strict=True))
    assert u[(0,)] == pytest.approx(GAMMA * (0.8 - 0.2)) and u[(1,)] == pytest.approx(GAMMA * (0.3 - 0.7))
    assert u[(0, 2)] == 1.0 and u[(1, 3)] == -1.0
    anti = dict(zip(options.prefixes, instrumental_utilities(options, unnatural(process), {2: 1.0, 3: -1.0}),
                    strict=True))
    assert anti[(0,)] == pytest.approx(u[(1,)])  # it values the good action as the bad one leads
