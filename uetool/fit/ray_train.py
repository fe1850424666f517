"""The Thurstonian fit as a Ray Train job: edges sharded over data-parallel workers, full-batch L-BFGS under DDP.

For fits too large for one process (hundreds of thousands of outcomes, tens of millions of edges): each worker
holds only its shard of the edges, DDP sums the shard gradients (gloo on CPU, NCCL on GPUs: Ray Train's TorchConfig
picks the backend from `use_gpu`), and every worker takes the identical L-BFGS step
(`uetool.fit.torch_fit.minimise_lbfgs`). The result is a `ThurstonianFit`, like the local fit's.

Edges travel as one Ray object per shard (O(edges) in total, nothing O(n^2)); rank 0 returns theta as the training
function's return value (Ray Train V2 hands it back as `Result.return_value`; `Result.metrics` would only hold
metrics reported together with a checkpoint). Ray is imported lazily so that config validation needs no Ray.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np

from ..core.thurstonian import ThurstonianFit
from .torch_fit import check_edges, fit_from_theta, shard_slices

__all__ = ["fit_thurstonian_ray_train", "fit_function_for"]

_DTYPES = ("float64", "float32")
# Ray rejects bundles without resources: workers that share CPUs held by idle engine replicas ask for one byte of
# memory instead (any node has it), so they place at once and take no CPU from anyone
_SHARING_WORKER = {"memory": 1}



def fit_function_for(options, *, share_node: bool = False) -> Callable[..., ThurstonianFit]:
    """The Ray Train fit with `fit.ray_train` options (a `RayTrainConfig` or a mapping of its fields), as a function
    with the signature of the core's `fit_thurstonian`.

    `share_node`: the fit runs between the rounds of a job whose engine replicas hold the node's CPUs but sit idle
    while it fits; when too few CPUs are free, the workers then share them instead of waiting for them.
    """
    get = options.get if isinstance(options, Mapping) else lambda k, d=None: getattr(options, k, d)
    return partial(fit_thurstonian_ray_train, num_workers=int(get("num_workers", 2)),
                   use_gpu=bool(get("use_gpu", False)), cpus_per_worker=float(get("cpus_per_worker", 1.0)),
                   dtype=str(get("dtype", "float64")), check_resources=not get("autoscale", False),
                   share_node=share_node)


def _train_loop(config: dict) -> dict | None:
    """Runs on every Ray Train worker: its shard, DDP-wrapped parameters, L-BFGS; rank 0 returns theta."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from .torch_fit import EdgeShard, ThurstonianParameters, minimise_lbfgs

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    # Ray sets OMP_NUM_THREADS from the worker's CPUs, but torch may already have picked its own count
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    dtype = getattr(torch, config["dtype"])
    device = ray.train.torch.get_device()
    a, b, p, w = ray.get(config["shards"][rank])
    module = ThurstonianParameters(config["n_outcomes"], config["theta0"], prior_log_var=config["prior_log_var"],
                                   prior_mean=config["prior_mean"], total_weight=config["total_weight"],
                                   prior_share=1.0 / world_size, dtype=dtype)
    # prepare_model moves the module to this worker's device and wraps it in DDP when world_size > 1
    model = ray.train.torch.prepare_model(module, parallel_strategy="ddp")
    shard = EdgeShard.from_numpy(a, b, p, w, device, dtype)
    n_iter, converged, loss = minimise_lbfgs(model, shard, tol=config["tol"], max_iter=config["max_iter"])
    if rank != 0:
        return None
    return {"theta": module.theta.detach().to("cpu", torch.float64).numpy(), "n_iter": n_iter,
            "converged": converged, "loss": loss}


def _workers_that_fit(num_workers: int, cpus_per_worker: float, use_gpu: bool, share_node: bool) -> tuple[int, bool]:
    """(workers, sharing): how many workers the cluster can place now (at most `num_workers`), and whether they
    share CPUs held elsewhere; fails fast when none fits and sharing is not allowed.

    Without this a fixed-size cluster whose CPUs are held elsewhere (e.g. by the job's own engine replicas) would
    leave the trainer waiting for workers forever. Fewer workers give the same fit up to rounding: only the edge
    sharding changes.
    """
    import ray

    free = ray.available_resources()
    fits = int(free.get("CPU", 0.0) // cpus_per_worker)
    if use_gpu:
        fits = min(fits, int(free.get("GPU", 0.0)))
    if fits < num_workers and share_node and not use_gpu:
        # always the configured number of workers: the edge sharding (and so the fit's last digits) must not
        # depend on how busy the cluster is
        return num_workers, True
    if fits < 1:
        raise ValueError(f"Ray Train fit needs workers of {cpus_per_worker:g} CPU{' + 1 GPU' if use_gpu else ''} "
                         f"but the cluster has {free.get('CPU', 0.0):g} CPUs and {free.get('GPU', 0.0):g} GPUs free "
                         "(engine replicas may hold the rest); add nodes, lower fit.ray_train.cpus_per_worker, or "
                         "set fit.ray_train.autoscale=true on an autoscaling cluster")
    if fits < num_workers:
        print(f"Ray Train fit: only {fits} of {num_workers} workers fit in the free resources; using {fits}")
    return min(fits, num_workers), False


def fit_thurstonian_ray_train(n_outcomes: int, a: np.ndarray, b: np.ndarray, p: np.ndarray,
                              weight: np.ndarray | None = None, *, num_workers: int = 2, use_gpu: bool = False,
                              init: np.ndarray | None = None, prior_log_var: float = 1.0, prior_mean: float = 0.1,
                              tol: float = 1e-9, max_iter: int = 2000, cpus_per_worker: float = 1.0,
                              dtype: str = "float64", check_resources: bool = True, share_node: bool = False,
                              storage_path: str | None = None) -> ThurstonianFit:
    """Drop-in for `uetool.core.thurstonian.fit_thurstonian`, run by `num_workers` Ray Train workers.

    Attaches to the running Ray cluster (or starts a local one). With `check_resources` the worker count is capped
    by the resources free now (an error if not even one worker fits); pass False on autoscaling clusters, where
    Ray Train then waits for new nodes. With `share_node`, workers that find no free CPU share the CPUs of idle
    engine replicas (see `fit_function_for`). `storage_path` is where Ray Train keeps its run
    state (a temporary directory, removed afterwards, when None); no checkpoints are written.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    a, b, p, w, theta0 = check_edges(n_outcomes, a, b, p, weight, init)
    if dtype not in _DTYPES:
        raise ValueError(f"`fit.ray_train.dtype` must be one of {_DTYPES}, got {dtype!r}")
    if num_workers < 1 or cpus_per_worker <= 0:
        raise ValueError(f"Ray Train fit needs num_workers >= 1 and cpus_per_worker > 0, got {num_workers}, "
                         f"{cpus_per_worker}")
    if not ray.is_initialized():
        ray.init()
    sharing = False
    if check_resources:
        num_workers, sharing = _workers_that_fit(num_workers, float(cpus_per_worker), use_gpu, share_node)
    # one object per shard: a worker fetches only its own edges
    shards = [ray.put((a[s], b[s], p[s], w[s])) for s in shard_slices(a.size, num_workers)]
    config = {"n_outcomes": int(n_outcomes), "theta0": theta0, "shards": shards, "total_weight": float(w.sum()),
              "prior_log_var": float(prior_log_var), "prior_mean": float(prior_mean), "tol": float(tol),
              "max_iter": int(max_iter), "dtype": dtype, "cpus_per_worker": float(cpus_per_worker)}
    resources = {"CPU": float(cpus_per_worker), **({"GPU": 1.0} if use_gpu else {})}
    if sharing:
        resources = dict(_SHARING_WORKER)
    own_storage = storage_path is None
    storage = tempfile.mkdtemp(prefix="uetool-train-fit-") if own_storage else storage_path
    trainer = TorchTrainer(_train_loop, train_loop_config=config,
                           scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                                        resources_per_worker=resources),
                           run_config=RunConfig(name=f"thurstonian-fit-{uuid.uuid4().hex[:8]}", storage_path=storage,
                                                # Ray Train retries a worker group that cannot start (60 s timeout)
                                                # forever by default; only an autoscaler can make waiting pay off
                                                failure_config=FailureConfig(
                                                    controller_failure_limit=-1 if not check_resources else 1)))
    try:
        result = trainer.fit()
    finally:
        if own_storage:
            shutil.rmtree(storage, ignore_errors=True)
    out = result.return_value
    if not out or "theta" not in out:
        raise RuntimeError(f"Ray Train fit returned no parameters (error: {result.error!r})")
    return fit_from_theta(n_outcomes, out["theta"], a, b, p, n_iter=out["n_iter"], converged=out["converged"],
                          loss=out["loss"])
