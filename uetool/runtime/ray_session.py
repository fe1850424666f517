"""Starting or attaching to Ray: the one place a job decides which cluster it runs on, and whether it is safe to.

A Ray cluster runs whatever code it is sent: one reachable without authentication hands the machine (and the API
keys in its environment) to anyone on the network. Ray 2.60 turns token authentication on for local clusters unless
`RAY_AUTH_MODE=disabled`, and leaves it to the cluster for an address it joins, so uetool refuses:
  - to start a local cluster with `RAY_AUTH_MODE=disabled`,
  - to join a cluster (`ray.address` / RAY_ADDRESS) unless `RAY_AUTH_MODE=token` is set here (the clusters of
    cluster/ set it on every node and for the jobs they run),
unless the user says `ray.allow_insecure=true`. A local cluster cannot be kept on the loopback interface: Ray 2.60
replaces a loopback node address with the machine's reachable one (`services.resolve_ip_for_localhost`) and its GCS
and raylet listen on every interface (seen with `ss -ltnp`), so token authentication is what guards them; the
dashboard, which would listen too, is not started.
"""

from __future__ import annotations

import os

from .config import RayConfig

__all__ = ["ensure_ray", "InsecureClusterError", "check_cluster_security"]


class InsecureClusterError(RuntimeError):
    """Starting or joining this Ray cluster would run it without token authentication."""


def check_cluster_security(config: RayConfig, environ: dict[str, str] | None = None) -> None:
    """Raise InsecureClusterError unless the cluster this job would start or join uses token authentication (or
    the user allowed an insecure one)."""
    if config.allow_insecure:
        return
    mode = (os.environ if environ is None else environ).get("RAY_AUTH_MODE", "").strip().lower()
    if config.address and mode != "token":
        raise InsecureClusterError(
            f"refusing to join the Ray cluster at {config.address!r} without token authentication: set "
            f"RAY_AUTH_MODE=token (and the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token; cluster/README.md), "
            f"or pass ray.allow_insecure=true if that cluster is on a network you trust")
    if not config.address and mode == "disabled":
        raise InsecureClusterError(
            "refusing to start a local Ray cluster with RAY_AUTH_MODE=disabled (anyone who can reach this machine "
            "could run code on it): unset RAY_AUTH_MODE (Ray then generates a token), or pass "
            "ray.allow_insecure=true")


def ensure_ray(config: RayConfig | dict | None = None) -> None:
    """Attach to `ray.address` (RAY_ADDRESS) when set, else start a local cluster; a no-op when Ray is up (inside
    a Ray task, or a second job in one process). Refuses a cluster without token authentication (see above)."""
    import ray

    if ray.is_initialized():
        return
    if config is None:
        config = RayConfig()
    elif isinstance(config, dict):
        known = ("address", "num_cpus", "allow_insecure")
        config = RayConfig(**{k: v for k, v in (config.get("ray") or config).items() if k in known})
    check_cluster_security(config)
    address = config.address or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # Ray runs its workers at niceness 15: beside any busy process (another job, a notebook) the engine
        # replicas then get ~3% of a core and a job that takes 2 minutes takes an hour (measured: an hf job's
        # engine actor got 53 s of CPU in 14 min beside two busy loops). The replicas are the job's work.
        ray.init(num_cpus=config.num_cpus, log_to_driver=False, include_dashboard=False,
                 _system_config={"worker_niceness": 0})
