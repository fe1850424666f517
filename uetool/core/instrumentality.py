"""Instrumental values (EXPERIMENTS.md s.8): do a model's utilities of intermediate states reflect where they lead?

A Markov process has start states, transitions and terminal states (the paper's shape: two "action" states, a good and
a bad terminal). Seeded rollouts give trajectories; every prefix of a rollout is an option ("Alice gets a
scholarship." and "Alice gets a scholarship. -> Alice graduates."), whose utility the model reveals. Given those
utilities U, rewards R and values V are fitted per process to make V a value function of the empirical process
(V_new[s] = R[s] + gamma * mean V over the observed successors of s, R = 0 on start options), softly tied to U; the
score is the mean |Bellman error| |U[s] - (R[s] + gamma * mean V[succ(s)])|, averaged over processes. Lower means
more instrumental. The "unnatural" control swaps the transition rows of the two action states.

The reference fits R and V with 1,000 Adam steps (lr 0.01) of `mean((V_new - V)^2) + 0.1 mean((V_new - U)^2)`; the
objective is a convex quadratic, so here it is solved exactly (least squares): the converged value of that fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MarkovProcess", "processes_from_json", "unnatural", "rollouts", "prefix_options", "ProcessOptions",
           "fit_rewards_values", "instrumentality_score", "instrumental_utilities", "GAMMA"]

GAMMA = 0.99


@dataclass(frozen=True)
class MarkovProcess:
    name: str
    observations: tuple[str, ...]  # one per state
    terminal: tuple[bool, ...]
    transitions: dict[int, tuple[tuple[int, float], ...]]  # state -> ((next state, probability), ...)
    start: tuple[tuple[int, float], ...]  # (state, probability), ...

    def __post_init__(self) -> None:
        n = len(self.observations)
        if len(self.terminal) != n:
            raise ValueError(f"process {self.name!r}: {n} observations but {len(self.terminal)} terminal flags")
        for state, row in self.transitions.items():
            if not np.isclose(sum(p for _, p in row), 1.0) or any(not 0 <= s < n for s, _ in row):
                raise ValueError(f"process {self.name!r}: transitions of state {state} must be states 0..{n - 1} "
                                 f"with probabilities summing to 1, got {row}")
        if not np.isclose(sum(p for _, p in self.start), 1.0):
            raise ValueError(f"process {self.name!r}: start probabilities must sum to 1, got {self.start}")


def processes_from_json(data: dict) -> list[MarkovProcess]:
    """Processes from the paper's file format, `{"MarkovProcesses": [{name, states: [{id, observation,
    is_terminal}], transitions: {"0": [[next, prob], ...]}, start_state_distribution: [[id, prob], ...]}]}` (the
    format of uetool's own `data/analyses/markov_processes.json` too); errors name the process and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("MarkovProcesses"), list):
        raise ValueError("a Markov process file holds {\"MarkovProcesses\": [...]}")
    out = []
    for i, entry in enumerate(data["MarkovProcesses"]):
        name = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
        try:
            states = sorted(entry["states"], key=lambda st: int(st["id"]))
            if [int(st["id"]) for st in states] != list(range(len(states))):
                raise ValueError("state ids must be 0..n-1")
            out.append(MarkovProcess(
                str(name), tuple(str(st["observation"]) for st in states),
                tuple(bool(st["is_terminal"]) for st in states),
                {int(k): tuple((int(s), float(p)) for s, p in row) for k, row in entry["transitions"].items()},
                tuple((int(s), float(p)) for s, p in entry["start_state_distribution"])))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Markov process {name!r}: {type(err).__name__}: {err}") from None
    return out


def unnatural(process: MarkovProcess, swap: tuple[int, int] = (0, 1)) -> MarkovProcess:
    """The control: the same states and start distribution, the transition rows of the two action states swapped
    (the "good" action now leads where the bad one did)."""
    a, b = swap
    transitions = dict(process.transitions)
    transitions[a], transitions[b] = process.transitions[b], process.transitions[a]
    return MarkovProcess(process.name, process.observations, process.terminal, transitions, process.start)


def rollouts(process: MarkovProcess, n: int = 100, max_steps: int = 10, seed: int = 0) -> list[tuple[int, ...]]:
    """`n` seeded trajectories of states, from a start state until a terminal (or `max_steps` transitions)."""
    rng = np.random.default_rng([seed, 73])
    starts, start_p = zip(*process.start, strict=True)
    out = []
    for _ in range(n):
        state = int(rng.choice(starts, p=start_p))
        path = [state]
        for _ in range(max_steps):
            if process.terminal[state] or state not in process.transitions:
                break
            nxt, p = zip(*process.transitions[state], strict=True)
            state = int(rng.choice(nxt, p=p))
            path.append(state)
        out.append(tuple(path))
    return out


@dataclass
class ProcessOptions:
    """The options of one process: every distinct rollout prefix (sorted), its text, and observed successors."""

    prefixes: list[tuple[int, ...]]
    texts: list[str]
    successors: list[list[int]] = field(default_factory=list)  # option -> option indices, duplicates kept

    @property
    def starts(self) -> np.ndarray:
        return np.array([len(p) == 1 for p in self.prefixes])


def prefix_options(process: MarkovProcess, paths: list[tuple[int, ...]]) -> ProcessOptions:
    """Distinct prefixes of the rollouts, sorted as tuples (the reference's order), each shown as its observations
    joined by " -> "; successors list, per prefix, the prefix one step longer for every rollout step taken from it
    (duplicates kept: their mean is the empirical transition distribution)."""
    prefixes = sorted({path[:i] for path in paths for i in range(1, len(path) + 1)})
    index = {p: i for i, p in enumerate(prefixes)}
    successors: list[list[int]] = [[] for _ in prefixes]
    for path in paths:
        for i in range(len(path) - 1):
            successors[index[path[:i + 1]]].append(index[path[:i + 2]])
    texts = [" -> ".join(process.observations[s] for s in p) for p in prefixes]
    return ProcessOptions(prefixes, texts, successors)


def _successor_mean(options: ProcessOptions) -> np.ndarray:
    n = len(options.prefixes)
    s = np.zeros((n, n))
    for i, succ in enumerate(options.successors):
        for j in succ:
            s[i, j] += 1.0 / len(succ)
    return s


def fit_rewards_values(utilities: np.ndarray, options: ProcessOptions,
                       gamma: float = GAMMA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, V, Bellman errors) minimising mean((V_new - V)^2) + 0.1 mean((V_new - U)^2) with V_new = R + gamma S V
    and R = 0 on start options, solved exactly (least squares, minimum-norm where the optimum is not unique)."""
    u = np.asarray(utilities, np.float64)
    n = u.size
    s = gamma * _successor_mean(options)
    free = np.flatnonzero(~options.starts)  # options with a reward of their own
    # unknowns x = [R_free, V]; residuals sqrt(1/n) (R + (S - I) V) and sqrt(0.1/n) (R + S V - U)
    put_r = np.zeros((n, free.size))
    put_r[free, np.arange(free.size)] = 1.0
    a = np.vstack([np.hstack([put_r, s - np.eye(n)]) / np.sqrt(n),
                   np.hstack([put_r, s]) * np.sqrt(0.1 / n)])
    b = np.concatenate([np.zeros(n), u * np.sqrt(0.1 / n)])
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    r = np.zeros(n)
    r[free] = x[:free.size]
    v = x[free.size:]
    return r, v, u - (r + s @ v)


def instrumentality_score(per_process: list[tuple[np.ndarray, ProcessOptions]], gamma: float = GAMMA) -> dict:
    """Mean over processes of the mean |Bellman error| of their options (lower: more instrumental), with each
    process's loss."""
    losses = [float(np.mean(np.abs(fit_rewards_values(u, opts, gamma)[2]))) for u, opts in per_process]
    return {"instrumentality_score": float(np.mean(losses)), "process_losses": losses}


def instrumental_utilities(options: ProcessOptions, believed: MarkovProcess, end_worth: dict[int, float],
                           gamma: float = GAMMA) -> np.ndarray:
    """A simulated agent's utilities of a process's options: a prefix that reached an end is worth that end
    (`end_worth[state]`); a start is worth gamma x the expected end one step on under the process the agent
    `believed`. Believing the process shown makes the agent instrumental; believing its `unnatural` control makes
    it the opposite. (For the paper's shape, where every action leads straight to an end.)"""
    out = []
    for prefix in options.prefixes:
        state = prefix[-1]
        if state in end_worth:
            out.append(float(end_worth[state]))
        else:
            out.append(gamma * sum(p * end_worth[t] for t, p in believed.transitions[state]))
    return np.asarray(out)
