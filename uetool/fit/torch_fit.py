"""The core Thurstonian fit (`uetool.core.thurstonian`) in torch: same parameters, priors and standardisation.

theta = [mu (n), log sigma2 (n)]; the objective is the weighted soft-label negative log-likelihood plus the priors
0.5 * prior_log_var * |log sigma2|^2 + 0.5 * prior_mean * |mu|^2, divided by the total edge weight (at least 1).

The edge term is a sum, so it splits over shards of edges: each data-parallel worker evaluates its shard plus a
1/world_size share of the prior, both divided by the GLOBAL total weight, and the shard objectives add up to the
full objective. `minimise_lbfgs` runs full-batch L-BFGS (strong-Wolfe line search) on one process or, when the
module is wrapped in DistributedDataParallel, on every worker at once: DDP sums the gradients and the loss value
the line search compares is all-reduced too, so every worker takes the identical step. Works on any device and
dtype; float64 on CPU reproduces the scipy fit. No Ray imports here (see `uetool.fit.ray_train`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..core.metrics import accuracy, log_loss
from ..core.thurstonian import ThurstonianFit, check_edges, predict_proba

__all__ = ["EdgeShard", "ThurstonianParameters", "edge_nll", "prior_penalty", "objective", "shard_slices",
           "check_edges", "minimise_lbfgs", "fit_from_theta", "fit_thurstonian_torch", "resolve_device"]


@dataclass
class EdgeShard:
    """Edges (a[i], b[i]) with observed P(a preferred) p[i] and weight w[i], as tensors on one device."""

    a: torch.Tensor
    b: torch.Tensor
    p: torch.Tensor
    w: torch.Tensor

    @classmethod
    def from_numpy(cls, a: np.ndarray, b: np.ndarray, p: np.ndarray, w: np.ndarray, device: torch.device | str,
                   dtype: torch.dtype) -> EdgeShard:
        def tensor(x: np.ndarray, kind: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x)).to(device=device, dtype=kind)

        return cls(tensor(a, torch.int64), tensor(b, torch.int64), tensor(p, dtype), tensor(w, dtype))


def edge_nll(theta: torch.Tensor, shard: EdgeShard, n_outcomes: int) -> torch.Tensor:
    """Weighted soft-label negative log-likelihood of the shard's edges (a sum, not normalised)."""
    mu, log_var = theta[:n_outcomes], theta[n_outcomes:]
    var = log_var.exp()
    z = (mu[shard.a] - mu[shard.b]) * torch.rsqrt(var[shard.a] + var[shard.b])
    # one log_ndtr per edge, on the tail side where it is exact (as the numpy fit does); the sign is a constant so
    # autograd differentiates log_ndtr(-sign * z) correctly even at z = 0, where d|z|/dz would be 0
    positive = z.detach() > 0
    sign = torch.where(positive, 1.0, -1.0).to(z.dtype)
    tail = torch.special.log_ndtr(-sign * z)
    head = torch.log1p(-tail.exp())
    log_p, log_q = torch.where(positive, head, tail), torch.where(positive, tail, head)
    return -(shard.w * (shard.p * log_p + (1.0 - shard.p) * log_q)).sum()


def prior_penalty(theta: torch.Tensor, n_outcomes: int, prior_log_var: float, prior_mean: float) -> torch.Tensor:
    mu, log_var = theta[:n_outcomes], theta[n_outcomes:]
    return 0.5 * prior_log_var * (log_var * log_var).sum() + 0.5 * prior_mean * (mu * mu).sum()


def objective(theta: torch.Tensor, shard: EdgeShard, n_outcomes: int, prior_log_var: float = 1.0,
              prior_mean: float = 0.1) -> torch.Tensor:
    """The full objective of `uetool.core.thurstonian.thurstonian_objective` (its value; autograd gives the
    gradient)."""
    total = max(float(shard.w.sum()), 1.0)
    return (edge_nll(theta, shard, n_outcomes) + prior_penalty(theta, n_outcomes, prior_log_var, prior_mean)) / total


class ThurstonianParameters(torch.nn.Module):
    """theta as a module, so DistributedDataParallel can sum its gradient over workers.

    `forward(shard)` is this worker's share of the objective: its edges plus `prior_share` of the prior, divided by
    `total_weight` (the weight of ALL edges, over every shard).
    """

    def __init__(self, n_outcomes: int, theta0: np.ndarray | torch.Tensor, *, prior_log_var: float = 1.0,
                 prior_mean: float = 0.1, total_weight: float = 1.0, prior_share: float = 1.0,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.n_outcomes = int(n_outcomes)
        self.theta = torch.nn.Parameter(torch.as_tensor(np.asarray(theta0, np.float64)).to(dtype).clone())
        self.prior_log_var, self.prior_mean = float(prior_log_var), float(prior_mean)
        self.total_weight = max(float(total_weight), 1.0)
        self.prior_share = float(prior_share)

    def forward(self, a: torch.Tensor, b: torch.Tensor, p: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        shard = EdgeShard(a, b, p, w)
        prior = prior_penalty(self.theta, self.n_outcomes, self.prior_log_var, self.prior_mean)
        return (edge_nll(self.theta, shard, self.n_outcomes) + self.prior_share * prior) / self.total_weight


def shard_slices(n_edges: int, world_size: int) -> list[slice]:
    """Contiguous, nearly equal slices of the edge arrays, one per worker (some may be empty)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    bounds = np.linspace(0, n_edges, world_size + 1).round().astype(np.int64)
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def minimise_lbfgs(model: torch.nn.Module, shard: EdgeShard, *, tol: float = 1e-9, max_iter: int = 2000,
                   history_size: int = 20) -> tuple[int, bool, float]:
    """Full-batch L-BFGS on `model(shard)`; returns (iterations, converged, final objective).

    `model` is a ThurstonianParameters, or one wrapped in DistributedDataParallel (then every worker must call this
    with its own shard). Tolerances follow the scipy fit: stop when the objective changes by less than `tol` or
    the largest gradient entry is below tol / 100.
    """
    distributed = isinstance(model, DistributedDataParallel)
    world_size = dist.get_world_size() if distributed else 1
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, max_eval=3 * max_iter,
                                  tolerance_grad=tol * 1e-2, tolerance_change=tol, history_size=history_size,
                                  line_search_fn="strong_wolfe")

    def global_value(local: torch.Tensor) -> torch.Tensor:
        value = local.detach().clone()
        if distributed:
            dist.all_reduce(value)  # the line search must compare the FULL objective, identically on every worker
        return value

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        local = model(shard.a, shard.b, shard.p, shard.w)
        # DDP averages gradients over workers; scaling by world_size turns that into the sum of shard gradients
        (local * world_size).backward()
        return global_value(local)

    if max_iter > 0:
        optimizer.step(closure)
    state = optimizer.state[next(iter(model.parameters()))]
    n_iter, n_evals = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
    with torch.no_grad():
        loss = float(global_value(model(shard.a, shard.b, shard.p, shard.w)))
    converged = n_iter < max_iter and n_evals < 3 * max_iter and np.isfinite(loss)
    return n_iter, bool(converged), loss


def fit_from_theta(n_outcomes: int, theta: np.ndarray, a: np.ndarray, b: np.ndarray, p: np.ndarray, *,
                   n_iter: int, converged: bool, loss: float) -> ThurstonianFit:
    """A ThurstonianFit from raw parameters, standardised exactly as the core fit does (mean 0, population std 1)."""
    theta = np.asarray(theta, dtype=np.float64)
    mu, var = theta[:n_outcomes], np.exp(theta[n_outcomes:])
    scale = mu.std()
    scale = scale if scale > 0 else 1.0
    mean, variance = (mu - mu.mean()) / scale, var / scale**2
    pred = predict_proba(mean, variance, a, b) if a.size else np.empty(0)
    return ThurstonianFit(mean=mean, variance=variance, theta=theta, n_iter=int(n_iter), converged=bool(converged),
                          loss=float(loss), train_accuracy=accuracy(pred, p), train_log_loss=log_loss(pred, p),
                          n_edges=int(a.size))


def resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use device='cpu'")
    return device


def fit_thurstonian_torch(n_outcomes: int, a: np.ndarray, b: np.ndarray, p: np.ndarray,
                          weight: np.ndarray | None = None, *, init: np.ndarray | None = None,
                          prior_log_var: float = 1.0, prior_mean: float = 0.1, tol: float = 1e-9,
                          max_iter: int = 2000, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float64) -> ThurstonianFit:
    """Drop-in for `uetool.core.thurstonian.fit_thurstonian` (same arguments and result) on a torch device."""
    a, b, p, w, theta0 = check_edges(n_outcomes, a, b, p, weight, init)
    device = resolve_device(device)
    model = ThurstonianParameters(n_outcomes, theta0, prior_log_var=prior_log_var, prior_mean=prior_mean,
                                  total_weight=float(w.sum()), dtype=dtype).to(device)
    shard = EdgeShard.from_numpy(a, b, p, w, device, dtype)
    n_iter, converged, loss = minimise_lbfgs(model, shard, tol=tol, max_iter=max_iter)
    theta = model.theta.detach().to("cpu", torch.float64).numpy()
    return fit_from_theta(n_outcomes, theta, a, b, p, n_iter=n_iter, converged=converged, loss=loss)
