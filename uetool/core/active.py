"""Active learning of which pairs to ask (METHOD.md section 3), scaling to 100,000+ outcomes.

Schedule (the reference's, EXPERIMENTS.md s.3.6): ask the held-out pairs, then a random 2-regular graph topped up
to n pairs where the holdout took some, fit; then rounds that pick unasked pairs in the bottom P% of
|mu_a - mu_b| AND the bottom Q% of degree(a) + degree(b), both percentiles over the unasked pairs, widening P and
Q by 1.5x (five tries in all) when too few qualify and filling the rest at random; refit (warm start) after every
round; stop at the budget edge_multiplier * n * log2(n) training pairs. Pseudolabels are off by default (the
reference has them on: `fit=paper`); README "Active-learning schedule" has the measurement behind each choice.

Scaling: the quantile thresholds come from every pair when n is small and from a seeded sample of pairs otherwise;
qualifying pairs are found by walking neighbours in mu-order among nodes whose degree can still qualify, so the
work per round is O(n * window), never O(n^2).

The loop drives any `ask(pairs) -> counts` callable and is resumable: each round's randomness is derived from
(seed, round), and `ActiveLearningState` (bytes via `to_bytes`) is handed to `on_round` after every round.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .edges import position_bias, response_rates
from .graph import HOLDOUT, TRAIN, PreferenceGraph, contains, holdout_size, keys_to_pairs, pair_keys, sample_new_pairs
from .metrics import accuracy, accuracy_items, average_confidence, bootstrap_mean_ci, log_loss, log_loss_items
from .progress import progress_bar
from .thurstonian import ThurstonianFit, fit_thurstonian

__all__ = ["ActiveLearningConfig", "ActiveLearningState", "ActiveLearningResult", "run_active_learning",
           "initial_regular_graph", "select_pairs", "compute_metrics", "plan_holdout"]

AskFn = Callable[[np.ndarray], np.ndarray]
# any function with fit_thurstonian's signature (the runtime passes a Ray Train fit for fit.backend=ray_train)
FitFn = Callable[..., ThurstonianFit]


@dataclass
class ActiveLearningConfig:
    edge_multiplier: float = 2.0
    initial_degree: int = 2
    pairs_per_round: int | None = 500  # None: scale with n (budget spread over `target_rounds`, at least 500)
    target_rounds: int = 18
    p_percent: float = 10.0
    q_percent: float = 20.0
    widen_factor: float = 1.5
    max_widen: int = 4  # widenings after the first try: five tries in all, as the reference
    quantile_pool: str = "remaining"  # P/Q percentiles over the "remaining" unasked pairs (the reference) or "all"
    top_up_initial: bool = True  # top the initial graph up to n*degree/2 pairs when the holdout took some
    pair_selection: str = "active"  # "active" (the schedule above) or "random" (uniform unasked pairs: a baseline)
    holdout_fraction: float = 0.05
    holdout_max: int = 1000
    unparseable_policy: str = "distribution"
    use_pseudolabels: bool = False
    pseudolabel_threshold: float = 0.95
    pseudolabel_candidates: int | None = 100_000  # None: every unasked pair (the reference; small n only)
    quantile_sample: int = 1_000_000
    fit_tol: float = 1e-9
    fit_max_iter: int = 2000
    prior_log_var: float = 1.0
    prior_mean: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("edge_multiplier", self.edge_multiplier > 0, "> 0"),
                  ("initial_degree", self.initial_degree >= 2 and self.initial_degree % 2 == 0, "an even number >= 2"),
                  ("pairs_per_round", self.pairs_per_round is None or self.pairs_per_round >= 1, ">= 1 or null"),
                  ("p_percent", 0 < self.p_percent <= 100, "in (0, 100]"),
                  ("q_percent", 0 < self.q_percent <= 100, "in (0, 100]"),
                  ("holdout_fraction", 0 <= self.holdout_fraction < 1, "in [0, 1)"),
                  ("pseudolabel_threshold", 0.5 < self.pseudolabel_threshold < 1, "in (0.5, 1)"),
                  ("unparseable_policy", self.unparseable_policy in ("distribution", "skip", "random"),
                   "one of distribution, skip, random"),
                  ("max_widen", self.max_widen >= 0, ">= 0"),
                  ("widen_factor", self.widen_factor > 1, "> 1"),
                  ("quantile_pool", self.quantile_pool in ("all", "remaining"), "one of all, remaining"),
                  ("pair_selection", self.pair_selection in ("active", "random"), "one of active, random"),
                  ("pseudolabel_candidates", self.pseudolabel_candidates is None or self.pseudolabel_candidates >= 1,
                   ">= 1 or null")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"active learning `{name}` must be {rule}, got {getattr(self, name)!r}")

    def budget(self, n_outcomes: int) -> int:
        """Target number of training pairs, capped by the pairs that exist outside the holdout."""
        target = int(math.ceil(self.edge_multiplier * n_outcomes * math.log2(n_outcomes)))
        available = n_outcomes * (n_outcomes - 1) // 2 - self.holdout(n_outcomes)
        return min(target, available)

    def holdout(self, n_outcomes: int) -> int:
        return holdout_size(n_outcomes, self.holdout_fraction, self.holdout_max)

    def round_size(self, n_outcomes: int) -> int:
        if self.pairs_per_round is not None:
            return int(self.pairs_per_round)
        remaining = self.budget(n_outcomes) - n_outcomes
        return max(500, int(math.ceil(remaining / self.target_rounds)))


@dataclass
class ActiveLearningState:
    """Everything needed to resume the loop after any completed round."""

    n_outcomes: int
    seed: int
    holdout_keys: np.ndarray  # sorted keys of the planned held-out pairs
    graph: PreferenceGraph
    next_round: int = 0  # -1 until the holdout has been asked
    theta: np.ndarray | None = None
    pseudo_a: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    pseudo_b: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    pseudo_label: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    finished: bool = False

    def to_bytes(self) -> bytes:
        g = self.graph
        buf = io.BytesIO()
        meta = {"n_outcomes": self.n_outcomes, "seed": self.seed, "next_round": self.next_round,
                "finished": self.finished, "version": 1}
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            holdout_keys=self.holdout_keys, a=g.a, b=g.b, counts=g.counts, split=g.split,
                            round=g.round, theta=np.empty(0) if self.theta is None else self.theta,
                            pseudo_a=self.pseudo_a, pseudo_b=self.pseudo_b, pseudo_label=self.pseudo_label)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ActiveLearningState:
        z = np.load(io.BytesIO(data))
        meta = json.loads(z["meta"].tobytes().decode())
        graph = PreferenceGraph(meta["n_outcomes"], z["a"], z["b"], z["counts"], z["split"], z["round"])
        theta = z["theta"] if z["theta"].size else None
        return cls(meta["n_outcomes"], meta["seed"], z["holdout_keys"], graph, meta["next_round"], theta,
                   z["pseudo_a"], z["pseudo_b"], z["pseudo_label"], meta["finished"])


@dataclass
class ActiveLearningResult:
    fit: ThurstonianFit
    graph: PreferenceGraph
    metrics: dict
    state: ActiveLearningState


# scoring every unasked pair is the reference's pseudolabel pool: fine at the paper's n (130k pairs at n=510)
_ALL_PSEUDOLABEL_LIMIT = 20_000_000


def _round_rng(seed: int, round_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 7, round_index + 1])


def plan_holdout(n_outcomes: int, config: ActiveLearningConfig) -> np.ndarray:
    """Sorted keys of the held-out pairs, fixed by the seed, drawn without materialising all pairs."""
    pairs = sample_new_pairs(n_outcomes, config.holdout(n_outcomes), np.random.default_rng([config.seed, 3]))
    return np.sort(pair_keys(pairs[:, 0], pairs[:, 1], n_outcomes))


def initial_regular_graph(n_outcomes: int, degree: int, rng: np.random.Generator,
                          exclude: np.ndarray | None = None, top_up: bool = False) -> np.ndarray:
    """Union of degree/2 random Hamiltonian cycles (a random `degree`-regular graph), minus excluded pairs; with
    `top_up`, random other pairs (none excluded) bring it back to n * degree / 2 pairs, as the reference does."""
    keys = []
    for _ in range(degree // 2):
        perm = rng.permutation(n_outcomes)
        keys.append(pair_keys(perm, np.roll(perm, -1), n_outcomes)[: n_outcomes if n_outcomes > 2 else 1])
    keys = np.unique(np.concatenate(keys))
    if exclude is not None:
        keys = keys[~contains(exclude, keys)]
    if top_up:
        wanted = n_outcomes * degree // 2 if n_outcomes > 2 else 1
        taken = keys if exclude is None else np.union1d(exclude, keys)
        fill = sample_new_pairs(n_outcomes, wanted - keys.size, rng, exclude=taken)
        keys = np.sort(np.concatenate([keys, pair_keys(fill[:, 0], fill[:, 1], n_outcomes)]))
    return keys_to_pairs(keys, n_outcomes)


def _quantile_sample(n_outcomes: int, size: int, rng: np.random.Generator,
                     asked_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs the percentiles are taken over: all of them when few, else a seeded sample; minus `asked_keys`."""
    total = n_outcomes * (n_outcomes - 1) // 2
    if total <= size:
        i, j = np.triu_indices(n_outcomes, k=1)
    else:
        i = rng.integers(0, n_outcomes, size)
        j = rng.integers(0, n_outcomes - 1, size)
        j = j + (j >= i)  # uniform over j != i
    if asked_keys is not None and asked_keys.size:
        keep = ~contains(asked_keys, pair_keys(i, j, n_outcomes))
        if keep.any():  # with nothing left the thresholds fall back to all pairs (the fill does the rest)
            i, j = i[keep], j[keep]
    return i, j


def _window_candidates(mu: np.ndarray, degree: np.ndarray, t_mu: float, t_deg: float, cap: int) -> np.ndarray:
    """Keys of pairs with |mu_a - mu_b| <= t_mu and deg_a + deg_b <= t_deg, walking mu-order neighbours.

    Stops early once `cap` candidates are found (then nearer neighbours are favoured, which is what active
    learning wants anyway).
    """
    n = mu.size
    eligible = np.flatnonzero(degree <= t_deg - degree.min())
    if eligible.size < 2:
        return np.empty(0, np.int64)
    order = eligible[np.argsort(mu[eligible], kind="stable")]
    mu_sorted, deg_sorted = mu[order], degree[order]
    found, total = [], 0
    for k in range(1, order.size):
        ok = (mu_sorted[k:] - mu_sorted[:-k]) <= t_mu
        if not ok.any():
            break  # gaps only grow with k
        ok &= (deg_sorted[k:] + deg_sorted[:-k]) <= t_deg
        keys = pair_keys(order[:-k][ok], order[k:][ok], n)
        found.append(keys)
        total += keys.size
        if total >= cap:
            break
    return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


def select_pairs(mu: np.ndarray, degree: np.ndarray, asked_keys: np.ndarray, m: int, rng: np.random.Generator,
                 config: ActiveLearningConfig) -> np.ndarray:
    """`m` new pairs: low |mu difference| and low degree sum, widened as needed, then random fill."""
    n = mu.size
    if config.pair_selection == "random":
        return sample_new_pairs(n, m, rng, exclude=asked_keys)
    i, j = _quantile_sample(n, config.quantile_sample, rng,
                            asked_keys if config.quantile_pool == "remaining" else None)
    gaps, degree_sums = np.abs(mu[i] - mu[j]), degree[i] + degree[j]
    p, q = config.p_percent, config.q_percent
    cap = max(20 * m, 200_000)
    candidates = np.empty(0, np.int64)
    for _ in range(config.max_widen + 1):
        t_mu = float(np.quantile(gaps, min(p, 100.0) / 100.0))
        t_deg = float(np.quantile(degree_sums, min(q, 100.0) / 100.0))
        candidates = _window_candidates(mu, degree, t_mu, t_deg, cap)
        candidates = candidates[~contains(asked_keys, candidates)]
        if candidates.size >= m:
            return keys_to_pairs(np.sort(rng.choice(candidates, size=m, replace=False)), n)
        p, q = p * config.widen_factor, q * config.widen_factor
    excluded = np.union1d(asked_keys, candidates)
    fill = sample_new_pairs(n, m - candidates.size, rng, exclude=excluded)
    fill_keys = pair_keys(fill[:, 0], fill[:, 1], n)
    return keys_to_pairs(np.sort(np.concatenate([candidates, fill_keys])), n)


def _fit_train(state: ActiveLearningState, config: ActiveLearningConfig, with_pseudolabels: bool,
               fit_fn: FitFn = fit_thurstonian) -> ThurstonianFit:
    train = state.graph.select(TRAIN)
    p, w = train.probabilities(config.unparseable_policy, np.random.default_rng([config.seed, 11]))
    a, b = train.a, train.b
    if with_pseudolabels and state.pseudo_a.size:
        pseudo_w = np.full(state.pseudo_a.size, float(np.median(w)) if w.size else 1.0)
        a = np.concatenate([a, state.pseudo_a.astype(np.int64)])
        b = np.concatenate([b, state.pseudo_b.astype(np.int64)])
        p = np.concatenate([p, state.pseudo_label.astype(np.float64)])
        w = np.concatenate([w, pseudo_w])
    return fit_fn(state.n_outcomes, a, b, p, w, init=state.theta, prior_log_var=config.prior_log_var,
                  prior_mean=config.prior_mean, tol=config.fit_tol, max_iter=config.fit_max_iter)


def compute_metrics(fit: ThurstonianFit, graph: PreferenceGraph, config: ActiveLearningConfig) -> dict:
    """The metrics.json keys (README), on real edges only."""
    rng = np.random.default_rng([config.seed, 11])
    train, hold = graph.select(TRAIN), graph.select(HOLDOUT)
    p_train, _ = train.probabilities(config.unparseable_policy, rng)
    p_hold, _ = hold.probabilities(config.unparseable_policy, rng)
    # an edge whose every request failed holds no reply: no evidence to score the fit on (its weight is 0 in the fit)
    replied_train, replied_hold = train.counts.sum(1) > 0, hold.counts.sum(1) > 0
    p_train, p_hold = p_train[replied_train], p_hold[replied_hold]
    pred_train = fit.predict(train.a[replied_train], train.b[replied_train])
    pred_hold = fit.predict(hold.a[replied_hold], hold.b[replied_hold])
    bias = position_bias(graph.counts)
    return {
        "n_outcomes": int(graph.n_outcomes),
        "n_edges": int(len(train)),
        "n_holdout_edges": int(len(hold)),
        # edges with no reply at all (every request failed, given up after elicitation.max_attempts): excluded
        "failed_edges": int((~replied_train).sum() + (~replied_hold).sum()),
        "holdout_accuracy": accuracy(pred_hold, p_hold),
        "holdout_log_loss": log_loss(pred_hold, p_hold),
        # 95% percentile-bootstrap CIs over held-out edges (metrics.bootstrap_mean_ci)
        "holdout_accuracy_ci": bootstrap_mean_ci(accuracy_items(pred_hold, p_hold), seed=config.seed),
        "holdout_log_loss_ci": bootstrap_mean_ci(log_loss_items(pred_hold, p_hold), seed=config.seed),
        "train_accuracy": accuracy(pred_train, p_train),
        "train_log_loss": log_loss(pred_train, p_train),
        # over every edge asked so far (training and holdout); a job adds its triads (core.transitivity)
        "average_confidence": average_confidence(np.concatenate([p_train, p_hold])),
        # measured on asked triads by core.transitivity.measure_transitivity, not on the training graph
        "log10_cycle_probability": float("nan"),
        "hard_cycle_rate": float("nan"),
        "n_triads": 0,
        **response_rates(graph.counts),
        "position_bias": bias["p_first"],
        "position_bias_original": bias["p_first_original"],
        "position_bias_flipped": bias["p_first_flipped"],
        "fit_converged": bool(fit.converged),
        "fit_iterations": int(fit.n_iter),
        "seed": int(config.seed),
    }


def run_active_learning(n_outcomes: int, ask: AskFn, config: ActiveLearningConfig | None = None, *,
                        state: ActiveLearningState | None = None,
                        on_round: Callable[[ActiveLearningState], None] | None = None,
                        progress: bool = False, fit_fn: FitFn | None = None) -> ActiveLearningResult:
    """Run (or resume from `state`) holdout + active learning against `ask`, then fit and evaluate.

    `ask(pairs)` gets an (m, 2) int64 array of pairs (a < b) and returns an (m, 6) COUNT_COLUMNS array.
    `on_round(state)` is called after every completed round (checkpoint there). `fit_fn` replaces the local
    `fit_thurstonian` (same signature and result), e.g. with a distributed fit.
    """
    config = config or ActiveLearningConfig()
    fit_fn = fit_fn or fit_thurstonian
    if n_outcomes < 2:
        raise ValueError(f"active learning needs at least 2 outcomes, got {n_outcomes}")
    if state is None:
        state = ActiveLearningState(n_outcomes, config.seed, plan_holdout(n_outcomes, config),
                                    PreferenceGraph(n_outcomes), next_round=-1)
    elif state.n_outcomes != n_outcomes or state.seed != config.seed:
        raise ValueError(f"checkpoint is for n_outcomes={state.n_outcomes}, seed={state.seed}; "
                         f"this run has n_outcomes={n_outcomes}, seed={config.seed}")
    budget, round_size = config.budget(n_outcomes), config.round_size(n_outcomes)
    bar = progress_bar(progress, budget + state.holdout_keys.size, desc="pairs asked", unit="pair",
                       initial=len(state.graph))

    def asked(pairs: np.ndarray) -> np.ndarray:
        counts = np.asarray(ask(pairs), dtype=np.float64)
        if counts.shape != (pairs.shape[0], 6):
            raise ValueError(f"ask() must return an array of shape ({pairs.shape[0]}, 6), got {counts.shape}")
        bar.update(pairs.shape[0])
        return counts

    if state.next_round == -1:
        pairs = keys_to_pairs(state.holdout_keys, n_outcomes)
        state.graph.add(pairs, asked(pairs), HOLDOUT, -1)
        state.next_round = 0
        if on_round:
            on_round(state)

    while not state.finished:
        r = state.next_round
        rng = _round_rng(config.seed, r)
        n_train = int((state.graph.split == TRAIN).sum())
        if r == 0:
            pairs = initial_regular_graph(n_outcomes, config.initial_degree, rng, exclude=state.holdout_keys,
                                          top_up=config.top_up_initial)
            pairs = pairs[: max(budget, 0)]
        else:
            remaining = budget - n_train
            if remaining <= 0 or state.theta is None:
                pairs = np.empty((0, 2), np.int64)
            else:
                fit_mu = state.theta[:n_outcomes]
                asked_keys = np.sort(state.graph.keys)
                degree = state.graph.select(TRAIN).degrees()
                pairs = select_pairs(fit_mu, degree, asked_keys, min(round_size, remaining), rng, config)
        if pairs.shape[0] == 0:
            if config.use_pseudolabels:
                _add_pseudolabels(state, config, fit_fn)
            state.finished = True
        else:
            state.graph.add(pairs, asked(pairs), TRAIN, r)
            state.theta = _fit_train(state, config, with_pseudolabels=False, fit_fn=fit_fn).theta
            state.next_round = r + 1
        if on_round:
            on_round(state)
    bar.close()
    fit = _fit_train(state, config, with_pseudolabels=config.use_pseudolabels, fit_fn=fit_fn)
    return ActiveLearningResult(fit, state.graph, compute_metrics(fit, state.graph, config), state)


def _add_pseudolabels(state: ActiveLearningState, config: ActiveLearningConfig,
                      fit_fn: FitFn = fit_thurstonian) -> None:
    """Confident model predictions on unasked pairs become hard labels for the final refit (stored compactly)."""
    n = state.n_outcomes
    fit = _fit_train(state, config, with_pseudolabels=False, fit_fn=fit_fn)
    rng = np.random.default_rng([config.seed, 13])
    unasked = n * (n - 1) // 2 - len(state.graph)
    if config.pseudolabel_candidates is None and unasked > _ALL_PSEUDOLABEL_LIMIT:
        raise ValueError(f"fit.pseudolabel_candidates=null scores every unasked pair, {unasked:,} at n={n:,} "
                         f"(at most {_ALL_PSEUDOLABEL_LIMIT:,}); set a number of sampled candidates instead")
    wanted = unasked if config.pseudolabel_candidates is None else min(config.pseudolabel_candidates, unasked)
    cand = sample_new_pairs(n, wanted, rng, exclude=np.sort(state.graph.keys))
    pred = fit.predict(cand[:, 0], cand[:, 1])
    sure = (pred >= config.pseudolabel_threshold) | (pred <= 1 - config.pseudolabel_threshold)
    dtype = np.int32 if n < 2**31 else np.int64
    state.pseudo_a, state.pseudo_b = cand[sure, 0].astype(dtype), cand[sure, 1].astype(dtype)
    state.pseudo_label = (pred[sure] >= 0.5).astype(np.int8)
